/**
 * The budgets a sidecar enforces on its own while the quota service is unreachable (failure mode
 * `localShare`): every provider limit and budget cap cut to this sidecar's share, rounded down,
 * so that all sidecars together stay under the provider's limits.
 */
import type { BudgetSet } from '../../common/budgets/load-budgets.ts';
import type { Limit } from '../../common/budgets/types.ts';

function scale(limits: Limit[], share: number): Limit[] {
  return limits.map((limit) => ({ ...limit, amount: Math.max(1, Math.floor(limit.amount * share)) }));
}

/** `share` in (0, 1]: typically 1 / the number of sidecars expected to share the provider. */
export function localShareBudgets(budgets: BudgetSet, share: number): BudgetSet {
  const providers = new Map(
    [...budgets.providers].map(([id, provider]) => [
      id,
      { ...provider, spec: { ...provider.spec, limits: scale(provider.spec.limits, share) } },
    ]),
  );
  const scaled = new Map(
    [...budgets.budgets].map(([id, budget]) => [
      id,
      { ...budget, spec: { ...budget.spec, caps: scale(budget.spec.caps, share) } },
    ]),
  );
  return { providers, budgets: scaled };
}
