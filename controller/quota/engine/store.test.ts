import { describe, expect, it } from 'vitest';
import {
  budgetCounters,
  chargedOf,
  fullHeadroom,
  HEADROOM_UNBOUNDED_REQUESTS,
  narrowHeadroom,
  roundedHeadroom,
} from './store.ts';

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

describe('chargedOf', () => {
  const usage = { inputTokens: 30, outputTokens: 5 };
  it('charges an unsent call its request only, and an unused lease nothing', () => {
    expect(chargedOf(usage, 'ok')).toEqual({
      requests: 1,
      inputTokens: 30,
      outputTokens: 5,
      totalTokens: 35,
    });
    expect(chargedOf(usage, 'notSent')).toEqual({
      requests: 1,
      inputTokens: 0,
      outputTokens: 0,
      totalTokens: 0,
    });
    expect(chargedOf(usage, 'unused')).toEqual({
      requests: 0,
      inputTokens: 0,
      outputTokens: 0,
      totalTokens: 0,
    });
  });
});

describe('headroom', () => {
  it('keeps the smallest free share and the fewest more requests over the limits that count the request', () => {
    const headroom = fullHeadroom();
    narrowHeadroom(headroom, 10, 3, 1); // 6 free: 0.6, 6 more
    narrowHeadroom(headroom, 3000, 2000, 100); // 900 free: 0.3, 9 more
    narrowHeadroom(headroom, 5, 0, 0); // needs nothing: 1, no bound
    expect(headroom).toEqual({ fraction: 0.3, requests: 6 });
    narrowHeadroom(headroom, 4, 4, 1); // past the limit: nothing free, never less
    expect(headroom).toEqual({ fraction: 0, requests: 0 });
  });

  it('says every limit is free when none counts the request, and rounds the share to millionths', () => {
    expect(fullHeadroom()).toEqual({ fraction: 1, requests: HEADROOM_UNBOUNDED_REQUESTS });
    expect(roundedHeadroom({ fraction: 2 / 3, requests: 2 })).toEqual({ fraction: 0.666667, requests: 2 });
    expect(roundedHeadroom({ fraction: 0.4, requests: 2 }).fraction).toBe(0.4);
  });
});
