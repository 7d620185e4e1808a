import { describe, expect, it } from 'vitest';
import type { CacheEntry } from './cache-entry.ts';
import { LocalIndex } from './local-index.ts';

const entry = (size: number): CacheEntry => ({
  id: 'x',
  storedAtMs: 0,
  status: 200,
  headers: {},
  usage: { inputTokens: 0, outputTokens: 0 },
  body: Buffer.alloc(size),
});

describe('local index', () => {
  it('holds a copy for at most holdMs and never past the entry expiry', () => {
    let now = 1_000;
    const index = new LocalIndex(10_000, 500, () => now);
    index.set('a', entry(10), 10_000);
    index.set('b', entry(10), 1_200);
    now = 1_300;
    expect(index.get('a')).toBeDefined();
    expect(index.get('b')).toBeUndefined();
    now = 1_500;
    expect(index.get('a')).toBeUndefined();
    expect(index.bytes).toBe(0);
  });

  it('stays within its byte bound, dropping the least recently used copy', () => {
    const index = new LocalIndex(1_000, 60_000);
    index.set('a', entry(200), Infinity);
    index.set('b', entry(200), Infinity);
    index.get('a');
    index.set('c', entry(200), Infinity);
    expect(index.get('b')).toBeUndefined();
    expect(index.get('a')).toBeDefined();
    expect(index.get('c')).toBeDefined();
    expect(index.bytes).toBeLessThanOrEqual(1_000);
    index.set('huge', entry(5_000), Infinity);
    expect(index.get('huge')).toBeUndefined();
    expect(index.size).toBe(2);
  });
});
