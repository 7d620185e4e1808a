/**
 * Forgets a deleted budget's caps and counters in the store, on its provider and on each
 * fallback provider (the controller's finalizer runs it). Idempotent: deleting what is gone is a
 * no-op. The cap keys are the engine's own naming, so this lives beside limit-plans.
 */
import type { BudgetSet } from '../../../common/budgets/load-budgets.ts';
import { objectId, type LLMBudget, type LLMProvider } from '../../../common/budgets/types.ts';
import { limitPlans, reservationFor } from './limit-plans.ts';
import type { LeaseStore } from './store.ts';

export async function forgetBudget(
  store: Pick<LeaseStore, 'forgetBudget'>,
  budget: LLMBudget,
  providers: ReadonlyMap<string, LLMProvider>,
): Promise<void> {
  const budgetId = objectId(budget.metadata);
  const namespace = budget.metadata.namespace;
  const providerIds = new Set([
    objectId(budget.spec.providerRef, namespace),
    ...(budget.spec.fallbacks ?? []).map((f) => objectId(f.providerRef, namespace)),
  ]);
  for (const providerId of providerIds) {
    const provider = providers.get(providerId);
    // Without the provider there are no cap keys to name; counters keyed by budget still go.
    const set: BudgetSet = {
      providers: provider ? new Map([[providerId, provider]]) : new Map(),
      budgets: new Map([[budgetId, budget]]),
    };
    const capKeys = limitPlans(set, providerId, [budgetId], undefined, reservationFor(0, 0))
      .filter((plan) => plan.scope === budgetId)
      .map((plan) => plan.key);
    await store.forgetBudget(providerId, budgetId, capKeys);
  }
}
