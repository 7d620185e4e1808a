/**
 * One behaviour suite for the lease engine, run against every store (memory-store.test.ts here,
 * test/redis/redis-engine.test.ts on a real Redis). A store that passes it has the same semantics.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { buildBudgetSet, parseBudgetsYaml, type BudgetSet } from '../../../common/budgets/load-budgets.ts';
import {
  CancelledError,
  CapacityExhaustedError,
  InvalidRequestError,
  NotFoundError,
  PermissionDeniedError,
  RequestTooLargeError,
} from '../../../common/errors/errors.ts';
import type { AcquireInput } from '../../../common/quota-api.ts';
import type { LeaseEngine } from './lease-engine.ts';
import { SETTLED_GRACE_MS } from './store.ts';

export interface EngineFactory {
  /** A new engine on a new, empty store. `clock` replaces the store's clock when given. */
  create(budgets: BudgetSet, clock?: () => number): Promise<LeaseEngine>;
  /** A second engine sharing the store of `engine` (another quota-service replica). */
  replica(engine: LeaseEngine): Promise<LeaseEngine>;
}

/**
 * One provider, llm/acme, with `limits` (a YAML flow list) and `providerSpec` (more lines of its
 * spec), and one budget drawing on it, team-a/search; `more` adds further YAML documents.
 */
function acmeYaml(limits: string, providerSpec = '', more = ''): string {
  return `
apiVersion: tokenlease.io/v1alpha1
kind: LLMProvider
metadata: {name: acme, namespace: llm}
spec:
  api: openai
  baseURL: https://api.example.test/v1
  limits: ${limits}
  ${providerSpec}
---
apiVersion: tokenlease.io/v1alpha1
kind: LLMBudget
metadata: {name: search, namespace: team-a}
spec: {providerRef: {name: acme, namespace: llm}}
${more}`;
}

/** The budgets of acmeYaml. */
export function acmeBudgets(limits: string, providerSpec = ''): BudgetSet {
  return budgetsFrom(acmeYaml(limits, providerSpec));
}

export function budgetsFrom(yaml: string): BudgetSet {
  return buildBudgetSet(parseBudgetsYaml(yaml, 'test'));
}

const PROVIDER = 'llm/acme';
const BUDGET = 'team-a/search';

/** acme with short leases and no window margin, and a second budget, team-b/batch, with a cap. */
function budgetsWith(limits: string, extra = ''): BudgetSet {
  return budgetsFrom(
    acmeYaml(
      limits,
      'leaseTimeout: 1s\n  windowMargin: 0s',
      `---
apiVersion: tokenlease.io/v1alpha1
kind: LLMBudget
metadata: {name: batch, namespace: team-b}
spec:
  providerRef: {name: acme, namespace: llm}
  caps: [{dimension: requests, amount: 2, window: 1m}]
${extra}`,
    ),
  );
}

function request(overrides: Partial<AcquireInput> = {}): AcquireInput {
  return {
    provider: PROVIDER,
    model: 'gpt-test',
    budget: BUDGET,
    inputTokens: 10,
    maxOutputTokens: 20,
    maxWaitMs: 0,
    ...overrides,
  };
}

const ok = { inputTokens: 10, outputTokens: 20 };
async function providerLimits(engine: LeaseEngine) {
  return (await engine.usage(PROVIDER)).providers[0]!.limits.filter((limit) => limit.scope === 'provider');
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export function describeEngineConformance(name: string, factory: EngineFactory): void {
  describe(`lease engine conformance: ${name}`, () => {
    const engines: LeaseEngine[] = [];
    let now = 1_800_000_000_000;
    const clock = () => now;
    async function engineWith(budgets: BudgetSet, manual = true): Promise<LeaseEngine> {
      const engine = await factory.create(budgets, manual ? clock : undefined);
      engines.push(engine);
      return engine;
    }
    afterEach(async () => {
      await Promise.all(engines.splice(0).map((engine) => engine.close()));
      now = 1_800_000_000_000;
    });

    describe('windows', () => {
      it('grants up to a request limit and refuses the next with the time the oldest charge leaves', async () => {
        const engine = await engineWith(budgetsWith('[{dimension: requests, amount: 3, window: 10s}]'));
        for (let i = 0; i < 3; i++) {
          await engine.acquire(request());
          now += 1000;
        }
        const refused = await engine.acquire(request()).catch((error: unknown) => error);
        expect(refused).toBeInstanceOf(CapacityExhaustedError);
        // First charge at t0 in bucket [t0, t0+100ms): it leaves the window at t0 + 100ms + 10s; now = t0 + 3s.
        expect((refused as CapacityExhaustedError).retryAfterMs).toBe(7100);
        expect((refused as CapacityExhaustedError).limit).toContain('requests per 10s');
        now += 7100;
        await expect(engine.acquire(request())).resolves.toMatchObject({ reserved: { requests: 1 } });
      });

      it('never counts less than the window: a charge is held until its whole bucket has left', async () => {
        const engine = await engineWith(budgetsWith('[{dimension: requests, amount: 1, window: 1s}]'));
        now += 5; // inside the first 10ms bucket
        await engine.acquire(request());
        now += 1000; // exactly one window later, the bucket is still partly inside
        await expect(engine.acquire(request())).rejects.toBeInstanceOf(CapacityExhaustedError);
        now += 5;
        await expect(engine.acquire(request())).resolves.toBeDefined();
      });

      it('reserves estimated input plus max output, and settles to the real usage', async () => {
        const engine = await engineWith(budgetsWith('[{dimension: totalTokens, amount: 100, window: 1m}]'));
        const first = await engine.acquire(request({ inputTokens: 30, maxOutputTokens: 40 }));
        expect(first.reserved).toEqual({ requests: 1, inputTokens: 30, outputTokens: 40, totalTokens: 70 });
        await expect(
          engine.acquire(request({ inputTokens: 20, maxOutputTokens: 20 })),
        ).rejects.toBeInstanceOf(CapacityExhaustedError);
        const settled = await engine.settle({
          leaseId: first.leaseId,
          usage: { inputTokens: 30, outputTokens: 5 },
          outcome: 'ok',
        });
        expect(settled).toEqual({
          status: 'settled',
          charged: { requests: 1, inputTokens: 30, outputTokens: 5, totalTokens: 35 },
          settledAtMs: now,
        });
        await expect(
          engine.acquire(request({ inputTokens: 30, maxOutputTokens: 35 })),
        ).resolves.toBeDefined();
        const usage = await engine.usage(PROVIDER);
        expect(usage.providers[0]!.limits[0]!.used).toBe(100);
      });

      it('charges an overrun beyond the reservation', async () => {
        const engine = await engineWith(budgetsWith('[{dimension: outputTokens, amount: 100, window: 1m}]'));
        const lease = await engine.acquire(request({ maxOutputTokens: 10 }));
        await engine.settle({
          leaseId: lease.leaseId,
          usage: { inputTokens: 10, outputTokens: 95 },
          outcome: 'ok',
        });
        const usage = await engine.usage(PROVIDER);
        expect(usage.providers[0]!.limits[0]!.used).toBe(95);
        await expect(engine.acquire(request({ maxOutputTokens: 10 }))).rejects.toBeInstanceOf(
          CapacityExhaustedError,
        );
      });

      it('refunds every token of a call that was never sent, but not its request', async () => {
        const engine = await engineWith(
          budgetsWith(
            '[{dimension: requests, amount: 5, window: 1m}, {dimension: inputTokens, amount: 50, window: 1m}]',
          ),
        );
        const lease = await engine.acquire(request({ inputTokens: 40 }));
        await engine.settle({
          leaseId: lease.leaseId,
          usage: { inputTokens: 40, outputTokens: 0 },
          outcome: 'notSent',
        });
        const limits = await providerLimits(engine);
        expect(limits.map((limit) => [limit.dimension, limit.used])).toEqual([
          ['requests', 1],
          ['inputTokens', 0],
        ]);
      });

      it('charges nothing at all for an unused lease, not even its request, where notSent charges the request', async () => {
        const engine = await engineWith(
          budgetsWith(
            '[{dimension: requests, amount: 10, window: 1m}, {dimension: inputTokens, amount: 500, window: 1m}, ' +
              '{dimension: outputTokens, amount: 500, window: 1m}, {dimension: totalTokens, amount: 1000, window: 1m}, ' +
              '{dimension: concurrency, amount: 3}]',
          ),
        );
        // Some use already: the cap of team-b/batch and every provider limit hold something.
        const held = await engine.acquire(request({ budget: 'team-b/batch' }));
        const snapshot = async () => {
          const provider = (await engine.usage(PROVIDER)).providers[0]!;
          return { limits: provider.limits, inFlight: provider.inFlight, budgets: provider.budgets };
        };
        const before = await snapshot();
        const spare = await engine.acquire(request({ budget: 'team-b/batch', inputTokens: 40 }));
        const settled = await engine.settle({
          leaseId: spare.leaseId,
          // Whatever usage or headers come with it, an unused lease teaches and charges nothing.
          usage: ok,
          outcome: 'unused',
          rateLimits: [{ dimension: 'requests', limit: 4, remaining: 0 }],
        });
        const nothing = { requests: 0, inputTokens: 0, outputTokens: 0, totalTokens: 0 };
        expect(settled).toEqual({ status: 'settled', charged: nothing, settledAtMs: now });
        await expect(
          engine.settle({ leaseId: spare.leaseId, usage: ok, outcome: 'unused' }),
        ).resolves.toMatchObject({ status: 'alreadySettled', charged: nothing });
        const after = await snapshot();
        // Every window, cap and slot as before the spare's acquire; only its grant is counted.
        expect(after.limits).toEqual(before.limits);
        expect(after.inFlight).toBe(before.inFlight);
        expect(after.budgets).toEqual(
          before.budgets.map((entry) =>
            entry.budget === 'team-b/batch' ? { ...entry, granted: entry.granted + 1 } : entry,
          ),
        );
        // The same lease settled notSent keeps its request (and is counted as an outcome).
        const unsent = await engine.acquire(request({ budget: 'team-b/batch', inputTokens: 40 }));
        await engine.settle({ leaseId: unsent.leaseId, usage: ok, outcome: 'notSent' });
        const used = (limits: typeof before.limits) =>
          limits.map((limit) => [limit.scope, limit.dimension, limit.used]);
        expect(used((await snapshot()).limits)).toEqual(
          used(before.limits).map(([scope, dimension, value]) => [
            scope,
            dimension,
            dimension === 'requests' ? (value as number) + 1 : value,
          ]),
        );
        const batch = (await snapshot()).budgets.find((entry) => entry.budget === 'team-b/batch')!;
        expect(batch.refusals).toEqual({ notSent: 1 });
        await engine.settle({ leaseId: held.leaseId, usage: ok, outcome: 'ok' });
      });

      it('is all or nothing: a request refused by one limit takes nothing from the others', async () => {
        const engine = await engineWith(
          budgetsWith(
            '[{dimension: requests, amount: 10, window: 1m}, {dimension: inputTokens, amount: 50, window: 1m}]',
          ),
        );
        await engine.acquire(request({ inputTokens: 45 }));
        await expect(engine.acquire(request({ inputTokens: 10 }))).rejects.toBeInstanceOf(
          CapacityExhaustedError,
        );
        const limits = await providerLimits(engine);
        expect(limits.map((limit) => limit.used)).toEqual([1, 45]);
      });

      it('applies a per-model limit only to that model', async () => {
        const engine = await engineWith(
          budgetsWith('[{dimension: requests, amount: 1, window: 1m, model: big}]'),
        );
        await engine.acquire(request({ model: 'big' }));
        await expect(engine.acquire(request({ model: 'big' }))).rejects.toBeInstanceOf(
          CapacityExhaustedError,
        );
        await expect(engine.acquire(request({ model: 'small' }))).resolves.toBeDefined();
      });

      it("applies a budget's cap to that budget only", async () => {
        const engine = await engineWith(budgetsWith('[{dimension: requests, amount: 100, window: 1m}]'));
        await engine.acquire(request({ budget: 'team-b/batch' }));
        await engine.acquire(request({ budget: 'team-b/batch' }));
        const refused = await engine
          .acquire(request({ budget: 'team-b/batch' }))
          .catch((error: unknown) => error);
        expect((refused as CapacityExhaustedError).limit).toContain(
          'LLMBudget team-b/batch cap requests per 1m',
        );
        await expect(engine.acquire(request())).resolves.toBeDefined();
      });

      it('refuses at once a wait that the window cannot end in time', async () => {
        const engine = await engineWith(budgetsWith('[{dimension: requests, amount: 1, window: 1m}]'));
        await engine.acquire(request());
        const refused = await engine.acquire(request({ maxWaitMs: 5_000 })).catch((error: unknown) => error);
        expect(refused).toBeInstanceOf(CapacityExhaustedError);
        expect((refused as CapacityExhaustedError).retryAfterMs).toBe(60_600);
      });
    });

    describe('concurrency and leases', () => {
      it('applies new budgets to the next acquire', async () => {
        const engine = await engineWith(budgetsWith('[{dimension: concurrency, amount: 1}]'));
        await engine.acquire(request());
        await expect(engine.acquire(request())).rejects.toBeInstanceOf(CapacityExhaustedError);
        engine.setBudgets(budgetsWith('[{dimension: concurrency, amount: 2}]'));
        await expect(engine.acquire(request())).resolves.toBeDefined();
        // A limit added later counts from then on.
        engine.setBudgets(
          budgetsWith('[{dimension: concurrency, amount: 5}, {dimension: requests, amount: 1, window: 1m}]'),
        );
        await expect(engine.acquire(request())).resolves.toBeDefined();
        await expect(engine.acquire(request())).rejects.toBeInstanceOf(CapacityExhaustedError);
      });

      it('holds a slot per lease and frees it on settle', async () => {
        const engine = await engineWith(budgetsWith('[{dimension: concurrency, amount: 2}]'));
        const a = await engine.acquire(request());
        await engine.acquire(request());
        await expect(engine.acquire(request())).rejects.toBeInstanceOf(CapacityExhaustedError);
        expect((await engine.usage(PROVIDER)).providers[0]!.inFlight).toBe(2);
        await engine.settle({ leaseId: a.leaseId, usage: ok, outcome: 'ok' });
        await expect(engine.acquire(request())).resolves.toBeDefined();
      });

      it('settles once: a repeat changes nothing and says so', async () => {
        const engine = await engineWith(
          budgetsWith(
            '[{dimension: concurrency, amount: 1}, {dimension: totalTokens, amount: 1000, window: 1m}]',
          ),
        );
        const lease = await engine.acquire(request());
        const first = await engine.settle({ leaseId: lease.leaseId, usage: ok, outcome: 'ok' });
        const again = await engine.settle({
          leaseId: lease.leaseId,
          usage: { inputTokens: 500, outputTokens: 0 },
          outcome: 'ok',
        });
        expect(first.status).toBe('settled');
        expect(again).toEqual({
          status: 'alreadySettled',
          charged: first.charged,
          settledAtMs: first.settledAtMs,
        });
        expect((await engine.usage(PROVIDER)).providers[0]!.limits[1]!.used).toBe(30);
      });

      it('answers a repeated settle for SETTLED_GRACE_MS after the first, and then no longer knows the lease', async () => {
        const engine = await engineWith(budgetsWith('[{dimension: concurrency, amount: 5}]'));
        const lease = await engine.acquire(request());
        const first = await engine.settle({ leaseId: lease.leaseId, usage: ok, outcome: 'ok' });
        // Other leases settled meanwhile, in later time slices, do not disturb the answer.
        for (let step = 0; step < 6; step++) {
          now += 9_000;
          const other = await engine.acquire(request());
          await engine.settle({ leaseId: other.leaseId, usage: ok, outcome: 'ok' });
        }
        now = first.settledAtMs + SETTLED_GRACE_MS - 1;
        await expect(
          engine.settle({ leaseId: lease.leaseId, usage: ok, outcome: 'ok' }),
        ).resolves.toMatchObject({
          status: 'alreadySettled',
          settledAtMs: first.settledAtMs,
        });
        now += 1;
        await expect(
          engine.settle({ leaseId: lease.leaseId, usage: ok, outcome: 'ok' }),
        ).rejects.toBeInstanceOf(NotFoundError);
      });

      it('frees the slot of a lease never settled once it expires, and still accepts a late settle', async () => {
        const engine = await engineWith(budgetsWith('[{dimension: concurrency, amount: 1}]'));
        const lease = await engine.acquire(request());
        expect(lease.expiresAtMs).toBe(now + 1000);
        now += 999;
        await expect(engine.acquire(request())).rejects.toBeInstanceOf(CapacityExhaustedError);
        now += 1;
        const next = await engine.acquire(request());
        const late = await engine.settle({ leaseId: lease.leaseId, usage: ok, outcome: 'ok' });
        expect(late.status).toBe('settledAfterExpiry');
        // The late settle must not free the slot that now belongs to `next`.
        await expect(engine.acquire(request())).rejects.toBeInstanceOf(CapacityExhaustedError);
        await engine.settle({ leaseId: next.leaseId, usage: ok, outcome: 'ok' });
        await expect(engine.acquire(request())).resolves.toBeDefined();
      });

      it('keeps a lease alive with heartbeats and charges tokens used so far', async () => {
        const engine = await engineWith(
          budgetsWith(
            '[{dimension: concurrency, amount: 1}, {dimension: outputTokens, amount: 1000, window: 1m}]',
          ),
        );
        const lease = await engine.acquire(request({ maxOutputTokens: 100 }));
        now += 800;
        const beat = await engine.heartbeat({
          leaseId: lease.leaseId,
          usedSoFar: { inputTokens: 10, outputTokens: 300 },
        });
        expect(beat.expiresAtMs).toBe(now + 1000);
        now += 800;
        await expect(engine.acquire(request())).rejects.toBeInstanceOf(CapacityExhaustedError);
        expect((await engine.usage(PROVIDER)).providers[0]!.limits[1]!.used).toBe(300);
        now += 200;
        await expect(engine.heartbeat({ leaseId: lease.leaseId })).rejects.toBeInstanceOf(NotFoundError);
      });

      it('counts refusals by outcome and grants per budget', async () => {
        const engine = await engineWith(budgetsWith('[{dimension: concurrency, amount: 5}]'));
        const a = await engine.acquire(request());
        const b = await engine.acquire(request({ budget: 'team-b/batch' }));
        await engine.settle({ leaseId: a.leaseId, usage: ok, outcome: 'refusedConcurrency' });
        await engine.settle({ leaseId: b.leaseId, usage: ok, outcome: 'ok' });
        const usage = (await engine.usage(PROVIDER)).providers[0]!;
        expect(usage.budgets).toEqual([
          {
            budget: 'team-a/search',
            inFlight: 0,
            waiters: 0,
            granted: 1,
            rejected: 0,
            refusals: { refusedConcurrency: 1 },
          },
          { budget: 'team-b/batch', inFlight: 0, waiters: 0, granted: 1, rejected: 0, refusals: {} },
        ]);
      });
    });

    describe('headroom', () => {
      it('tells a direct grant what its tightest limit has left: the smallest free share, and how many more such requests fit', async () => {
        const engine = await engineWith(
          budgetsWith(
            '[{dimension: requests, amount: 10, window: 1m}, {dimension: totalTokens, amount: 2000, window: 1m}, ' +
              '{dimension: concurrency, amount: 20}]',
          ),
        );
        const big = request({ inputTokens: 100, maxOutputTokens: 200 });
        for (let i = 0; i < 3; i++) await engine.acquire(big);
        // After this grant: requests 4 of 10 (6 free, 0.6), tokens 1200 of 2000 (800 free, 0.4,
        // two more of 300), slots 4 of 20 (0.8, 16 more). The tokens are tightest on both counts.
        expect((await engine.acquire(big)).headroom).toEqual({ fraction: 0.4, requests: 2 });
        // A small request: tokens 1210 of 2000 leave the smallest share (790 free, 0.395), while
        // the requests limit (5 free) bounds how many more fit.
        expect((await engine.acquire(request({ inputTokens: 10, maxOutputTokens: 0 }))).headroom).toEqual({
          fraction: 0.395,
          requests: 5,
        });
      });

      it('counts concurrency and a budget cap, and says when nothing is left', async () => {
        const engine = await engineWith(budgetsWith('[{dimension: concurrency, amount: 8}]'));
        await engine.acquire(request());
        // 2 slots of 8 in use after this grant: 6 free.
        expect((await engine.acquire(request())).headroom).toEqual({ fraction: 0.75, requests: 6 });
        // team-b/batch's cap of 2 requests a minute is tighter than the slots (5 of 8 free): 1 of 2 left.
        expect((await engine.acquire(request({ budget: 'team-b/batch' }))).headroom).toEqual({
          fraction: 0.5,
          requests: 1,
        });
        // The cap's last request: no room at all (zeros, not the absence of a headroom).
        expect((await engine.acquire(request({ budget: 'team-b/batch' }))).headroom).toEqual({
          fraction: 0,
          requests: 0,
        });
      });

      it('measures against the effective amount an adaptive limit learned', async () => {
        const engine = await engineWith(budgetsWith('[{dimension: requests, amount: 100, window: 1m}]'));
        const lease = await engine.acquire(request());
        expect(lease.headroom).toEqual({ fraction: 0.99, requests: 99 });
        await engine.settle({
          leaseId: lease.leaseId,
          usage: ok,
          outcome: 'ok',
          rateLimits: [{ dimension: 'requests', limit: 40 }],
        });
        // 40 in force, 1 used, 1 this grant: 38 free.
        expect((await engine.acquire(request())).headroom).toEqual({ fraction: 0.95, requests: 38 });
      });

      it('rounds the share to millionths and reports an unbounded count when no limit counts the request', async () => {
        const engine = await engineWith(
          budgetsWith(
            '[{dimension: inputTokens, amount: 3, window: 1m}, {dimension: outputTokens, amount: 7, window: 1m}]',
          ),
        );
        // 1 of 3 input tokens and no output token: 2/3 free; the output limit needs nothing.
        expect((await engine.acquire(request({ inputTokens: 1, maxOutputTokens: 0 }))).headroom).toEqual({
          fraction: 0.666667,
          requests: 2,
        });
        expect((await engine.acquire(request({ inputTokens: 0, maxOutputTokens: 0 }))).headroom).toEqual({
          fraction: 0.666667,
          requests: 1e9,
        });
      });
    });

    describe('bad requests', () => {
      it('refuses a request larger than a limit can ever allow, naming the limit', async () => {
        const engine = await engineWith(budgetsWith('[{dimension: inputTokens, amount: 1000, window: 1m}]'));
        const error = await engine
          .acquire(request({ inputTokens: 1001, maxWaitMs: 10_000 }))
          .catch((e: unknown) => e);
        expect(error).toBeInstanceOf(RequestTooLargeError);
        expect((error as RequestTooLargeError).limit).toBe('LLMProvider llm/acme inputTokens per 1m');
        expect((error as RequestTooLargeError).allowed).toBe(1000);
      });

      it.each([
        [{ provider: '' }, 'provider'],
        [{ model: '  ' }, 'model'],
        [{ inputTokens: -1 }, 'inputTokens'],
        [{ inputTokens: 1.5 }, 'inputTokens'],
        [{ maxOutputTokens: 2e9 }, 'maxOutputTokens'],
        [{ maxWaitMs: -5 }, 'maxWaitMs'],
        [{ maxWaitMs: 3_600_000 }, 'maxWaitMs'],
        [{ priority: 5000 }, 'priority'],
      ])('refuses %j naming the field', async (overrides, field) => {
        const engine = await engineWith(budgetsWith('[]'));
        const error = await engine
          .acquire(request(overrides as Partial<AcquireInput>))
          .catch((e: unknown) => e);
        expect(error).toBeInstanceOf(InvalidRequestError);
        expect((error as InvalidRequestError).field).toBe(field);
      });

      it('names unknown providers, models, budgets and leases', async () => {
        const engine = await engineWith(
          budgetsWith(
            '[]',
            '---\napiVersion: tokenlease.io/v1alpha1\nkind: LLMProvider\nmetadata: {name: other, namespace: llm}\nspec: {api: openai, baseURL: "https://x.test", models: [m1]}',
          ),
        );
        await expect(engine.acquire(request({ provider: 'llm/nope' }))).rejects.toMatchObject({
          kind: 'provider',
        });
        await expect(engine.acquire(request({ provider: 'llm/other', model: 'm2' }))).rejects.toMatchObject({
          kind: 'model',
        });
        await expect(engine.acquire(request({ budget: 'x/y' }))).rejects.toMatchObject({ kind: 'budget' });
        await expect(engine.acquire(request({ provider: 'llm/other', model: 'm1' }))).rejects.toBeInstanceOf(
          PermissionDeniedError,
        );
        await expect(
          engine.settle({ leaseId: 'llm/acme|nope', usage: ok, outcome: 'ok' }),
        ).rejects.toMatchObject({
          kind: 'lease',
        });
        await expect(engine.settle({ leaseId: 'garbage', usage: ok, outcome: 'ok' })).rejects.toBeInstanceOf(
          NotFoundError,
        );
        await expect(engine.heartbeat({ leaseId: 'llm/acme|nope' })).rejects.toBeInstanceOf(NotFoundError);
        await expect(engine.usage('llm/nope')).rejects.toBeInstanceOf(NotFoundError);
      });

      it('refuses a settle with negative usage or an unknown outcome', async () => {
        const engine = await engineWith(budgetsWith('[]'));
        const lease = await engine.acquire(request());
        await expect(
          engine.settle({
            leaseId: lease.leaseId,
            usage: { inputTokens: -1, outputTokens: 0 },
            outcome: 'ok',
          }),
        ).rejects.toMatchObject({ field: 'usage.inputTokens' });
        await expect(
          engine.settle({ leaseId: lease.leaseId, usage: ok, outcome: 'great' as never }),
        ).rejects.toMatchObject({ field: 'outcome' });
      });
    });

    describe('scheduling', () => {
      const budget = (name: string, spec: string) =>
        `---\napiVersion: tokenlease.io/v1alpha1\nkind: LLMBudget\nmetadata: {name: ${name}, namespace: t}\nspec: {providerRef: {name: acme, namespace: llm}, ${spec}}\n`;

      /** Holds the only slot, queues `waiters`, then hands the slot on one grant at a time. */
      async function grantOrder(engine: LeaseEngine, waiters: Array<Partial<AcquireInput>>, grants: number) {
        let current = await engine.acquire(request({ budget: 't/holder' }));
        const order: string[] = [];
        const pending = new Map<string, Promise<unknown>>();
        const resolved: Array<{ label: string; leaseId: string }> = [];
        waiters.forEach((overrides, index) => {
          const label = `${overrides.budget ?? BUDGET}#${index}`;
          pending.set(
            label,
            engine
              .acquire(request({ maxWaitMs: 60_000, ...overrides }))
              .then((grant) => {
                resolved.push({ label, leaseId: grant.leaseId });
              })
              // Waiters still queued when the test ends are cancelled by close().
              .catch(() => {}),
          );
        });
        await sleep(20);
        for (let i = 0; i < grants; i++) {
          await engine.settle({ leaseId: current.leaseId, usage: ok, outcome: 'ok' });
          for (let spin = 0; spin < 100 && resolved.length <= i; spin++) await sleep(2);
          const next = resolved[i];
          if (!next) throw new Error(`no grant after settle ${i}`);
          order.push(next.label);
          current = { ...current, leaseId: next.leaseId };
        }
        return order;
      }

      it('shares contended capacity by weight (1:2:1)', async () => {
        const engine = await engineWith(
          budgetsWith(
            '[{dimension: concurrency, amount: 1}]',
            budget('holder', 'weight: 1') +
              budget('a', 'weight: 1') +
              budget('b', 'weight: 2') +
              budget('c', 'weight: 1'),
          ),
        );
        const waiters = Array.from({ length: 36 }, (_, i) => ({ budget: ['t/a', 't/b', 't/c'][i % 3]! }));
        const order = await grantOrder(engine, waiters, 20);
        const share = (name: string) => order.filter((label) => label.startsWith(name)).length;
        expect([share('t/a#'), share('t/b#'), share('t/c#')]).toEqual([5, 10, 5]);
      });

      it('folds a guaranteed share into the weight', async () => {
        const engine = await engineWith(
          budgetsWith(
            '[{dimension: concurrency, amount: 1}]',
            budget('holder', 'weight: 1') +
              budget('g', 'weight: 1, guaranteedShare: 0.5') +
              budget('a', 'weight: 1') +
              budget('b', 'weight: 1'),
          ),
        );
        // Others weigh 1 + 1 + 1 (holder, a, b): g weighs 3, half of all six should all contend.
        // Here the holder does not wait, so g gets 3 of every 5 grants (fair queuing is exact to
        // within one request).
        const waiters = Array.from({ length: 30 }, (_, i) => ({ budget: ['t/g', 't/a', 't/b'][i % 3]! }));
        const order = await grantOrder(engine, waiters, 15);
        const granted = order.filter((label) => label.startsWith('t/g#')).length;
        expect(granted).toBeGreaterThanOrEqual(9);
        expect(granted).toBeLessThanOrEqual(10);
      });

      it('serves higher priorities of a budget first, and aged waiters before them', async () => {
        const engine = await engineWith(
          budgetsWith(
            '[{dimension: concurrency, amount: 1}]',
            budget('holder', 'weight: 1') + budget('p', 'priorityAging: 5s'),
          ),
        );
        const order = await grantOrder(
          engine,
          [
            { budget: 't/p', priority: 50 },
            { budget: 't/p', priority: 100 },
            { budget: 't/p', priority: 50 },
            { budget: 't/p', priority: 100 },
          ],
          4,
        );
        expect(order).toEqual(['t/p#1', 't/p#3', 't/p#0', 't/p#2']);

        const aged = await engineWith(
          budgetsWith(
            '[{dimension: concurrency, amount: 1}]',
            budget('holder', 'weight: 1') + budget('p', 'priorityAging: 5s'),
          ),
        );
        let current = await aged.acquire(request({ budget: 't/holder' }));
        const labels: string[] = [];
        const old = aged.acquire(request({ budget: 't/p', priority: 50, maxWaitMs: 60_000 })).then((g) => {
          labels.push('old standard');
          return g;
        });
        await sleep(10);
        now += 6_000;
        const urgent = aged
          .acquire(request({ budget: 't/p', priority: 100, maxWaitMs: 60_000 }))
          .then((g) => {
            labels.push('new interactive');
            return g;
          });
        await sleep(10);
        await aged.settle({ leaseId: current.leaseId, usage: ok, outcome: 'ok' });
        current = await old;
        await aged.settle({ leaseId: current.leaseId, usage: ok, outcome: 'ok' });
        await urgent;
        expect(labels).toEqual(['old standard', 'new interactive']);
      });

      it('gives batch only capacity that nobody else is waiting for', async () => {
        const engine = await engineWith(
          budgetsWith(
            '[{dimension: concurrency, amount: 1}]',
            budget('holder', 'weight: 1') + budget('bulk', 'priority: batch'),
          ),
        );
        const order = await grantOrder(
          engine,
          [{ budget: 't/bulk' }, { budget: 't/bulk' }, { budget: BUDGET }, { budget: BUDGET }],
          4,
        );
        expect(order).toEqual([`${BUDGET}#2`, `${BUDGET}#3`, 't/bulk#0', 't/bulk#1']);
        // With a batch waiter queued, a new standard request that fits is granted at once.
        const fresh = await engineWith(
          budgetsWith(
            '[{dimension: concurrency, amount: 2}]',
            budget('holder', 'weight: 1') + budget('bulk', 'priority: batch'),
          ),
        );
        await fresh.acquire(request({ budget: 't/holder' }));
        await fresh.acquire(request({ budget: 't/holder' }));
        const bulk = fresh.acquire(request({ budget: 't/bulk', maxWaitMs: 60_000 }));
        await sleep(10);
        await expect(fresh.acquire(request())).rejects.toBeInstanceOf(CapacityExhaustedError);
        void bulk.catch(() => {});
      });
      it('shares a rate window by weight when budgets with few and with many callers saturate it', async () => {
        // 20 requests per second; each budget's callers loop acquire -> a 150 ms call -> settle,
        // search with 3 callers (weight 2), chat with 3 and reports with 8 (weight 1 each). The
        // window frees what it granted one window later: handed out at once to whoever waits
        // then, reports' many callers would take most of it.
        const engine = await engineWith(
          budgetsWith(
            '[{dimension: requests, amount: 20, window: 1s}]',
            budget('search', 'weight: 2') +
              budget('chat', 'weight: 1') +
              budget('reports', 'weight: 1') +
              budget('tick', 'caps: [{dimension: requests, amount: 1, window: 1d}]'),
          ),
        );
        const callMs = 150;
        const start = now;
        const end = start + 6_000;
        // What wakes time-bound waiters here: an acquire that its cap refuses after the store has
        // granted what fits at the new time.
        await engine.acquire(request({ budget: 't/tick' }));
        const tick = () => engine.acquire(request({ budget: 't/tick' })).catch(() => {});
        const grants: Array<{ budget: string; atMs: number }> = [];
        const due: Array<{ atMs: number; wake: () => void }> = [];
        let acquiring = 0;
        let settling = 0;
        async function caller(budget: string): Promise<void> {
          while (now < end) {
            acquiring += 1;
            const grant = await engine.acquire(request({ budget, maxWaitMs: 60_000 }));
            acquiring -= 1;
            const atMs = grant.expiresAtMs - grant.leaseTimeoutMs;
            grants.push({ budget, atMs });
            await new Promise<void>((wake) => due.push({ atMs: atMs + callMs, wake }));
            settling += 1;
            await engine.settle({ leaseId: grant.leaseId, usage: ok, outcome: 'ok' });
            settling -= 1;
          }
        }
        /** Until every caller waits in the store's queue or in a call. */
        async function quiet(): Promise<void> {
          for (let spin = 0; spin < 500; spin++) {
            await sleep(1);
            const { waiters } = (await engine.usage(PROVIDER)).providers[0]!;
            if (settling === 0 && acquiring === waiters) return;
          }
          throw new Error('the callers did not settle down');
        }
        const callers = [
          ...Array.from({ length: 3 }, () => caller('t/search')),
          ...Array.from({ length: 3 }, () => caller('t/chat')),
          ...Array.from({ length: 8 }, () => caller('t/reports')),
        ];
        await quiet();
        while (now < end) {
          now += 10;
          for (const call of due.filter((entry) => entry.atMs <= now)) {
            due.splice(due.indexOf(call), 1);
            call.wake();
          }
          await tick();
          await quiet();
        }
        // Let the callers end: their last calls finish, and their last waits are cancelled by close().
        for (const call of due.splice(0)) call.wake();
        void Promise.all(callers).catch(() => {});
        const counted = grants.filter((grant) => grant.atMs >= start + 1_000 && grant.atMs < end);
        const count = (budget: string) => counted.filter((grant) => grant.budget === budget).length;
        const shares = ['t/search', 't/chat', 't/reports'].map(
          (budget) => (100 * count(budget)) / counted.length,
        );
        const measured = `${counted.length} grants after the first window, shares ${shares.map((share) => share.toFixed(1)).join('/')} %`;
        // The window is used: 20 per second (21 per 1010 ms with the bucket), less what pacing rounds off.
        expect(counted.length, measured).toBeGreaterThanOrEqual(95);
        expect(Math.abs(shares[0]! - 50), measured).toBeLessThanOrEqual(5);
        expect(Math.abs(shares[1]! - 25), measured).toBeLessThanOrEqual(5);
        expect(Math.abs(shares[2]! - 25), measured).toBeLessThanOrEqual(5);
      });
      it('paces a window one budget saturates, once it has held a request back, and not before', async () => {
        const engine = await engineWith(budgetsWith('[{dimension: requests, amount: 20, window: 1s}]'));
        const start = now;
        // Within what the window holds, a burst goes at once, waiting or not.
        const burst = await Promise.all(
          Array.from({ length: 20 }, () => engine.acquire(request({ maxWaitMs: 60_000 }))),
        );
        expect(burst.map((grant) => grant.expiresAtMs - grant.leaseTimeoutMs)).toEqual(
          burst.map(() => start),
        );
        // Beyond it the window holds the next 20 back. When the burst leaves it (1 s and a 10 ms
        // bucket later), they are granted at the window's steady rate, one per 1010 / 20 ms after
        // a burst of two; all at once, the burst would come back every window.
        const grantedAt: number[] = [];
        const waiting = Array.from({ length: 20 }, () =>
          engine
            .acquire(request({ maxWaitMs: 60_000 }))
            .then((grant) => grantedAt.push(grant.expiresAtMs - grant.leaseTimeoutMs)),
        );
        await sleep(20);
        while (grantedAt.length < 20 && now < start + 3_000) {
          now += 10;
          // What wakes time-bound waiters here: an acquire refused because others wait.
          await engine.acquire(request()).catch(() => {});
          await sleep(1);
        }
        await Promise.all(waiting);
        const offsets = grantedAt.map((at) => at - start);
        expect(offsets.slice(0, 2)).toEqual([1_010, 1_010]);
        // The clock moves in 10 ms steps: 50.5 ms apart shows as 50 or 60.
        for (let i = 2; i < 20; i++)
          expect(offsets[i]! - offsets[i - 1]!, offsets.join(' ')).toBeGreaterThanOrEqual(50);
      });
    });

    describe('closures and adaptation', () => {
      it('closes the provider until a window refusal says it resets', async () => {
        const engine = await engineWith(budgetsWith('[{dimension: requests, amount: 100, window: 5h}]'));
        const lease = await engine.acquire(request());
        await engine.settle({
          leaseId: lease.leaseId,
          usage: ok,
          outcome: 'refusedWindow',
          resetAtMs: now + 5_000,
        });
        const refused = await engine.acquire(request({ maxWaitMs: 1_000 })).catch((e: unknown) => e);
        expect(refused).toBeInstanceOf(CapacityExhaustedError);
        expect((refused as CapacityExhaustedError).retryAfterMs).toBe(5_000);
        expect((refused as CapacityExhaustedError).limit).toContain('closed');
        const usage = (await engine.usage(PROVIDER)).providers[0]!;
        expect(usage.closedUntilMs).toBe(now + 5_000);
        expect(usage.closedReason).toContain('refusedWindow');
        now += 5_000;
        await expect(engine.acquire(request())).resolves.toBeDefined();
        expect((await engine.usage(PROVIDER)).providers[0]!.closedUntilMs).toBe(0);
      });

      it("closes the provider for a rate refusal's retry-after", async () => {
        const engine = await engineWith(budgetsWith('[{dimension: requests, amount: 100, window: 1m}]'));
        const lease = await engine.acquire(request());
        await engine.settle({
          leaseId: lease.leaseId,
          usage: ok,
          outcome: 'refusedRate',
          retryAfterMs: 1_500,
        });
        await expect(engine.acquire(request())).rejects.toMatchObject({ retryAfterMs: 1_500 });
        now += 1_500;
        await expect(engine.acquire(request())).resolves.toBeDefined();
      });

      it('learns concurrency from the slots in use, not the grant order, when calls arrive out of order', async () => {
        const engine = await engineWith(budgetsWith('[{dimension: concurrency, amount: 8}]'));
        const leases = [];
        for (let i = 0; i < 8; i++) leases.push(await engine.acquire(request()));
        // The provider really allows 5, and the 1st, 2nd and 3rd grants reached it last.
        for (const lease of leases.slice(0, 3)) {
          await engine.settle({ leaseId: lease.leaseId, usage: ok, outcome: 'refusedConcurrency' });
        }
        const limit = (await engine.usage(PROVIDER)).providers[0]!.limits[0]!;
        expect(limit).toMatchObject({ limit: 8, effectiveLimit: 5, used: 5 });
      });

      it('lowers concurrency to where the provider refused, and probes back up after quiet', async () => {
        const engine = await engineWith(budgetsWith('[{dimension: concurrency, amount: 8}]'));
        const leases = [];
        for (let i = 0; i < 8; i++) leases.push(await engine.acquire(request()));
        // The provider really allows 5: the 6th, 7th and 8th were refused with 1302.
        for (const lease of leases.slice(5)) {
          await engine.settle({ leaseId: lease.leaseId, usage: ok, outcome: 'refusedConcurrency' });
        }
        const limit = async () => (await engine.usage(PROVIDER)).providers[0]!.limits[0]!;
        expect(await limit()).toMatchObject({ limit: 8, effectiveLimit: 5, used: 5 });
        await expect(engine.acquire(request())).rejects.toBeInstanceOf(CapacityExhaustedError);
        await engine.settle({ leaseId: leases[0]!.leaseId, usage: ok, outcome: 'ok' });
        expect((await limit()).effectiveLimit).toBe(5);
        now += 30_000;
        await engine.settle({ leaseId: leases[1]!.leaseId, usage: ok, outcome: 'ok' });
        expect((await limit()).effectiveLimit).toBe(6);
        // Every lease above has expired by now (lease timeout 1s). That probe is refused soon
        // after: back to 5, and the next probe waits twice as long.
        const probing = [];
        for (let i = 0; i < 6; i++) probing.push(await engine.acquire(request()));
        await engine.settle({ leaseId: probing[5]!.leaseId, usage: ok, outcome: 'refusedConcurrency' });
        expect((await limit()).effectiveLimit).toBe(5);
        now += 30_000;
        await engine.settle({ leaseId: probing[0]!.leaseId, usage: ok, outcome: 'ok' });
        expect((await limit()).effectiveLimit).toBe(5);
        now += 30_000;
        await engine.settle({ leaseId: probing[1]!.leaseId, usage: ok, outcome: 'ok' });
        expect((await limit()).effectiveLimit).toBe(6);
      });

      it('halves a limit at most per refusal', async () => {
        const engine = await engineWith(budgetsWith('[{dimension: requests, amount: 100, window: 1m}]'));
        const lease = await engine.acquire(request());
        // Refused with nothing else in our window: someone outside uses the account.
        await engine.settle({ leaseId: lease.leaseId, usage: ok, outcome: 'refusedRate' });
        expect((await providerLimits(engine))[0]!.effectiveLimit).toBe(50);
      });

      it('lowers a rate to just under where the provider refused', async () => {
        const engine = await engineWith(
          budgetsWith(
            '[{dimension: requests, amount: 100, window: 1m}, {dimension: totalTokens, amount: 1000000, window: 1m}]',
          ),
        );
        let last;
        for (let i = 0; i < 80; i++) last = await engine.acquire(request());
        await engine.settle({ leaseId: last!.leaseId, usage: ok, outcome: 'refusedRate' });
        const limits = await providerLimits(engine);
        expect(limits[0]).toMatchObject({ dimension: 'requests', effectiveLimit: Math.floor(79 * 0.97) });
        expect(limits[1]!.effectiveLimit).toBe(1_000_000);
      });

      it('lowers a rate once for the refusals of one window, whatever order its calls reached the provider in', async () => {
        const engine = await engineWith(budgetsWith('[{dimension: requests, amount: 100, window: 1m}]'));
        const leases = [];
        for (let i = 0; i < 80; i++) leases.push(await engine.acquire(request()));
        // The provider allowed 79: it refused the 80th, and the 75th, which reached it later, at the
        // edge of its window (where it still counted calls that had left ours).
        await engine.settle({ leaseId: leases[79]!.leaseId, usage: ok, outcome: 'refusedRate' });
        await engine.settle({ leaseId: leases[74]!.leaseId, usage: ok, outcome: 'refusedRate' });
        const limit = async () => (await providerLimits(engine))[0]!;
        expect((await limit()).effectiveLimit).toBe(Math.floor(79 * 0.97));
        // A window (and its bucket) later, a refusal lowers it again.
        now += 60_600;
        const more = [];
        for (let i = 0; i < 70; i++) more.push(await engine.acquire(request()));
        await engine.settle({ leaseId: more[69]!.leaseId, usage: ok, outcome: 'refusedRate' });
        expect((await limit()).effectiveLimit).toBe(Math.floor(69 * 0.97));
      });

      it("learns a rate from a refused call's own headers, not from the count it was refused at", async () => {
        const engine = await engineWith(budgetsWith('[{dimension: requests, amount: 100, window: 1m}]'));
        const leases = [];
        for (let i = 0; i < 10; i++) leases.push(await engine.acquire(request()));
        // Refused while the provider still counted calls ours no longer does: its headers state
        // the limit we use and nothing left. Nothing is lowered; the window is full until then.
        await engine.settle({
          leaseId: leases[9]!.leaseId,
          usage: ok,
          outcome: 'refusedRate',
          rateLimits: [{ dimension: 'requests', limit: 100, remaining: 0 }],
        });
        expect((await providerLimits(engine))[0]).toMatchObject({
          limit: 100,
          effectiveLimit: 100,
          used: 100,
        });
        // A refusal stating less is learned as stated (not halved from where it was refused).
        await engine.settle({
          leaseId: leases[8]!.leaseId,
          usage: ok,
          outcome: 'refusedRate',
          rateLimits: [{ dimension: 'requests', limit: 80, remaining: 0 }],
        });
        expect((await providerLimits(engine))[0]!.effectiveLimit).toBe(80);
      });

      it('learns a stated limit and outside use from rate-limit headers', async () => {
        const engine = await engineWith(budgetsWith('[{dimension: requests, amount: 100, window: 1m}]'));
        for (let i = 0; i < 9; i++) await engine.acquire(request());
        const lease = await engine.acquire(request());
        await engine.settle({
          leaseId: lease.leaseId,
          usage: ok,
          outcome: 'ok',
          rateLimits: [{ dimension: 'requests', limit: 40, remaining: 5 }],
        });
        // The account allows 40 (stated: taken whole), and only 5 are left though we used 10: 25 went elsewhere.
        const [limit] = await providerLimits(engine);
        expect(limit).toMatchObject({ limit: 100, effectiveLimit: 40, used: 35 });
      });

      it('does not adapt when the provider turns adaptation off', async () => {
        const engine = await engineWith(
          acmeBudgets('[{dimension: concurrency, amount: 4}]', 'adaptation: {enabled: false}'),
        );
        const leases = [];
        for (let i = 0; i < 4; i++) leases.push(await engine.acquire(request()));
        await engine.settle({ leaseId: leases[3]!.leaseId, usage: ok, outcome: 'refusedConcurrency' });
        expect((await engine.usage(PROVIDER)).providers[0]!.limits[0]!.effectiveLimit).toBe(4);
      });
    });

    describe('waiting (real time)', () => {
      it('wakes a waiter when a settle frees its slot', async () => {
        const engine = await engineWith(budgetsWith('[{dimension: concurrency, amount: 1}]'), false);
        const first = await engine.acquire(request());
        const waiting = engine.acquire(request({ maxWaitMs: 5_000 }));
        await sleep(50);
        expect((await engine.usage(PROVIDER)).providers[0]!.waiters).toBe(1);
        await engine.settle({ leaseId: first.leaseId, usage: ok, outcome: 'ok' });
        const second = await waiting;
        expect(second.waitedMs).toBeGreaterThanOrEqual(40);
      });

      it('gives no headroom to a grant from the queue', async () => {
        const engine = await engineWith(budgetsWith('[{dimension: concurrency, amount: 1}]'), false);
        const first = await engine.acquire(request());
        expect(first.headroom).toEqual({ fraction: 0, requests: 0 });
        const waiting = engine.acquire(request({ maxWaitMs: 5_000 }));
        await sleep(30);
        await engine.settle({ leaseId: first.leaseId, usage: ok, outcome: 'unused' });
        const second = await waiting;
        expect(second.leaseId).not.toBe(first.leaseId);
        expect(second.headroom).toBeUndefined();
      });

      it('grants waiters in arrival order', async () => {
        const engine = await engineWith(budgetsWith('[{dimension: concurrency, amount: 1}]'), false);
        let lease = await engine.acquire(request());
        const order: number[] = [];
        const waits = [0, 1, 2, 3].map(async (index) => {
          await sleep(index * 10);
          const grant = await engine.acquire(request({ maxWaitMs: 5_000 }));
          order.push(index);
          return grant;
        });
        await sleep(80);
        for (let i = 0; i < 4; i++) {
          await engine.settle({ leaseId: lease.leaseId, usage: ok, outcome: 'ok' });
          lease = await waits[i]!;
        }
        expect(order).toEqual([0, 1, 2, 3]);
      });

      it('does not let a later small request pass a waiting one', async () => {
        const engine = await engineWith(
          budgetsWith('[{dimension: totalTokens, amount: 100, window: 2s}]'),
          false,
        );
        await engine.acquire(request({ inputTokens: 60, maxOutputTokens: 0 }));
        const big = engine.acquire(request({ inputTokens: 80, maxOutputTokens: 0, maxWaitMs: 5_000 }));
        await sleep(20);
        await expect(engine.acquire(request({ inputTokens: 10, maxOutputTokens: 0 }))).rejects.toBeInstanceOf(
          CapacityExhaustedError,
        );
        await expect(big).resolves.toBeDefined();
      });

      it('wakes a waiter when the window rolls on', async () => {
        const engine = await engineWith(budgetsWith('[{dimension: requests, amount: 2, window: 1s}]'), false);
        await engine.acquire(request());
        await engine.acquire(request());
        const started = Date.now();
        const third = await engine.acquire(request({ maxWaitMs: 3_000 }));
        expect(third.leaseId).toBeTruthy();
        expect(Date.now() - started).toBeGreaterThanOrEqual(900);
      });

      it('wakes a waiter when an abandoned lease expires', async () => {
        const engine = await engineWith(budgetsWith('[{dimension: concurrency, amount: 1}]'), false);
        await engine.acquire(request()); // never settled; leaseTimeout is 1s
        await expect(engine.acquire(request({ maxWaitMs: 3_000 }))).resolves.toBeDefined();
      });

      it('gives up at the deadline with a retry time, leaving no waiter behind', async () => {
        const engine = await engineWith(budgetsWith('[{dimension: concurrency, amount: 1}]'), false);
        await engine.acquire(request());
        const error = await engine.acquire(request({ maxWaitMs: 150 })).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(CapacityExhaustedError);
        expect((error as CapacityExhaustedError).retryAfterMs).toBeGreaterThan(0);
        const usage = (await engine.usage(PROVIDER)).providers[0]!;
        expect(usage.waiters).toBe(0);
        expect(usage.budgets[0]!.rejected).toBe(1);
      });

      it('gives up a wait when the caller aborts, and the capacity goes to the next in line', async () => {
        const engine = await engineWith(budgetsWith('[{dimension: concurrency, amount: 1}]'), false);
        const first = await engine.acquire(request());
        const controller = new AbortController();
        const abandoned = engine.acquire(request({ maxWaitMs: 5_000, signal: controller.signal }));
        await sleep(20);
        const patient = engine.acquire(request({ maxWaitMs: 5_000 }));
        await sleep(20);
        controller.abort();
        await expect(abandoned).rejects.toBeInstanceOf(CancelledError);
        await engine.settle({ leaseId: first.leaseId, usage: ok, outcome: 'ok' });
        await expect(patient).resolves.toBeDefined();
      });

      it('wakes a waiter held by one replica when another replica settles', async () => {
        const engine = await engineWith(budgetsWith('[{dimension: concurrency, amount: 1}]'), false);
        const other = await factory.replica(engine);
        engines.push(other);
        const first = await other.acquire(request());
        const waiting = engine.acquire(request({ maxWaitMs: 5_000 }));
        await sleep(30);
        await other.settle({ leaseId: first.leaseId, usage: ok, outcome: 'ok' });
        const grant = await waiting;
        await expect(
          other.settle({ leaseId: grant.leaseId, usage: ok, outcome: 'ok' }),
        ).resolves.toMatchObject({
          status: 'settled',
        });
      });
    });
  });
}
