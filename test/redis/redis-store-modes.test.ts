/**
 * The lease script as a Redis function library (the default on Redis 7+) and as a plain script:
 * the library is loaded again when Redis lost it, and the script mode works on its own.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { budgetsFrom } from '../../controller/quota/engine/engine-conformance.ts';
import { StoreLeaseEngine } from '../../controller/quota/engine/lease-engine.ts';
import { LIBRARY_NAME, RedisLeaseStore } from '../../controller/quota/engine/redis-store.ts';
import { redisUrl } from '../support/redis.ts';

const admin = new Redis(redisUrl());
const prefix = `tltest:${randomUUID().slice(0, 8)}:`;

afterAll(async () => {
  const keys = await admin.keys(`${prefix}*`);
  if (keys.length > 0) await admin.del(...keys);
  admin.disconnect();
});

const BUDGETS = budgetsFrom(`
apiVersion: tokenlease.io/v1alpha1
kind: LLMProvider
metadata: {name: acme, namespace: llm}
spec:
  api: openai
  baseURL: https://api.example.test/v1
  limits:
    - {dimension: concurrency, amount: 2}
---
apiVersion: tokenlease.io/v1alpha1
kind: LLMBudget
metadata: {name: search, namespace: team-a}
spec: {providerRef: {name: acme, namespace: llm}}
`);

async function roundTrip(engine: StoreLeaseEngine): Promise<string> {
  const lease = await engine.acquire({
    provider: 'llm/acme',
    model: 'gpt-test',
    budget: 'team-a/search',
    inputTokens: 10,
    maxOutputTokens: 20,
    maxWaitMs: 0,
  });
  const settled = await engine.settle({
    leaseId: lease.leaseId,
    usage: { inputTokens: 10, outputTokens: 5 },
    outcome: 'ok',
  });
  return settled.status;
}

/** The names of the tokenlease function libraries loaded in Redis. */
async function libraries(): Promise<string[]> {
  const list = (await admin.call('FUNCTION', 'LIST', 'LIBRARYNAME', 'tokenlease_*')) as unknown[][];
  return list.map((library) => String(library[library.indexOf('library_name') + 1]));
}

describe('redis store modes', () => {
  it('loads the script as a function library, and again when Redis has lost it', async () => {
    const store = new RedisLeaseStore({ redis: redisUrl(), keyPrefix: prefix });
    await store.ready();
    const engine = new StoreLeaseEngine(store, BUDGETS);
    try {
      expect(store.stats.mode).toBe('function');
      expect(await roundTrip(engine)).toBe('settled');
      expect(LIBRARY_NAME).toMatch(/^tokenlease_[0-9a-f]{16}$/);
      expect(await libraries()).toContain(LIBRARY_NAME);
      // As after a restart without persistence: the next call loads it again and succeeds.
      await admin.call('FUNCTION', 'DELETE', LIBRARY_NAME);
      expect(await libraries()).not.toContain(LIBRARY_NAME);
      expect(await roundTrip(engine)).toBe('settled');
      expect(await libraries()).toContain(LIBRARY_NAME);
    } finally {
      await store.close();
    }
  });

  it('runs as a script when function libraries are off', async () => {
    const store = new RedisLeaseStore({ redis: redisUrl(), keyPrefix: prefix, functions: false });
    await store.ready();
    const engine = new StoreLeaseEngine(store, BUDGETS);
    try {
      expect(store.stats.mode).toBe('script');
      expect(await roundTrip(engine)).toBe('settled');
      expect(store.stats.scriptCalls).toBe(2);
    } finally {
      await store.close();
    }
  });
});
