/**
 * A waiter must be handed its lease as soon as it is granted, even when the grant is announced
 * while the engine is still asking the store about that waiter (a claim in flight). With Redis a
 * claim takes a round trip, so this race happens under load: the announcement was dropped and the
 * waiter sat on a granted lease (holding capacity nobody used) until its deadline.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { buildBudgetSet, parseBudgetsYaml } from '../../common/budgets/load-budgets.ts';
import type { Grant } from '../../common/quota-api.ts';
import { StoreLeaseEngine } from '../../controller/quota/engine/lease-engine.ts';
import { MemoryLeaseStore } from '../../controller/quota/engine/memory-store.ts';
import type { StoreWaiterResult } from '../../controller/quota/engine/store.ts';

const BUDGETS = `
apiVersion: tokenlease.io/v1alpha1
kind: LLMProvider
metadata: {name: p, namespace: llm}
spec:
  api: openai
  baseURL: https://api.example.test/v1
  limits: [{dimension: concurrency, amount: 1}]
---
apiVersion: tokenlease.io/v1alpha1
kind: LLMBudget
metadata: {name: b, namespace: llm}
spec:
  providerRef: {name: p}
`;

/** Answers claims as a remote store does: the state is read at once, the answer arrives later. */
class SlowClaimStore extends MemoryLeaseStore {
  override async claim(provider: string, waiterId: string): Promise<StoreWaiterResult> {
    const result = await super.claim(provider, waiterId);
    await new Promise((resolve) => setTimeout(resolve, 50));
    return result;
  }
}

describe('a grant announced while a claim is in flight', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('still wakes the waiter, long before its deadline', async () => {
    const engine = new StoreLeaseEngine(
      new SlowClaimStore({ clock: () => Date.now() }),
      buildBudgetSet(parseBudgetsYaml(BUDGETS, 'test')),
    );
    const input = { provider: 'llm/p', budget: 'llm/b', model: 'm', inputTokens: 1, maxOutputTokens: 1 };
    const first = await engine.acquire({ ...input, maxWaitMs: 0 });
    let second: Grant | undefined;
    void engine.acquire({ ...input, maxWaitMs: 10_000 }).then((grant) => (second = grant));
    // The second request is queued and its first claim (answer: still waiting) is under way.
    await vi.advanceTimersByTimeAsync(10);
    await engine.settle({
      leaseId: first.leaseId,
      usage: { inputTokens: 1, outputTokens: 1 },
      outcome: 'ok',
    });
    await vi.advanceTimersByTimeAsync(1_000);
    expect(second).toBeDefined();
    await engine.close();
  });
});
