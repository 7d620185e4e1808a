import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll } from 'vitest';
import { describeEngineConformance } from '../../controller/quota/engine/engine-conformance.ts';
import { StoreLeaseEngine } from '../../controller/quota/engine/lease-engine.ts';
import { RedisLeaseStore } from '../../controller/quota/engine/redis-store.ts';
import { redisUrl } from '../support/redis.ts';

const prefixes = new WeakMap<object, string>();
const admin = new Redis(redisUrl());

afterAll(async () => {
  const keys = await admin.keys('tltest:*');
  if (keys.length > 0) await admin.del(...keys);
  admin.disconnect();
});

describeEngineConformance('redis store', {
  async create(budgets, clock) {
    const prefix = `tltest:${randomUUID().slice(0, 8)}:`;
    const store = new RedisLeaseStore({ redis: redisUrl(), keyPrefix: prefix, clock });
    await store.ready();
    const engine = new StoreLeaseEngine(store, budgets);
    prefixes.set(engine, prefix);
    return engine;
  },
  async replica(engine) {
    const store = new RedisLeaseStore({ redis: redisUrl(), keyPrefix: prefixes.get(engine)! });
    await store.ready();
    return new StoreLeaseEngine(store, (engine as StoreLeaseEngine).budgets());
  },
});

// The same script run with EVALSHA, as where Redis has no function libraries (before 7.0).
describeEngineConformance('redis store as a script', {
  async create(budgets, clock) {
    const prefix = `tltest:${randomUUID().slice(0, 8)}:`;
    const store = new RedisLeaseStore({ redis: redisUrl(), keyPrefix: prefix, clock, functions: false });
    await store.ready();
    const engine = new StoreLeaseEngine(store, budgets);
    prefixes.set(engine, prefix);
    return engine;
  },
  async replica(engine) {
    const store = new RedisLeaseStore({
      redis: redisUrl(),
      keyPrefix: prefixes.get(engine)!,
      functions: false,
    });
    await store.ready();
    return new StoreLeaseEngine(store, (engine as StoreLeaseEngine).budgets());
  },
});
