/**
 * One behaviour for every cache store: run against the memory store (beside it) and the Redis
 * store (test/sidecar/cache-redis-store.test.ts).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CacheKey, CacheStore } from './cache-store.ts';

export function cacheStoreConformance(name: string, create: () => Promise<CacheStore> | CacheStore): void {
  describe(`${name}: cache store conformance`, () => {
    let store: CacheStore;
    let n = 0;
    const key = (id: string, scope = 's1'): CacheKey => ({ scope: `${scope}-${n}`, id });

    beforeEach(async () => {
      n++;
      store = await create();
    });
    afterEach(async () => {
      await store.close();
    });

    it('returns what was put, byte for byte, and nothing for another scope or id', async () => {
      const value = Buffer.from([0, 1, 2, 255, 0x7b, 0x7d]);
      expect(await store.put(key('a'), value, 60_000, 1_000)).toEqual({ stored: true, evicted: 0 });
      expect(await store.get(key('a'))).toEqual(value);
      expect(await store.get(key('a', 's2'))).toBeUndefined();
      expect(await store.get(key('b'))).toBeUndefined();
      expect(await store.scopeBytes(key('a').scope)).toBe(6);
    });

    it('replaces an entry and counts its bytes once', async () => {
      await store.put(key('a'), Buffer.from('first'), 60_000, 1_000);
      await store.put(key('a'), Buffer.from('second!'), 60_000, 1_000);
      expect((await store.get(key('a')))?.toString()).toBe('second!');
      expect(await store.scopeBytes(key('a').scope)).toBe(7);
    });

    it('forgets an entry after its TTL', async () => {
      await store.put(key('a'), Buffer.from('short'), 40, 1_000);
      await store.put(key('b'), Buffer.from('long'), 60_000, 1_000);
      await sleep(80);
      expect(await store.get(key('a'))).toBeUndefined();
      expect((await store.get(key('b')))?.toString()).toBe('long');
      // The next put sweeps the expired entry's bytes from the scope.
      await store.put(key('c'), Buffer.from('x'), 60_000, 1_000);
      expect(await store.scopeBytes(key('a').scope)).toBe(5);
    });

    it('removes an entry and its bytes', async () => {
      await store.put(key('a'), Buffer.from('abc'), 60_000, 1_000);
      await store.remove(key('a'));
      expect(await store.get(key('a'))).toBeUndefined();
      expect(await store.scopeBytes(key('a').scope)).toBe(0);
    });

    it('keeps a scope within its byte cap, evicting the entries closest to expiry first', async () => {
      await store.put(key('soon'), Buffer.alloc(40, 1), 10_000, 100);
      await store.put(key('late'), Buffer.alloc(40, 2), 60_000, 100);
      const result = await store.put(key('new'), Buffer.alloc(40, 3), 30_000, 100);
      expect(result).toEqual({ stored: true, evicted: 1 });
      expect(await store.get(key('soon'))).toBeUndefined();
      expect(await store.get(key('late'))).toBeDefined();
      expect(await store.get(key('new'))).toBeDefined();
      expect(await store.scopeBytes(key('new').scope)).toBe(80);
      // Another scope is not touched by this one's cap.
      await store.put(key('other', 's2'), Buffer.alloc(90, 4), 60_000, 100);
      expect(await store.get(key('late'))).toBeDefined();
    });

    it('does not store a value larger than the scope cap', async () => {
      await store.put(key('kept'), Buffer.alloc(10), 60_000, 100);
      expect(await store.put(key('huge'), Buffer.alloc(101), 60_000, 100)).toEqual({
        stored: false,
        evicted: 0,
      });
      expect(await store.get(key('huge'))).toBeUndefined();
      expect(await store.get(key('kept'))).toBeDefined();
    });

    it('adds up savings per provider and budget', async () => {
      const provider = `llm/p-${n}-${Math.random().toString(36).slice(2)}`;
      await store.addSavings([
        { provider, budget: 'team/a', savings: { hits: 1, inputTokens: 10, outputTokens: 5 } },
        { provider, budget: 'team/b', savings: { hits: 2, inputTokens: 1, outputTokens: 1 } },
      ]);
      await store.addSavings([
        { provider, budget: 'team/a', savings: { hits: 3, inputTokens: 30, outputTokens: 0 } },
      ]);
      const savings = await store.readSavings([provider, 'llm/none']);
      expect([...savings.keys()]).toEqual([provider]);
      expect(Object.fromEntries(savings.get(provider)!)).toEqual({
        'team/a': { hits: 4, inputTokens: 40, outputTokens: 5 },
        'team/b': { hits: 2, inputTokens: 1, outputTokens: 1 },
      });
    });

    it('lock: one owner at a time, extended and released only by its owner, expiring on its own', async () => {
      const k = key('a');
      expect(await store.isLocked(k)).toBe(false);
      expect(await store.lock(k, 'one', 60_000)).toBe(true);
      expect(await store.lock(k, 'two', 60_000)).toBe(false);
      expect(await store.isLocked(k)).toBe(true);
      expect(await store.extendLock(k, 'two', 60_000)).toBe(false);
      await store.unlock(k, 'two');
      expect(await store.isLocked(k)).toBe(true);
      expect(await store.extendLock(k, 'one', 60_000)).toBe(true);
      await store.unlock(k, 'one');
      expect(await store.isLocked(k)).toBe(false);
      expect(await store.lock(k, 'two', 40)).toBe(true);
      await sleep(80);
      expect(await store.isLocked(k)).toBe(false);
      expect(await store.extendLock(k, 'two', 60_000)).toBe(false);
      expect(await store.lock(k, 'three', 60_000)).toBe(true);
    });
  });
}
