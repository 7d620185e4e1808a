/**
 * Turns the budgets configuration and one request into the limits it must fit in: the provider's
 * limits for its model plus the budget's caps, each with what the request takes of it.
 */
import type { BudgetSet } from '../../../common/budgets/load-budgets.ts';
import { objectId, type Dimension, type Limit, type LLMProvider } from '../../../common/budgets/types.ts';
import { formatDuration, parseDuration } from '../../../common/duration.ts';
import type { Reservation } from '../../../common/quota-api.ts';
import type { LimitPlan } from './store.ts';

/** Buckets per window: finer costs more store work, coarser wastes up to 1/BUCKETS of a window. */
const BUCKETS_PER_WINDOW = 100;
const MIN_BUCKET_MS = 5;

export function bucketMsFor(windowMs: number): number {
  return Math.max(MIN_BUCKET_MS, Math.floor(windowMs / BUCKETS_PER_WINDOW));
}

/** 1 % of the window, between 20 ms and 1 s, unless the provider says otherwise. */
export function marginMsFor(windowMs: number, provider: LLMProvider): number {
  if (provider.spec.windowMargin !== undefined) return parseDuration(provider.spec.windowMargin) ?? 0;
  return Math.min(1_000, Math.max(20, Math.round(windowMs * 0.01)));
}

export function reservationFor(inputTokens: number, maxOutputTokens: number): Reservation {
  return {
    requests: 1,
    inputTokens,
    outputTokens: maxOutputTokens,
    totalTokens: inputTokens + maxOutputTokens,
  };
}

function needOf(dimension: Dimension, reserved: Reservation): number {
  return dimension === 'concurrency' ? 1 : reserved[dimension];
}

function planOf(
  limit: Limit,
  scope: { key: string; label: string; id: string },
  provider: LLMProvider,
  reserved: Reservation,
): LimitPlan {
  const windowMs = limit.window === undefined ? 0 : parseDuration(limit.window)!;
  const model = limit.model ?? '*';
  return {
    key: `${scope.key}|${limit.dimension}|${windowMs}|${model}`,
    dimension: limit.dimension,
    amount: limit.amount,
    windowMs,
    bucketMs: windowMs === 0 ? 0 : bucketMsFor(windowMs),
    marginMs: windowMs === 0 ? 0 : marginMsFor(windowMs, provider),
    need: needOf(limit.dimension, reserved),
    scope: scope.id,
    model: limit.model ?? '',
    adaptive: scope.id === 'provider' && provider.spec.adaptation.enabled,
    label: `${scope.label} ${limit.dimension}${windowMs ? ` per ${formatDuration(windowMs)}` : ''}${
      limit.model ? ` for model ${limit.model}` : ''
    }`,
  };
}

/** The plans with what a request of `reserved` takes of each. */
export function withNeeds(plans: LimitPlan[], reserved: Reservation): LimitPlan[] {
  return plans.map((plan) => ({ ...plan, need: needOf(plan.dimension, reserved) }));
}

function applies(limit: Limit, model: string | undefined): boolean {
  return model === undefined || limit.model === undefined || limit.model === model;
}

/**
 * The limits a call for `model` on `providerId` by `budgetId` must fit in. With `model`
 * undefined, every limit of the provider and of all its budgets (for usage reports).
 */
export function limitPlans(
  budgets: BudgetSet,
  providerId: string,
  budgetIds: string[],
  model: string | undefined,
  reserved: Reservation,
): LimitPlan[] {
  const provider = budgets.providers.get(providerId);
  if (!provider) return [];
  const plans = provider.spec.limits
    .filter((limit) => applies(limit, model))
    .map((limit) =>
      planOf(limit, { key: 'p', label: `LLMProvider ${providerId}`, id: 'provider' }, provider, reserved),
    );
  for (const budgetId of budgetIds) {
    const budget = budgets.budgets.get(budgetId);
    if (!budget) continue;
    for (const cap of budget.spec.caps) {
      if (!applies(cap, model)) continue;
      plans.push(
        planOf(
          cap,
          { key: `b|${budgetId}`, label: `LLMBudget ${budgetId} cap`, id: budgetId },
          provider,
          reserved,
        ),
      );
    }
  }
  return plans;
}

/** Budgets that draw on a provider, directly or as a fallback. */
export function budgetsOf(budgets: BudgetSet, providerId: string): string[] {
  const ids: string[] = [];
  for (const [id, budget] of budgets.budgets) {
    const namespace = budget.metadata.namespace;
    const primary = objectId(budget.spec.providerRef, namespace) === providerId;
    const fallback =
      budget.spec.fallbacks?.some((f) => objectId(f.providerRef, namespace) === providerId) ?? false;
    if (primary || fallback) ids.push(id);
  }
  return ids.sort();
}

/** Beyond this a guaranteed share would starve everyone else. */
const MAX_GUARANTEE = 0.95;

/**
 * A budget's weight in fair queuing. A guaranteed share g is folded in: with every other budget
 * of the provider contending, weight / (weight + others) >= g, so the budget gets at least g of
 * the capacity whenever it asks.
 */
export function effectiveWeight(budgets: BudgetSet, providerId: string, budgetId: string): number {
  const budget = budgets.budgets.get(budgetId);
  if (!budget) return 1;
  const guarantee = Math.min(MAX_GUARANTEE, budget.spec.guaranteedShare ?? 0);
  if (guarantee <= 0) return budget.spec.weight;
  const others = budgetsOf(budgets, providerId)
    .filter((id) => id !== budgetId)
    .reduce((sum, id) => sum + (budgets.budgets.get(id)?.spec.weight ?? 0), 0);
  return Math.max(budget.spec.weight, (guarantee / (1 - guarantee)) * others);
}

/** What a request costs its budget in virtual time: its dominant share of the provider's limits. */
export function dominantShare(plans: LimitPlan[]): number {
  let share = 0;
  for (const plan of plans) {
    if (plan.scope === 'provider') share = Math.max(share, plan.need / plan.amount);
  }
  return share > 0 ? share : 1;
}
