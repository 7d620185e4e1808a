/**
 * What the simulated provider's ledger says about a run: refusals, utilization of a limit over a
 * span, and how admitted calls divide among groups of callers. Everything is computed from what
 * the provider saw, never from what the clients believe they did.
 */
import type { LedgerEntry } from '../../sim-provider/index.ts';

/** Admitted by the provider (charged against its limits), whatever happened afterwards. */
export function admitted(entry: LedgerEntry): boolean {
  return entry.outcome !== 'refused';
}

export interface Span {
  fromMs: number;
  toMs: number;
}

export function inSpan(entry: LedgerEntry, span: Span): boolean {
  return entry.arrivalMs >= span.fromMs && entry.arrivalMs < span.toMs;
}

/** Refused calls as a percentage of every call that arrived in the span. */
export function refusedPct(entries: LedgerEntry[], span?: Span): number {
  const seen = span ? entries.filter((entry) => inSpan(entry, span)) : entries;
  if (seen.length === 0) return 0;
  return (100 * seen.filter((entry) => entry.outcome === 'refused').length) / seen.length;
}

/**
 * Use of a window limit over the span as a percentage of what it allows there: `amount` per
 * `windowMs`. `weigh` gives what an admitted entry counts for (1 for a requests limit).
 */
export function windowUtilizationPct(
  entries: LedgerEntry[],
  span: Span,
  limit: { amount: number; windowMs: number },
  weigh: (entry: LedgerEntry) => number = () => 1,
): number {
  let used = 0;
  for (const entry of entries) if (admitted(entry) && inSpan(entry, span)) used += weigh(entry);
  const allowed = (limit.amount * (span.toMs - span.fromMs)) / limit.windowMs;
  return (100 * used) / allowed;
}

/** Time-averaged calls in flight at the provider over the span, as a percentage of `amount`. */
export function concurrencyUtilizationPct(entries: LedgerEntry[], span: Span, amount: number): number {
  let busy = 0;
  for (const entry of entries) {
    if (!admitted(entry)) continue;
    const start = Math.max(entry.arrivalMs, span.fromMs);
    const end = Math.min(entry.completionMs ?? span.toMs, span.toMs);
    if (end > start) busy += end - start;
  }
  return (100 * busy) / (amount * (span.toMs - span.fromMs));
}

/** Admitted calls per group (say, per budget) as percentages of all admitted calls in the span. */
export function sharesPct(
  entries: LedgerEntry[],
  span: Span,
  groupOf: (entry: LedgerEntry) => string | undefined,
): Map<string, number> {
  const counts = new Map<string, number>();
  let total = 0;
  for (const entry of entries) {
    if (!admitted(entry) || !inSpan(entry, span)) continue;
    const group = groupOf(entry);
    if (group === undefined) continue;
    counts.set(group, (counts.get(group) ?? 0) + 1);
    total += 1;
  }
  const shares = new Map<string, number>();
  for (const [group, count] of counts) shares.set(group, (100 * count) / total);
  return shares;
}

/** The largest gap, in percentage points, between measured and expected shares. */
export function maxDeviationPts(shares: Map<string, number>, expected: Record<string, number>): number {
  let worst = 0;
  for (const [group, share] of Object.entries(expected)) {
    worst = Math.max(worst, Math.abs((shares.get(group) ?? 0) - share));
  }
  return worst;
}

/** Paths carry the caller: `/s/<sidecar>/v1/...` (the simulated provider serves under any prefix). */
export function sidecarOfPath(path: string): number | undefined {
  const match = /^\/s\/(\d+)\//.exec(path);
  return match ? Number(match[1]) : undefined;
}
