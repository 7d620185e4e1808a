/** The usage figures of status (and the printer-column summaries) from the engine's usage(). */
import type { Limit } from '../../common/budgets/types.ts';
import { formatDuration } from '../../common/duration.ts';
import type { BudgetUsage, LimitUsage, ProviderUsage } from '../../common/quota-api.ts';
import type { LimitUsageStatus } from './crd/status-types.ts';

export function limitStatus(limit: LimitUsage): LimitUsageStatus {
  return {
    dimension: limit.dimension as LimitUsageStatus['dimension'],
    ...(limit.windowMs > 0 ? { window: formatDuration(limit.windowMs) } : {}),
    ...(limit.model ? { model: limit.model } : {}),
    limit: Math.round(limit.limit),
    effectiveLimit: Math.round(limit.effectiveLimit),
    used: Math.max(0, Math.round(limit.used)),
  };
}

function label(limit: LimitUsageStatus): string {
  return `${limit.dimension}${limit.window ? `/${limit.window}` : ''}${limit.model ? `[${limit.model}]` : ''}`;
}

/** `5 concurrency, 600 requests/5h`. */
export function limitsSummary(limits: readonly LimitUsageStatus[]): string {
  return limits.length === 0
    ? 'none'
    : limits
        .map((l) => `${l.limit} ${label(l)}`)
        .join(', ')
        .slice(0, 1024);
}

/** The busiest limit as a share of its effective limit: `42% totalTokens/1m`. */
export function useSummary(limits: readonly LimitUsageStatus[]): string {
  let busiest: { share: number; limit: LimitUsageStatus } | undefined;
  for (const limit of limits) {
    const share = limit.effectiveLimit > 0 ? limit.used / limit.effectiveLimit : limit.used > 0 ? 1 : 0;
    if (!busiest || share > busiest.share) busiest = { share, limit };
  }
  return busiest ? `${Math.round(busiest.share * 100)}% ${label(busiest.limit)}` : '0%';
}

export function exhausted(limits: readonly LimitUsageStatus[]): LimitUsageStatus | undefined {
  return limits.find((l) => l.used >= l.effectiveLimit);
}

export function refusalTotals(budgets: ReadonlyArray<Pick<BudgetUsage, 'refusals'>>): {
  total: number;
  byClass: Record<string, number>;
} {
  const byClass: Record<string, number> = {};
  for (const budget of budgets) {
    for (const [cls, count] of Object.entries(budget.refusals)) byClass[cls] = (byClass[cls] ?? 0) + count;
  }
  return { total: Object.values(byClass).reduce((a, b) => a + b, 0), byClass };
}

/** The limits a budget draws on: its own caps and the provider's limits. */
export function budgetLimits(provider: ProviderUsage, budgetId: string): LimitUsage[] {
  return provider.limits.filter((l) => l.scope === budgetId || l.scope === 'provider');
}

/** A declared limit before any use is known (the provider is not in the store yet). */
export function declaredLimitStatus(limit: Limit): LimitUsageStatus {
  return {
    dimension: limit.dimension,
    ...(limit.window ? { window: limit.window } : {}),
    ...(limit.model ? { model: limit.model } : {}),
    limit: limit.amount,
    effectiveLimit: limit.amount,
    used: 0,
  };
}
