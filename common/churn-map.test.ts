import { describe, expect, it } from 'vitest';
import { ChurnMap, ChurnSet } from './churn-map.ts';

describe('ChurnMap', () => {
  it('keeps its entries, their values and their order across the remakes churn brings', () => {
    const map = new ChurnMap<number, string>();
    for (let i = 0; i < 10; i++) map.set(i, `v${i}`);
    // Thousands of short-lived entries on top of the long-lived ten: several remakes.
    for (let i = 100; i < 5100; i++) {
      map.set(i, `v${i}`);
      expect(map.delete(i)).toBe(true);
    }
    map.set(3, 'changed');
    expect(map.size).toBe(10);
    expect(map.get(3)).toBe('changed');
    expect(map.has(100)).toBe(false);
    expect(map.delete(100)).toBe(false);
    expect([...map.keys()]).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect([...map].at(-1)).toEqual([9, 'v9']);
  });

  it('visits every entry once when each is deleted while iterating, a remake included', () => {
    const map = new ChurnMap<number, number>();
    for (let i = 0; i < 3000; i++) map.set(i, i);
    const visited: number[] = [];
    for (const [key, value] of map) {
      visited.push(value);
      map.delete(key);
    }
    expect(visited).toEqual(Array.from({ length: 3000 }, (_, i) => i));
    expect(map.size).toBe(0);
  });

  it('clears', () => {
    const map = new ChurnMap<string, number>().set('a', 1).set('b', 2);
    map.clear();
    expect(map.size).toBe(0);
    expect([...map.values()]).toEqual([]);
  });
});

describe('ChurnSet', () => {
  it('adds, finds, deletes and iterates its members through churn', () => {
    const set = new ChurnSet<object>();
    const kept = [{}, {}];
    for (const member of kept) set.add(member);
    for (let i = 0; i < 3000; i++) {
      const passing = {};
      set.add(passing);
      expect(set.has(passing)).toBe(true);
      expect(set.delete(passing)).toBe(true);
    }
    expect(set.size).toBe(2);
    expect([...set]).toEqual(kept);
  });
});
