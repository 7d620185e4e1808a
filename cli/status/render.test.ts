import { describe, expect, it } from 'vitest';
import type { UsageSnapshot } from '../../common/quota-api.ts';
import { renderStatus } from './render.ts';

const snapshot: UsageSnapshot = {
  nowMs: 1_000_000,
  providers: [
    {
      provider: 'llm/glm',
      limits: [
        {
          scope: 'provider',
          dimension: 'concurrency',
          windowMs: 0,
          model: '',
          limit: 6,
          effectiveLimit: 4,
          used: 4,
        },
        {
          scope: 'provider',
          dimension: 'requests',
          windowMs: 18_000_000,
          model: '',
          limit: 600,
          effectiveLimit: 600,
          used: 150,
        },
        {
          scope: 'team/app',
          dimension: 'totalTokens',
          windowMs: 86_400_000,
          model: 'glm-4.6',
          limit: 1000,
          effectiveLimit: 1000,
          used: 10,
        },
      ],
      inFlight: 4,
      waiters: 3,
      budgets: [
        {
          budget: 'team/app',
          inFlight: 4,
          waiters: 3,
          granted: 120,
          rejected: 2,
          refusals: { refusedConcurrency: 1, refusedWindow: 0 },
        },
      ],
      closedUntilMs: 1_004_500,
      closedReason: 'refusedWindow from the provider',
    },
  ],
};

describe('renderStatus', () => {
  const text = renderStatus(snapshot);

  it('shows each limit with use against the effective limit', () => {
    expect(text).toMatch(/concurrency\s+provider\s+4\s+6\s+4\s+100%/);
    expect(text).toMatch(/requests\/5h\s+provider\s+150\s+600\s+600\s+25%/);
    expect(text).toMatch(/totalTokens\/1d@glm-4\.6\s+team\/app\s+10\s+1000\s+1000\s+1%/);
  });

  it('shows in flight, waiters, closure and refusals by class', () => {
    expect(text).toContain('PROVIDER llm/glm   in flight 4   waiting 3   CLOSED for 4.5s more');
    expect(text).toContain('refusedWindow from the provider');
    expect(text).toMatch(/team\/app\s+4\s+3\s+120\s+2\s+refusedConcurrency=1$/m);
  });

  it("shows the response cache's savings only where there are some", () => {
    expect(text).not.toContain('CACHE HITS');
    const provider = snapshot.providers[0]!;
    const cached = renderStatus({
      ...snapshot,
      providers: [
        {
          ...provider,
          budgets: [
            ...provider.budgets,
            {
              budget: 'team/cached',
              inFlight: 0,
              waiters: 0,
              granted: 3,
              rejected: 0,
              refusals: {},
              cache: { hits: 7, inputTokens: 70, outputTokens: 14 },
            },
          ],
        },
      ],
    });
    expect(cached).toMatch(/BUDGET\s+IN FLIGHT\s+WAITING\s+GRANTED\s+REJECTED\s+CACHE HITS\s+TOKENS SAVED/);
    expect(cached).toMatch(/team\/cached\s+0\s+0\s+3\s+0\s+7\s+84\s+-$/m);
    expect(cached).toMatch(/team\/app\s+4\s+3\s+120\s+2\s+0\s+0\s+refusedConcurrency=1$/m);
  });

  it('says so when nothing is loaded, and shows an open provider as open', () => {
    expect(renderStatus({ nowMs: 0, providers: [] })).toContain('No providers');
    expect(renderStatus({ ...snapshot, nowMs: 2_000_000 })).toContain('waiting 3   open');
  });
});
