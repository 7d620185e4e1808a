/**
 * What the simulated provider's ledger says about one phase of the demo: its counts, how full each
 * limit was, and the time series the picture draws. Everything here is computed from ledger
 * entries alone, so the demo reports what the provider saw, not what the clients believe.
 */
import type { Limit } from '../common/budgets/types.ts';
import { parseDuration } from '../common/duration.ts';
import type { LedgerEntry } from '../sim-provider/index.ts';

export interface LimitFill {
  /** `concurrency`, `requests/5s`, ... */
  label: string;
  dimension: Limit['dimension'];
  amount: number;
  windowMs: number;
  /** Average in flight (concurrency) or average window sum while the load ran. */
  average: number;
  /** average / amount. */
  utilization: number;
  /** Highest in flight, or highest window sum at any admission. */
  peak: number;
}

export interface Series {
  bucketMs: number;
  /** Bucket start, seconds since the phase began. */
  t: number[];
  admittedPerS: number[];
  refusedPerS: number[];
  /** Time-weighted average in flight during the bucket. */
  inFlight: number[];
}

export interface LedgerFigures {
  firstId: number;
  lastId: number;
  requests: number;
  admitted: number;
  ok: number;
  refused: number;
  /** Admitted but not completed normally (client went away, dropped, hung). */
  unfinished: number;
  refusedByCode: Record<string, number>;
  limits: LimitFill[];
  /** The limit with the highest utilization. */
  binding: LimitFill | undefined;
  series: Series;
}

export function limitLabel(limit: Pick<Limit, 'dimension' | 'window' | 'model'>): string {
  const base = limit.window === undefined ? limit.dimension : `${limit.dimension}/${limit.window}`;
  return limit.model === undefined ? base : `${base}@${limit.model}`;
}

function chargeOf(entry: LedgerEntry, dimension: Limit['dimension']): number {
  const tokens = entry.usage ?? entry.charged;
  switch (dimension) {
    case 'requests':
      return 1;
    case 'inputTokens':
      return tokens.input;
    case 'outputTokens':
      return tokens.output;
    case 'totalTokens':
      return tokens.input + tokens.output;
    case 'concurrency':
      return 0;
  }
}

/** In-flight intervals of admitted entries; one still open ends at `endMs`. */
function intervals(admitted: LedgerEntry[], endMs: number): Array<[number, number]> {
  return admitted.map((entry) => [entry.arrivalMs, entry.completionMs ?? endMs]);
}

/** Time-weighted in flight over [from, to), and the highest in flight anywhere. */
function inFlightOver(
  spans: Array<[number, number]>,
  from: number,
  to: number,
): { average: number; peak: number } {
  const events: Array<[number, number]> = [];
  for (const [start, end] of spans) {
    events.push([start, 1], [end, -1]);
  }
  // Ends before starts at the same instant: a slot freed and reused at once is not two in flight.
  events.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let level = 0;
  let peak = 0;
  let area = 0;
  let last = from;
  for (const [time, delta] of events) {
    const clamped = Math.min(Math.max(time, from), to);
    area += level * (clamped - last);
    last = clamped;
    level += delta;
    peak = Math.max(peak, level);
  }
  area += level * (to - last);
  return { average: to > from ? area / (to - from) : 0, peak };
}

/** Average and peak window sum of `dimension` over sample times in [from + window, to]. */
function windowFill(
  admitted: LedgerEntry[],
  dimension: Limit['dimension'],
  windowMs: number,
  from: number,
  to: number,
): { average: number; peak: number } {
  const arrivals = admitted.map((entry) => ({ at: entry.arrivalMs, amount: chargeOf(entry, dimension) }));
  arrivals.sort((a, b) => a.at - b.at);
  const sumAt = (t: number) => {
    let sum = 0;
    for (const arrival of arrivals) if (arrival.at > t - windowMs && arrival.at <= t) sum += arrival.amount;
    return sum;
  };
  let peak = 0;
  for (const arrival of arrivals) peak = Math.max(peak, sumAt(arrival.at));
  // A window cannot be full before one window length of load has passed.
  const first = Math.min(from + windowMs, to);
  const step = Math.max(50, (to - first) / 400);
  let total = 0;
  let samples = 0;
  for (let t = first; t <= to; t += step) {
    total += sumAt(t);
    samples++;
  }
  return { average: samples === 0 ? 0 : total / samples, peak };
}

/**
 * Figures for the entries of one phase. `startMs`..`loadEndMs` is when the load ran (on the
 * provider's clock); utilization is measured over it.
 */
export function ledgerFigures(
  entries: LedgerEntry[],
  limits: Array<Pick<Limit, 'dimension' | 'amount' | 'window' | 'model'>>,
  startMs: number,
  loadEndMs: number,
  bucketMs = 500,
): LedgerFigures {
  const admitted = entries.filter((entry) => entry.outcome !== 'refused');
  const refused = entries.filter((entry) => entry.outcome === 'refused');
  const refusedByCode: Record<string, number> = {};
  for (const entry of refused) {
    const code = entry.refusal?.code ?? String(entry.status);
    refusedByCode[code] = (refusedByCode[code] ?? 0) + 1;
  }
  const endMs = Math.max(loadEndMs, ...entries.map((entry) => entry.completionMs ?? entry.arrivalMs));
  const spans = intervals(admitted, endMs);
  const fills: LimitFill[] = limits.map((limit) => {
    const windowMs = limit.window === undefined ? 0 : (parseDuration(limit.window) ?? 0);
    const relevant =
      limit.model === undefined ? admitted : admitted.filter((entry) => entry.model === limit.model);
    const measured =
      limit.dimension === 'concurrency'
        ? inFlightOver(intervals(relevant, endMs), startMs, loadEndMs)
        : windowFill(relevant, limit.dimension, windowMs, startMs, loadEndMs);
    return {
      label: limitLabel(limit),
      dimension: limit.dimension,
      amount: limit.amount,
      windowMs,
      average: measured.average,
      utilization: measured.average / limit.amount,
      peak: measured.peak,
    };
  });
  const binding = fills.reduce<LimitFill | undefined>(
    (best, fill) => (best === undefined || fill.utilization > best.utilization ? fill : best),
    undefined,
  );

  const buckets = Math.max(1, Math.ceil((endMs - startMs) / bucketMs));
  const series: Series = {
    bucketMs,
    t: Array.from({ length: buckets }, (_, index) => (index * bucketMs) / 1000),
    admittedPerS: new Array<number>(buckets).fill(0),
    refusedPerS: new Array<number>(buckets).fill(0),
    inFlight: [],
  };
  const bucketOf = (at: number) => Math.min(buckets - 1, Math.max(0, Math.floor((at - startMs) / bucketMs)));
  const perSecond = 1000 / bucketMs;
  for (const entry of admitted) series.admittedPerS[bucketOf(entry.arrivalMs)]! += perSecond;
  for (const entry of refused) series.refusedPerS[bucketOf(entry.arrivalMs)]! += perSecond;
  for (let index = 0; index < buckets; index++) {
    const from = startMs + index * bucketMs;
    series.inFlight.push(inFlightOver(spans, from, from + bucketMs).average);
  }

  return {
    firstId: entries[0]?.id ?? 0,
    lastId: entries.at(-1)?.id ?? 0,
    requests: entries.length,
    admitted: admitted.length,
    ok: entries.filter((entry) => entry.outcome === 'ok').length,
    refused: refused.length,
    unfinished: admitted.filter((entry) => entry.outcome !== 'ok').length,
    refusedByCode,
    limits: fills,
    binding,
    series,
  };
}
