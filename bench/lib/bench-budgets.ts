/**
 * A provider and budget for benchmarks, with limits high enough never to bind (a concurrency slot,
 * a requests window and a tokens window, each checked and charged on every call), so that what is
 * measured is the lease work itself: LLMProvider llm/<provider> at `baseURL`, LLMBudget
 * bench/bench.
 */
export function roomyBudgetsYaml(provider: string, baseURL: string): string {
  return `
apiVersion: tokenlease.io/v1alpha1
kind: LLMProvider
metadata: {name: ${provider}, namespace: llm}
spec:
  api: openai
  baseURL: ${baseURL}
  limits:
    - {dimension: concurrency, amount: 100000}
    - {dimension: requests, amount: 1000000000, window: 1m}
    - {dimension: totalTokens, amount: 1000000000000, window: 1m}
---
apiVersion: tokenlease.io/v1alpha1
kind: LLMBudget
metadata: {name: bench, namespace: bench}
spec:
  providerRef: {name: ${provider}, namespace: llm}
`;
}

/** bench:quota's and bench:script's provider (calls never leave the quota service). */
export const QUOTA_BENCH_BUDGETS_YAML = roomyBudgetsYaml('bench', 'https://api.example.test/v1');

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
