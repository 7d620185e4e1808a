import { describe, expect, it } from 'vitest';
import { cacheStoreConformance } from './cache-store-conformance.ts';
import { MemoryCacheStore } from './memory-cache-store.ts';

cacheStoreConformance('memory', () => new MemoryCacheStore({ maxBytes: 1024 * 1024 }));

describe('memory cache store', () => {
  it('keeps its total within maxBytes, evicting the least recently used entry across scopes', async () => {
    const store = new MemoryCacheStore({ maxBytes: 100 });
    await store.put({ scope: 'a', id: '1' }, Buffer.alloc(40), 60_000, 1_000);
    await store.put({ scope: 'b', id: '2' }, Buffer.alloc(40), 60_000, 1_000);
    await store.get({ scope: 'a', id: '1' });
    const result = await store.put({ scope: 'c', id: '3' }, Buffer.alloc(40), 60_000, 1_000);
    expect(result).toEqual({ stored: true, evicted: 1 });
    expect(await store.get({ scope: 'b', id: '2' })).toBeUndefined();
    expect(await store.get({ scope: 'a', id: '1' })).toBeDefined();
    expect(store.bytes).toBe(80);
    expect(await store.scopeBytes('b')).toBe(0);
  });
});
