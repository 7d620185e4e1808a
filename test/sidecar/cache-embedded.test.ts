/**
 * The response cache of one sidecar in embedded mode (the in-memory store): coalescing within the
 * process, the bound on a follower's wait, a leader that stores nothing, and a store that fails.
 */
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { afterEach, describe, expect, it } from 'vitest';
import { createMemoryEngine } from '../../controller/quota/engine/index.ts';
import type { CacheStore } from '../../sidecar/cache/cache-store.ts';
import { startSidecar, type RunningSidecar } from '../../sidecar/main.ts';
import { startSimProvider, type SimProvider } from '../../sim-provider/index.ts';
import { budget, budgetSet, counter } from './cache-harness.ts';

const BUDGET = 'team/app';
const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (closers.length > 0) await closers.pop()!();
});

async function start(
  cache: Record<string, unknown>,
  sim: { latencyMs?: number } = {},
  cacheStore?: CacheStore,
): Promise<{ sim: SimProvider; sidecar: RunningSidecar; client: OpenAI }> {
  const provider = await startSimProvider({ models: [], outputTokens: 8, ...sim });
  closers.push(() => provider.close());
  const budgets = budgetSet(`${provider.url}/v1`, [budget('team', 'app', cache)]);
  const engine = createMemoryEngine({ budgets });
  closers.push(() => engine.close());
  const sidecar = await startSidecar({ budgets, budget: BUDGET, quota: engine, maxRetries: 0, cacheStore });
  closers.push(() => sidecar.close());
  return {
    sim: provider,
    sidecar,
    client: new OpenAI({ baseURL: `${sidecar.url}/v1`, apiKey: 'k', maxRetries: 0 }),
  };
}

const body = (content: string) => ({
  model: 'sim-model',
  temperature: 0,
  messages: [{ role: 'user' as const, content }],
});

async function ask(client: OpenAI, content: string) {
  const response = await client.chat.completions.create(body(content)).asResponse();
  return { cache: response.headers.get('x-tokenlease-cache'), text: await response.text() };
}

describe('response cache, embedded', () => {
  it('coalesces identical calls in one sidecar into one provider call', async () => {
    const { sim, sidecar, client } = await start({ enabled: true }, { latencyMs: 200 });
    const answers = await Promise.all(Array.from({ length: 10 }, () => ask(client, 'same')));
    expect(sim.ledger.summary().total).toBe(1);
    expect(new Set(answers.map((answer) => answer.text)).size).toBe(1);
    expect(answers.filter((answer) => answer.cache === 'hit')).toHaveLength(9);
    expect(
      await counter(sidecar, 'tokenlease_sidecar_cache_coalesced_waits_total', { result: 'served' }),
    ).toBe(9);
    expect((await ask(client, 'same')).cache).toBe('hit');
    expect(sim.ledger.summary().total).toBe(1);
  });

  it('a follower waits at most coalesceWait, then calls on its own', async () => {
    const { sim, sidecar, client } = await start({ enabled: true, coalesceWait: '50ms' }, { latencyMs: 500 });
    const answers = await Promise.all(Array.from({ length: 3 }, () => ask(client, 'slow')));
    expect(sim.ledger.summary().total).toBe(3);
    expect(answers.every((answer) => answer.cache === 'miss')).toBe(true);
    expect(
      await counter(sidecar, 'tokenlease_sidecar_cache_coalesced_waits_total', { result: 'timeout' }),
    ).toBe(2);
  });

  it('followers of a leader that stored nothing call on their own', async () => {
    const { sim, sidecar, client } = await start({ enabled: true }, { latencyMs: 200 });
    sim.inject('drop');
    const answers = await Promise.allSettled(Array.from({ length: 3 }, () => ask(client, 'dropped')));
    expect(answers.filter((answer) => answer.status === 'rejected')).toHaveLength(1);
    expect(sim.ledger.summary().total).toBe(3);
    expect(
      await counter(sidecar, 'tokenlease_sidecar_cache_coalesced_waits_total', { result: 'leaderFailed' }),
    ).toBe(2);
    expect((await ask(client, 'dropped')).cache).toBe('hit');
  });

  it('Anthropic messages: JSON and SSE answers replayed byte for byte', async () => {
    const sim = await startSimProvider({ flavor: 'anthropic', models: [], outputTokens: 8 });
    closers.push(() => sim.close());
    const budgets = budgetSet(sim.url, [budget('team', 'app', { enabled: true })], 'anthropic');
    const engine = createMemoryEngine({ budgets });
    closers.push(() => engine.close());
    const sidecar = await startSidecar({ budgets, budget: BUDGET, quota: engine, maxRetries: 0 });
    closers.push(() => sidecar.close());
    const client = new Anthropic({ baseURL: sidecar.url, apiKey: 'k', maxRetries: 0 });
    const params = {
      model: 'sim-claude',
      max_tokens: 50,
      temperature: 0,
      messages: [{ role: 'user' as const, content: 'hello' }],
    };
    for (const stream of [false, true]) {
      const first = await client.messages.create({ ...params, stream } as never).asResponse();
      const firstText = await first.text();
      const again = await client.messages.create({ ...params, stream } as never).asResponse();
      expect(again.headers.get('x-tokenlease-cache')).toBe('hit');
      expect(await again.text()).toBe(firstText);
      if (stream) expect(firstText).toContain('message_stop');
    }
    expect(sim.ledger.summary().total).toBe(2);
  });

  it('a failing store never fails a call: it goes to the provider uncached', async () => {
    const broken = (): Promise<never> => Promise.reject(new Error('store down'));
    const store: CacheStore = {
      get: broken,
      put: broken,
      remove: broken,
      scopeBytes: broken,
      lock: broken,
      extendLock: broken,
      unlock: broken,
      isLocked: broken,
      addSavings: broken,
      readSavings: broken,
      close: async () => {},
    };
    const { sim, sidecar, client } = await start({ enabled: true }, {}, store);
    const first = await ask(client, 'no store');
    const second = await ask(client, 'no store');
    expect(second.text).not.toBe(first.text);
    expect(sim.ledger.summary().total).toBe(2);
    expect(await counter(sidecar, 'tokenlease_sidecar_cache_store_errors_total', { operation: 'get' })).toBe(
      2,
    );
    expect(
      await counter(sidecar, 'tokenlease_sidecar_cache_not_stored_total', { reason: 'storeError' }),
    ).toBe(2);
  });
});
