import { describe, expect, it } from 'vitest';
import { budgetCounters } from './store.ts';

describe('budgetCounters', () => {
  it("reads each budget's counters and skips fields that are not a budget's", () => {
    const { budgets, inFlight } = budgetCounters([
      ['bi:team-a/search', 2],
      ['g:team-a/search', 10],
      ['r:team-a/search', 1],
      ['o:team-a/search:refusedRate', 3],
      ['bw:team-b/batch', 4],
      ['f:team-c/idle', 0.5],
      ['x:provider:totalTokens', 1200],
      ['nw', 4],
      ['vt', 0.25],
    ]);
    expect(inFlight).toBe(2);
    expect(budgets).toEqual([
      {
        budget: 'team-a/search',
        inFlight: 2,
        waiters: 0,
        granted: 10,
        rejected: 1,
        refusals: { refusedRate: 3 },
      },
      { budget: 'team-b/batch', inFlight: 0, waiters: 4, granted: 0, rejected: 0, refusals: {} },
    ]);
  });
});
