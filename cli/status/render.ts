/** `tokenlease status`'s table: one block per provider, its limits, then its budgets. */
import { formatDuration } from '../../common/duration.ts';
import type { ProviderUsage, UsageSnapshot } from '../../common/quota-api.ts';

function columns(rows: string[][], rightAligned: ReadonlySet<number>): string[] {
  const widths = rows[0]!.map((_, index) => Math.max(...rows.map((row) => row[index]!.length)));
  return rows.map((row) =>
    row
      .map((cell, index) =>
        rightAligned.has(index) ? cell.padStart(widths[index]!) : cell.padEnd(widths[index]!),
      )
      .join('  ')
      .trimEnd(),
  );
}

function limitName(limit: ProviderUsage['limits'][number]): string {
  const base =
    limit.windowMs === 0 ? limit.dimension : `${limit.dimension}/${formatDuration(limit.windowMs)}`;
  return limit.model === '' ? base : `${base}@${limit.model}`;
}

function percent(used: number, of: number): string {
  return of > 0 ? `${Math.round((used / of) * 100)}%` : '-';
}

function closure(provider: ProviderUsage, nowMs: number): string {
  if (provider.closedUntilMs <= nowMs) return 'open';
  const seconds = ((provider.closedUntilMs - nowMs) / 1000).toFixed(1);
  return `CLOSED for ${seconds}s more (until ${new Date(provider.closedUntilMs).toISOString()})${provider.closedReason ? `: ${provider.closedReason}` : ''}`;
}

function refusals(counts: Record<string, number>): string {
  const parts = Object.entries(counts)
    .filter(([, count]) => count > 0)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([kind, count]) => `${kind}=${count}`);
  return parts.length === 0 ? '-' : parts.join(' ');
}

export function renderStatus(snapshot: UsageSnapshot): string {
  if (snapshot.providers.length === 0) return 'No providers: the quota service has no budgets loaded.\n';
  const blocks = snapshot.providers.map((provider) => {
    const header = `PROVIDER ${provider.provider}   in flight ${provider.inFlight}   waiting ${provider.waiters}   ${closure(provider, snapshot.nowMs)}`;
    const limits = columns(
      [
        ['  LIMIT', 'SCOPE', 'USED', 'LIMIT', 'EFFECTIVE', 'USE'],
        ...provider.limits.map((limit) => [
          `  ${limitName(limit)}`,
          limit.scope,
          String(limit.used),
          String(limit.limit),
          String(limit.effectiveLimit),
          percent(limit.used, limit.effectiveLimit),
        ]),
      ],
      new Set([2, 3, 4, 5]),
    );
    // Response-cache columns only where the cache saved something.
    const cached = provider.budgets.some((budget) => budget.cache !== undefined);
    const budgets = columns(
      [
        [
          '  BUDGET',
          'IN FLIGHT',
          'WAITING',
          'GRANTED',
          'REJECTED',
          ...(cached ? ['CACHE HITS', 'TOKENS SAVED'] : []),
          'PROVIDER REFUSALS BY CLASS',
        ],
        ...provider.budgets.map((budget) => [
          `  ${budget.budget}`,
          String(budget.inFlight),
          String(budget.waiters),
          String(budget.granted),
          String(budget.rejected),
          ...(cached
            ? [
                String(budget.cache?.hits ?? 0),
                String((budget.cache?.inputTokens ?? 0) + (budget.cache?.outputTokens ?? 0)),
              ]
            : []),
          refusals(budget.refusals),
        ]),
      ],
      new Set(cached ? [1, 2, 3, 4, 5, 6] : [1, 2, 3, 4]),
    );
    return [header, ...limits, '', ...budgets].join('\n');
  });
  return `${blocks.join('\n\n')}\n`;
}
