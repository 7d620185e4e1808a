/**
 * The Redis lease store's ways of calling its script: acquires and settles issued together go as
 * one call, with the same outcome as the same calls one after another; the script runs as a
 * function library (the default on Redis 7+), loaded again when Redis lost it, or as a script.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { CapacityExhaustedError } from '../../common/errors/errors.ts';
import { acmeBudgets } from '../../controller/quota/engine/engine-conformance.ts';
import { StoreLeaseEngine } from '../../controller/quota/engine/lease-engine.ts';
import { LIBRARY_NAME, RedisLeaseStore } from '../../controller/quota/engine/redis-store.ts';
import { startHoldingProxy } from '../support/holding-proxy.ts';
import { redisUrl } from '../support/redis.ts';

const admin = new Redis(redisUrl());
const prefix = `tltest:${randomUUID().slice(0, 8)}:`;

afterAll(async () => {
  const keys = await admin.keys(`${prefix}*`);
  if (keys.length > 0) await admin.del(...keys);
  admin.disconnect();
});

const BUDGETS = acmeBudgets(
  '[{dimension: concurrency, amount: 5}, {dimension: requests, amount: 8, window: 1m}]',
);

const acquire = (engine: StoreLeaseEngine) =>
  engine.acquire({
    provider: 'llm/acme',
    model: 'gpt-test',
    budget: 'team-a/search',
    inputTokens: 10,
    maxOutputTokens: 20,
    maxWaitMs: 0,
  });

describe('redis store batching', () => {
  it('runs concurrent acquires and settles in few script calls, each limit exactly kept', async () => {
    const store = new RedisLeaseStore({ redis: redisUrl(), keyPrefix: prefix });
    await store.ready();
    const engine = new StoreLeaseEngine(store, BUDGETS);
    try {
      const first = await Promise.allSettled(Array.from({ length: 12 }, () => acquire(engine)));
      const granted = first.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
      const refused = first.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
      expect(granted).toHaveLength(5);
      expect(refused).toHaveLength(7);
      for (const reason of refused) expect(reason).toBeInstanceOf(CapacityExhaustedError);
      expect(new Set(granted.map((lease) => lease.leaseId)).size).toBe(5);
      expect(store.stats.scriptCalls).toBeLessThan(store.stats.operations);
      // Each grant's headroom counts the grants before it in the batch, as calls one after another would.
      expect(granted.map((lease) => lease.headroom)).toEqual(
        [4, 3, 2, 1, 0].map((free) => ({ fraction: free / 5, requests: free })),
      );

      const settled = await Promise.all(
        granted.map((lease) =>
          engine.settle({
            leaseId: lease.leaseId,
            usage: { inputTokens: 10, outputTokens: 5 },
            outcome: 'ok',
          }),
        ),
      );
      expect(settled.map((result) => result.status)).toEqual(Array(5).fill('settled'));
      // The requests window holds the 5 granted; 3 more fit, the concurrency slots are free again.
      const second = await Promise.allSettled(Array.from({ length: 5 }, () => acquire(engine)));
      expect(second.filter((r) => r.status === 'fulfilled')).toHaveLength(3);
      const usage = (await engine.usage('llm/acme')).providers[0]!;
      expect(usage.limits.find((limit) => limit.dimension === 'requests')!.used).toBe(8);
      expect(usage.limits.find((limit) => limit.dimension === 'concurrency')!.used).toBe(3);
    } finally {
      await store.close();
    }
  });
});

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
    const store = new RedisLeaseStore({ redis: redisUrl(), keyPrefix: `${prefix}function:` });
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
    const store = new RedisLeaseStore({ redis: redisUrl(), keyPrefix: `${prefix}script:`, functions: false });
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

describe('redis store limit definitions', () => {
  it('sends a definition until Redis holds it, and again, before anything runs, once Redis has lost it', async () => {
    const keyPrefix = `${prefix}definitions:`;
    const store = new RedisLeaseStore({ redis: redisUrl(), keyPrefix });
    await store.ready();
    const engine = new StoreLeaseEngine(store, BUDGETS);
    // What each acquire brought as its last argument: the definitions' JSON, or '' for none.
    const monitor = await admin.duplicate().monitor();
    const brought: string[] = [];
    monitor.on('monitor', (_time: string, args: string[]) => {
      if (
        args[0]?.toLowerCase() === 'fcall' &&
        args[3] === `${keyPrefix}{llm/acme}:m` &&
        args[4] === 'acquire'
      )
        brought.push(args.at(-1)!);
    });
    const definitions = `${keyPrefix}{llm/acme}:d`;
    const slotsHeld = async () =>
      (await engine.usage('llm/acme')).providers[0]!.limits.find((l) => l.dimension === 'concurrency')!.used;
    try {
      const first = await acquire(engine);
      const second = await acquire(engine);
      expect(await admin.hlen(definitions)).toBe(2);
      // As after a restart or failover that lost them: the next acquire is refused by the script
      // before it changes anything, and made again with its definitions.
      await admin.del(definitions);
      const third = await acquire(engine);
      expect(store.stats.definitionsResent).toBe(1);
      expect(await admin.hlen(definitions)).toBe(2);
      await new Promise((resolve) => setTimeout(resolve, 200)); // MONITOR's lines trail the replies
      expect(brought).toHaveLength(4);
      // (MONITOR quotes the JSON: read for the two limits, not parsed.)
      for (const i of [0, 3]) expect(brought[i]).toMatch(/concurrency.*requests|requests.*concurrency/);
      expect(brought.slice(1, 3)).toEqual(['', '']);
      // Every lease kept both limits: settling them frees every concurrency slot.
      expect(await slotsHeld()).toBe(3);
      for (const lease of [first, second, third]) {
        await engine.settle({
          leaseId: lease.leaseId,
          usage: { inputTokens: 10, outputTokens: 5 },
          outcome: 'ok',
        });
      }
      expect(await slotsHeld()).toBe(0);
    } finally {
      monitor.disconnect();
      await store.close();
    }
  });
});

describe('redis store connections', () => {
  it('closes cleanly while it subscribes again after a reconnect', async () => {
    const proxy = await startHoldingProxy();
    const store = new RedisLeaseStore({ redis: proxy.url, keyPrefix: `${prefix}resubscribe:` });
    await store.ready();
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const held = proxy.holdNextSubscribe();
      proxy.dropAll(); // both connections come back, and the subscriber subscribes again...
      await held;
      await store.close(); // ...and is closed before Redis answers
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
      proxy.close();
    }
  });
});

describe('redis store layout', () => {
  it('keeps the main hash a hash table, however few fields it holds', async () => {
    const keyPrefix = `${prefix}layout:`;
    const store = new RedisLeaseStore({ redis: redisUrl(), keyPrefix });
    await store.ready();
    try {
      expect(await roundTrip(new StoreLeaseEngine(store, BUDGETS))).toBe('settled');
      const main = `${keyPrefix}{llm/acme}:m`;
      expect(await admin.hlen(main)).toBeLessThan(
        Number((await admin.config('GET', 'hash-max-listpack-entries'))[1]),
      );
      expect(await admin.object('ENCODING', main)).toBe('hashtable');
    } finally {
      await store.close();
    }
  });

  it('reads a lease record a replica running the script rewrote as stored, not as the library last wrote it', async () => {
    const keyPrefix = `${prefix}rewritten:`;
    const budgets = acmeBudgets('[{dimension: outputTokens, amount: 1000, window: 1m}]');
    const library = new RedisLeaseStore({ redis: redisUrl(), keyPrefix });
    const script = new RedisLeaseStore({ redis: redisUrl(), keyPrefix, functions: false });
    await Promise.all([library.ready(), script.ready()]);
    const viaLibrary = new StoreLeaseEngine(library, budgets);
    const viaScript = new StoreLeaseEngine(script, budgets);
    try {
      expect([library.stats.mode, script.stats.mode]).toEqual(['function', 'script']);
      const outputUsed = async () =>
        (await viaLibrary.usage('llm/acme')).providers[0]!.limits.find((l) => l.dimension === 'outputTokens')!
          .used;
      const lease = await acquire(viaLibrary); // reserves 20 output tokens
      // The script charges what the stream has used so far, past the reservation.
      await viaScript.heartbeat({
        leaseId: lease.leaseId,
        usedSoFar: { inputTokens: 10, outputTokens: 300 },
      });
      expect(await outputUsed()).toBe(300);
      // Settling moves the lease's charge from the 300 stored to the 50 used, not from the 20 the
      // library wrote at the grant.
      await viaLibrary.settle({
        leaseId: lease.leaseId,
        usage: { inputTokens: 10, outputTokens: 50 },
        outcome: 'ok',
      });
      expect(await outputUsed()).toBe(50);
    } finally {
      await Promise.all([library.close(), script.close()]);
    }
  });
});
