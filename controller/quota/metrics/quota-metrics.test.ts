import { describe, expect, it } from 'vitest';
import { buildBudgetSet, parseBudgetsYaml } from '../../../common/budgets/load-budgets.ts';
import { createMemoryEngine } from '../engine/index.ts';
import { closureReason, createQuotaMetrics } from './quota-metrics.ts';

const BUDGETS = `
apiVersion: tokenlease.io/v1alpha1
kind: LLMProvider
metadata: {name: glm, namespace: llm}
spec:
  api: openai
  flavor: glm
  baseURL: https://open.bigmodel.example/api/paas/v4
  limits:
    - {dimension: concurrency, amount: 8}
    - {dimension: requests, amount: 100, window: 1m}
---
apiVersion: tokenlease.io/v1alpha1
kind: LLMBudget
metadata: {name: app, namespace: llm}
spec:
  providerRef: {name: glm}
  caps: [{dimension: totalTokens, amount: 5000, window: 1h}]
`;

function value(text: string, line: string): number | undefined {
  const found = text.split('\n').find((row) => row.startsWith(`${line} `));
  return found === undefined ? undefined : Number(found.slice(line.length + 1));
}

describe('quota metrics', () => {
  it('report declared and effective limits, use, closures and per-budget counts from the store', async () => {
    let now = 1_000_000;
    const engine = createMemoryEngine({
      budgets: buildBudgetSet(parseBudgetsYaml(BUDGETS, 'test')),
      clock: () => now,
    });
    const metrics = createQuotaMetrics(engine);
    const input = {
      provider: 'llm/glm',
      budget: 'llm/app',
      model: 'glm-4.6',
      inputTokens: 100,
      maxOutputTokens: 50,
    };
    const held = await engine.acquire({ ...input, maxWaitMs: 0 });
    const refused = await engine.acquire({ ...input, maxWaitMs: 0 });
    // A 1302 lowers the concurrency in force; a 1308 closes the provider until its reset.
    await engine.settle({
      leaseId: refused.leaseId,
      usage: { inputTokens: 0, outputTokens: 0 },
      outcome: 'refusedConcurrency',
    });
    const window = await engine.acquire({ ...input, maxWaitMs: 0 });
    await engine.settle({
      leaseId: window.leaseId,
      usage: { inputTokens: 0, outputTokens: 0 },
      outcome: 'refusedWindow',
      resetAtMs: now + 30_000,
    });

    const text = await metrics.render();
    const limit = (name: string, dimension: string, window: string, scope = 'provider') =>
      value(
        text,
        `tokenlease_quota_${name}{provider="llm/glm",scope="${scope}",dimension="${dimension}",window="${window}",model=""}`,
      );
    expect(limit('limit_declared', 'concurrency', '')).toBe(8);
    expect(limit('limit_effective', 'concurrency', '')).toBeLessThan(8);
    expect(limit('limit_used', 'concurrency', '')).toBe(1);
    expect(limit('limit_declared', 'requests', '1m')).toBe(100);
    expect(limit('limit_used', 'requests', '1m')).toBe(3);
    expect(limit('limit_declared', 'totalTokens', '1h', 'llm/app')).toBe(5000);
    expect(value(text, 'tokenlease_quota_leases_in_flight{provider="llm/glm"}')).toBe(1);
    expect(value(text, 'tokenlease_quota_closed_until_seconds{provider="llm/glm"}')).toBe(
      (now + 30_000) / 1000,
    );
    expect(value(text, 'tokenlease_quota_closed{provider="llm/glm",reason="window"}')).toBe(1);
    expect(value(text, 'tokenlease_quota_closed{provider="llm/glm",reason="rate"}')).toBe(0);
    expect(value(text, 'tokenlease_quota_grants_total{provider="llm/glm",budget="llm/app"}')).toBe(3);
    expect(
      value(
        text,
        'tokenlease_quota_upstream_outcomes_total{provider="llm/glm",budget="llm/app",outcome="refusedWindow"}',
      ),
    ).toBe(1);
    expect(
      value(
        text,
        'tokenlease_quota_upstream_outcomes_total{provider="llm/glm",budget="llm/app",outcome="refusedConcurrency"}',
      ),
    ).toBe(1);
    expect(value(text, 'tokenlease_quota_store_up')).toBe(1);

    // Rejections are counted; once the reset passes the provider reads as open again.
    await expect(engine.acquire({ ...input, maxWaitMs: 0 })).rejects.toThrow();
    now += 31_000;
    await engine.settle({
      leaseId: held.leaseId,
      usage: { inputTokens: 100, outputTokens: 10 },
      outcome: 'ok',
    });
    const later = await metrics.render();
    expect(value(later, 'tokenlease_quota_rejections_total{provider="llm/glm",budget="llm/app"}')).toBe(1);
    expect(value(later, 'tokenlease_quota_closed_until_seconds{provider="llm/glm"}')).toBe(0);
    expect(value(later, 'tokenlease_quota_closed{provider="llm/glm",reason="window"}')).toBe(0);
    expect(value(later, 'tokenlease_quota_leases_in_flight{provider="llm/glm"}')).toBe(0);
    await engine.close();
  });

  it('keep the last figures and say so when the store cannot be read', async () => {
    let fail = false;
    const metrics = createQuotaMetrics({
      usage: async () => {
        if (fail) throw new Error('redis down');
        return {
          nowMs: 0,
          providers: [
            {
              provider: 'p',
              limits: [],
              inFlight: 2,
              waiters: 0,
              budgets: [],
              closedUntilMs: 0,
              closedReason: '',
            },
          ],
        };
      },
    });
    expect(value(await metrics.render(), 'tokenlease_quota_store_up')).toBe(1);
    fail = true;
    const text = await metrics.render();
    expect(value(text, 'tokenlease_quota_store_up')).toBe(0);
    expect(value(text, 'tokenlease_quota_leases_in_flight{provider="p"}')).toBe(2);
  });

  it('map closure texts to a fixed set of reasons', () => {
    expect(closureReason('refusedWindow from the provider')).toBe('window');
    expect(closureReason('refusedRate from the provider')).toBe('rate');
    expect(closureReason('refusedConcurrency from the provider')).toBe('concurrency');
    expect(closureReason('something new')).toBe('other');
  });
});
