import { afterEach, describe, expect, it } from 'vitest';
import type { AcquireInput, QuotaApi } from '../../common/quota-api.ts';
import { acmeBudgets } from '../../controller/quota/engine/engine-conformance.ts';
import { createMemoryEngine, type LeaseEngine } from '../../controller/quota/engine/index.ts';
import { SpareLeases, type SpareEvent } from './spare-leases.ts';

const ROOMY = [
  '{dimension: concurrency, amount: 1000}',
  '{dimension: requests, amount: 100000, window: 1m}',
  '{dimension: totalTokens, amount: 100000000, window: 1m}',
].join(', ');

const CALL: AcquireInput = {
  provider: 'llm/acme',
  model: 'm',
  budget: 'team-a/search',
  inputTokens: 100,
  maxOutputTokens: 50,
  maxWaitMs: 1000,
};

const engines: LeaseEngine[] = [];
afterEach(async () => {
  for (const engine of engines.splice(0)) await engine.close();
});

/** An engine on acme with `limits`: YAML flow maps, comma-separated. */
function engineWith(limits: string): LeaseEngine {
  const engine = createMemoryEngine({ budgets: acmeBudgets(`[${limits}]`) });
  engines.push(engine);
  return engine;
}

/** What the engine holds for the provider: leases in flight and requests counted in the window. */
async function held(engine: QuotaApi): Promise<{ inFlight: number; requests: number; tokens: number }> {
  const usage = (await engine.usage('llm/acme')).providers[0]!;
  const used = (dimension: string) => usage.limits.find((limit) => limit.dimension === dimension)?.used ?? 0;
  return { inFlight: usage.inFlight, requests: used('requests'), tokens: used('totalTokens') };
}

/** Lets the spares' acquires and settles (promises on the in-process engine) finish. */
const settle = () => new Promise((resolve) => setTimeout(resolve, 20));

function sparesOn(engine: QuotaApi, options: { max?: number; idleMs?: number } = {}) {
  const events: SpareEvent[] = [];
  const spares = new SpareLeases({
    quota: engine,
    max: options.max ?? 2,
    idleMs: options.idleMs ?? 60_000,
    onEvent: (event) => events.push(event),
  });
  return { spares, events };
}

describe('SpareLeases', () => {
  it('keeps spares while the account has room, and a call takes one without asking', async () => {
    const engine = engineWith(ROOMY);
    const { spares, events } = sparesOn(engine);
    const own = await engine.acquire(CALL);
    expect(own.headroom?.fraction).toBeGreaterThan(0.9);
    spares.observe(CALL, own);
    await settle();
    expect(spares.held).toBe(2);
    expect(await held(engine)).toMatchObject({ inFlight: 3, requests: 3 });

    const taken = spares.take(CALL)!;
    expect(taken).toBeDefined();
    expect(taken.waitedMs).toBe(0);
    expect(taken.reserved).toMatchObject({ inputTokens: 100, outputTokens: 50 });
    expect(events).toEqual(['taken']);
    await settle();
    // Taking one asks for one more.
    expect(spares.held).toBe(2);

    // The call settles its spare like any lease: exactly its usage is charged.
    await engine.settle({
      leaseId: taken.leaseId,
      usage: { inputTokens: 80, outputTokens: 20 },
      outcome: 'ok',
    });
    await engine.settle({
      leaseId: own.leaseId,
      usage: { inputTokens: 100, outputTokens: 50 },
      outcome: 'ok',
    });
    await spares.close();
    // The spares went back unused: nothing of them is charged, not even a request.
    expect(await held(engine)).toEqual({ inFlight: 0, requests: 2, tokens: 100 + 150 });
  });

  it('gives back a spare no call took within the idle time', async () => {
    const engine = engineWith(ROOMY);
    const { spares, events } = sparesOn(engine, { max: 1, idleMs: 40 });
    const own = await engine.acquire(CALL);
    spares.observe(CALL, own);
    await settle();
    expect(spares.held).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(spares.held).toBe(0);
    expect(events).toContain('returned');
    await engine.settle({ leaseId: own.leaseId, usage: { inputTokens: 1, outputTokens: 1 }, outcome: 'ok' });
    expect(await held(engine)).toEqual({ inFlight: 0, requests: 1, tokens: 2 });
    await spares.close();
  });

  it('keeps none where a limit is tight, so spares never take a scarce slot', async () => {
    const engine = engineWith('{dimension: concurrency, amount: 5}');
    const { spares } = sparesOn(engine);
    const own = await engine.acquire(CALL);
    spares.observe(CALL, own);
    await settle();
    expect(spares.held).toBe(0);
    expect(spares.take(CALL)).toBeUndefined();
    expect((await held(engine)).inFlight).toBe(1);
    await spares.close();
  });

  it('keeps none once a limit is half used', async () => {
    const engine = engineWith('{dimension: requests, amount: 200, window: 1m}');
    const { spares } = sparesOn(engine);
    for (let i = 0; i < 99; i++) await engine.acquire({ ...CALL, maxWaitMs: 0 });
    const own = await engine.acquire(CALL);
    expect(own.headroom?.fraction).toBe(0.5);
    spares.observe(CALL, own);
    await settle();
    expect(spares.held).toBe(2);
    // The spares themselves take the account past half: their grants say so, and no more are asked.
    expect(spares.take(CALL)).toBeDefined();
    await settle();
    expect(spares.held).toBe(1);
    await spares.close();
  });

  it('a call larger than the spares asks for its own lease, and later spares grow to it', async () => {
    const engine = engineWith(ROOMY);
    const { spares } = sparesOn(engine, { max: 1 });
    spares.observe(CALL, await engine.acquire(CALL));
    await settle();
    const larger = { ...CALL, inputTokens: 500 };
    expect(spares.take(larger)).toBeUndefined();
    spares.observe(larger, await engine.acquire(larger));
    await spares.close();

    const { spares: again } = sparesOn(engine, { max: 1 });
    again.observe(larger, await engine.acquire(larger));
    await settle();
    expect(again.take(larger)?.reserved.inputTokens).toBe(500);
    await again.close();
  });

  it('stops asking once the account refuses a spare', async () => {
    const engine = engineWith(ROOMY);
    const refusing: QuotaApi = {
      ...engine,
      acquire: (input) =>
        input.maxWaitMs === 0 ? Promise.reject(new Error('capacity exhausted')) : engine.acquire(input),
      settle: (input) => engine.settle(input),
      usage: (provider) => engine.usage(provider),
      heartbeat: (input) => engine.heartbeat(input),
    };
    const { spares, events } = sparesOn(refusing);
    spares.observe(CALL, await engine.acquire(CALL));
    await settle();
    expect(spares.held).toBe(0);
    expect(events).toEqual(['refused', 'refused']);
    // Not asked again until a call's own grant shows room.
    expect(spares.take(CALL)).toBeUndefined();
    await settle();
    expect(events).toEqual(['refused', 'refused']);
    await spares.close();
  });

  it('keeps pools for at most 256 keys; a new key gets one once others hold nothing', async () => {
    const engine = engineWith(ROOMY);
    const { spares } = sparesOn(engine, { max: 1, idleMs: 100 });
    const ok = { usage: { inputTokens: 1, outputTokens: 1 }, outcome: 'ok' as const };
    for (let i = 0; i < 300; i++) {
      const call = { ...CALL, model: `m${i}` };
      const grant = await engine.acquire(call);
      spares.observe(call, grant);
      await engine.settle({ leaseId: grant.leaseId, ...ok });
    }
    await settle();
    expect(spares.held).toBe(256);
    expect(spares.take({ ...CALL, model: 'm299' })).toBeUndefined();

    // Once the spares went back unused, their pools hold nothing and make room for a new key.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(spares.held).toBe(0);
    const late = { ...CALL, model: 'late' };
    const grant = await engine.acquire(late);
    spares.observe(late, grant);
    await engine.settle({ leaseId: grant.leaseId, ...ok });
    await settle();
    expect(spares.held).toBe(1);
    await spares.close();
    expect((await held(engine)).inFlight).toBe(0);
  });

  it('keeps none with max 0', async () => {
    const engine = engineWith(ROOMY);
    const { spares } = sparesOn(engine, { max: 0 });
    spares.observe(CALL, await engine.acquire(CALL));
    await settle();
    expect(spares.held).toBe(0);
    expect((await held(engine)).inFlight).toBe(1);
  });
});
