/**
 * The provider and budget the quota benchmarks acquire against: limits high enough never to bind
 * (a concurrency slot, a requests window and a tokens window, each checked and charged on every
 * call), so that what is measured is the lease work itself.
 */
export const QUOTA_BENCH_BUDGETS_YAML = `
apiVersion: tokenlease.io/v1alpha1
kind: LLMProvider
metadata: {name: bench, namespace: llm}
spec:
  api: openai
  baseURL: https://api.example.test/v1
  limits:
    - {dimension: concurrency, amount: 100000}
    - {dimension: requests, amount: 1000000000, window: 1m}
    - {dimension: totalTokens, amount: 1000000000000, window: 1m}
---
apiVersion: tokenlease.io/v1alpha1
kind: LLMBudget
metadata: {name: bench, namespace: bench}
spec:
  providerRef: {name: bench, namespace: llm}
`;

/** One acquire+settle pair's request, as bench:quota and bench:script send it. */
export const BENCH_ACQUIRE = {
  provider: 'llm/bench',
  model: 'm',
  budget: 'bench/bench',
  inputTokens: 100,
  maxOutputTokens: 100,
  maxWaitMs: 1000,
} as const;
export const BENCH_USAGE = { inputTokens: 100, outputTokens: 50 } as const;
