/**
 * The Redis lease store when connections fail, on a private redis-server: grants announced while
 * an engine's subscription was down still reach their waiters, and a Redis that loses everything
 * (a restart: nothing is kept on disk) leaves no capacity stuck.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StoreUnavailableError } from '../../common/errors/errors.ts';
import { budgetsFrom } from '../../controller/quota/engine/engine-conformance.ts';
import { createRedisEngine, type LeaseEngine } from '../../controller/quota/engine/index.ts';
import { startPrivateRedis, type PrivateRedis } from '../support/redis-server.ts';

const BUDGETS = budgetsFrom(`
apiVersion: tokenlease.io/v1alpha1
kind: LLMProvider
metadata: {name: acme, namespace: llm}
spec:
  api: openai
  baseURL: https://api.example.test/v1
  leaseTimeout: 1m
  limits: [{dimension: concurrency, amount: 1}]
---
apiVersion: tokenlease.io/v1alpha1
kind: LLMBudget
metadata: {name: search, namespace: team-a}
spec: {providerRef: {name: acme, namespace: llm}}
`);

const call = (maxWaitMs: number) => ({
  provider: 'llm/acme',
  model: 'm',
  budget: 'team-a/search',
  inputTokens: 1,
  maxOutputTokens: 1,
  maxWaitMs,
});
const ok = { inputTokens: 1, outputTokens: 1 };

describe('the Redis store through connection faults', () => {
  let redis: PrivateRedis;
  const engines: LeaseEngine[] = [];
  const engine = async () => {
    const created = createRedisEngine({ budgets: BUDGETS, redis: redis.url, keyPrefix: 'faults:' });
    await created.ready();
    engines.push(created);
    return created;
  };

  beforeAll(async () => {
    redis = await startPrivateRedis();
  });
  afterAll(async () => {
    await Promise.all(engines.map((e) => e.close()));
    await redis.stop();
  });

  it('grants a waiter whose announcement was lost while its subscription was down', async () => {
    const holder = await engine();
    const waiterSide = await engine();
    const lease = await holder.acquire(call(0));
    const waiting = waiterSide.acquire(call(20_000));
    await new Promise((resolve) => setTimeout(resolve, 50));
    const admin = new Redis(redis.port, '127.0.0.1');
    // Drop every subscriber connection, then free the slot at once: the announcement is lost.
    await admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
    await holder.settle({ leaseId: lease.leaseId, usage: ok, outcome: 'ok' });
    admin.disconnect();
    const started = Date.now();
    const grant = await waiting;
    // Long before the 20 s deadline (which would also hand it over): the resubscription did.
    expect(Date.now() - started).toBeLessThan(10_000);
    await waiterSide.settle({ leaseId: grant.leaseId, usage: ok, outcome: 'ok' });
  });

  it('answers StoreUnavailableError while Redis is down, and works again (nothing stuck) once it is back', async () => {
    const e = await engine();
    await e.acquire(call(0)); // held when Redis dies: the restart forgets it
    await redis.kill();
    await expect(e.acquire(call(0))).rejects.toBeInstanceOf(StoreUnavailableError);
    await redis.restart();
    let grant;
    for (let i = 0; i < 100 && !grant; i++) {
      grant = await e.acquire(call(0)).catch(() => undefined);
      if (!grant) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(grant).toBeDefined();
  });
});
