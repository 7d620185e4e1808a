/**
 * Which budgets a workload may draw from: those in its own namespace that select its
 * ServiceAccount (a budget listing no ServiceAccounts selects every one of its namespace).
 * A pod can therefore never spend another tenant's budget.
 */
import type { BudgetSet } from '../../../common/budgets/load-budgets.ts';
import type { LLMBudget } from '../../../common/budgets/types.ts';
import { NotFoundError, PermissionDeniedError } from '../../../common/errors/errors.ts';
import type { WorkloadIdentity } from './token-verifier.ts';

export function selects(budget: LLMBudget, identity: WorkloadIdentity): boolean {
  if (budget.metadata.namespace !== identity.namespace) return false;
  const accounts = budget.spec.workloads?.serviceAccounts;
  return accounts === undefined || accounts.includes(identity.serviceAccount);
}

/** Throws unless `identity` may use budget `budgetId` (`namespace/name`). */
export function authorizeBudget(budgets: BudgetSet, budgetId: string, identity: WorkloadIdentity): void {
  const budget = budgets.budgets.get(budgetId);
  if (!budget) throw new NotFoundError('budget', budgetId);
  if (!selects(budget, identity)) {
    throw new PermissionDeniedError(
      `ServiceAccount ${identity.namespace}/${identity.serviceAccount} is not selected by LLMBudget ${budgetId}`,
    );
  }
}

/** The budgets `identity` may use, for a sidecar that names none. */
export function budgetsFor(budgets: BudgetSet, identity: WorkloadIdentity): string[] {
  return [...budgets.budgets.entries()]
    .filter(([, b]) => selects(b, identity))
    .map(([id]) => id)
    .sort();
}
