/**
 * Plays one run's arrivals through a strategy in real time, stops every wait at the end of the
 * run, lets calls in flight finish, and measures the run from the provider's ledger (refusals,
 * utilization, shares) and from the clients (wait before the successful attempt).
 */
import type { LedgerEntry } from '../../sim-provider/index.ts';
import { percentile } from '../lib/stats.ts';
import {
  concurrencyUtilizationPct,
  maxDeviationPts,
  refusedPct,
  sharesPct,
  sidecarOfPath,
  windowUtilizationPct,
  type Span,
} from './ledger-measures.ts';
import type { SimProcess } from './sim-process.ts';
import type { AccountLimits, CallRecord, Strategy } from './strategies.ts';
import type { Arrival, Workload } from './workload.ts';

export interface ScenarioResult {
  name: string;
  requests: number;
  served: number;
  upstreamCalls: number;
  refusedPct: number;
  /** Of the binding limit (requests per window). */
  utilizationPct: number;
  tokenUtilizationPct: number;
  concurrencyUtilizationPct: number;
  waitP50Ms: number;
  waitP99Ms: number;
  sharesPct: Record<string, number>;
  fairnessMaxDevPts: number;
  /** Refusals by the limit that refused (`requests/2s`, `concurrency`) or the refusal class. */
  refusedBy: Record<string, number>;
  /** Most requests the provider admitted in any window-long span (at most the limit). */
  peakPerWindow: number;
  admittedInSpan: number;
  /** Tokenlease only: from the grant (store clock) to the provider seeing the call, ms. */
  grantToArrival?: { p50: number; p99: number; max: number; sendP99: number; sendMax: number };
}

export interface ScenarioOptions {
  sim: SimProcess;
  workload: Workload;
  arrivals: Arrival[];
  durationMs: number;
  /** Left out of the measures: the first window fills from empty. */
  warmupMs: number;
  /** The span measured, from warmupMs on (the rest of durationMs is a tail left out). */
  measuredMs: number;
  limits: AccountLimits;
  expectedSharesPct: Record<string, number>;
}

export async function runScenario(strategy: Strategy, options: ScenarioOptions): Promise<ScenarioResult> {
  await options.sim.reset();
  const stop = new AbortController();
  const startWall = Date.now();
  const start = performance.now();
  const records: Array<{ arrival: Arrival; record: CallRecord }> = [];
  const pending = new Set<Promise<void>>();
  let failures = 0;
  for (const arrival of options.arrivals) {
    const delay = start + arrival.atMs - performance.now();
    if (delay > 1) await new Promise((resolve) => setTimeout(resolve, delay));
    const call = strategy
      .call(arrival, stop.signal)
      .then((record) => void records.push({ arrival, record }))
      .catch((error: unknown) => {
        failures += 1;
        if (failures <= 3)
          process.stderr.write(`${strategy.name}: ${(error as Error).stack ?? String(error)}\n`);
      })
      .finally(() => pending.delete(call));
    pending.add(call);
  }
  const endDelay = start + options.durationMs - performance.now();
  if (endDelay > 0) await new Promise((resolve) => setTimeout(resolve, endDelay));
  stop.abort();
  await Promise.all(pending);
  const entries = await options.sim.ledger();

  const span: Span = {
    fromMs: startWall + options.warmupMs,
    toMs: startWall + options.warmupMs + options.measuredMs,
  };
  const budgetOf = new Map(options.workload.sidecars.map((sidecar) => [sidecar.index, sidecar.budget]));
  const shares = sharesPct(entries, span, (entry) => {
    const sidecar = sidecarOfPath(entry.path);
    return sidecar === undefined ? undefined : budgetOf.get(sidecar);
  });
  // Waits of the calls sent in the measured span (a call waits before it is sent, so selecting
  // by arrival would miss those still queued at the end).
  const waits = records
    .filter(({ arrival, record }) => {
      const sentAt = arrival.atMs + (record.waitMs ?? 0);
      return record.served && sentAt >= options.warmupMs && sentAt < options.warmupMs + options.measuredMs;
    })
    .map(({ record }) => record.waitMs ?? 0)
    .sort((a, b) => a - b);
  return {
    name: strategy.name,
    requests: options.arrivals.length,
    served: records.filter(({ record }) => record.served).length,
    upstreamCalls: entries.length,
    refusedPct: refusedPct(entries),
    utilizationPct: windowUtilizationPct(entries, span, {
      amount: options.limits.requests,
      windowMs: options.limits.windowMs,
    }),
    tokenUtilizationPct: windowUtilizationPct(
      entries,
      span,
      { amount: options.limits.totalTokens, windowMs: options.limits.windowMs },
      (entry) =>
        entry.usage ? entry.usage.input + entry.usage.output : entry.charged.input + entry.charged.output,
    ),
    concurrencyUtilizationPct: concurrencyUtilizationPct(entries, span, options.limits.concurrency),
    waitP50Ms: percentile(waits, 50),
    waitP99Ms: percentile(waits, 99),
    sharesPct: Object.fromEntries([...shares].sort()),
    fairnessMaxDevPts: maxDeviationPts(shares, options.expectedSharesPct),
    refusedBy: refusalCounts(entries),
    peakPerWindow: peakPerWindow(entries, options.limits.windowMs),
    ...grantToArrival(
      records.map(({ record }) => record),
      entries,
    ),
    admittedInSpan: entries.filter(
      (entry) => entry.outcome !== 'refused' && entry.arrivalMs >= span.fromMs && entry.arrivalMs < span.toMs,
    ).length,
  };
}

function refusalCounts(entries: LedgerEntry[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const entry of entries) {
    if (!entry.refusal) continue;
    const key = entry.refusal.limit ?? entry.refusal.class;
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return counts;
}

function peakPerWindow(entries: LedgerEntry[], windowMs: number): number {
  const times = entries.filter((entry) => entry.outcome !== 'refused').map((entry) => entry.arrivalMs);
  times.sort((a, b) => a - b);
  let peak = 0;
  let first = 0;
  for (let i = 0; i < times.length; i++) {
    while (times[i]! - times[first]! >= windowMs) first++;
    peak = Math.max(peak, i - first + 1);
  }
  return peak;
}

function grantToArrival(
  records: CallRecord[],
  entries: LedgerEntry[],
): Pick<ScenarioResult, 'grantToArrival'> {
  const granted = new Map<number, number>();
  const sends: number[] = [];
  for (const record of records) {
    if (record.callId !== undefined && record.grantedAtMs !== undefined)
      granted.set(record.callId, record.grantedAtMs);
    if (record.sentAtMs !== undefined && record.grantedAtMs !== undefined)
      sends.push(record.sentAtMs - record.grantedAtMs);
  }
  sends.sort((a, b) => a - b);
  if (granted.size === 0) return {};
  const delays: number[] = [];
  for (const entry of entries) {
    const id = /\/c\/(\d+)\//.exec(entry.path)?.[1];
    const at = id === undefined ? undefined : granted.get(Number(id));
    if (at !== undefined) delays.push(entry.arrivalMs - at);
  }
  delays.sort((a, b) => a - b);
  return {
    grantToArrival: {
      p50: percentile(delays, 50),
      p99: percentile(delays, 99),
      max: delays.at(-1) ?? NaN,
      sendP99: percentile(sends, 99),
      sendMax: sends.at(-1) ?? NaN,
    },
  };
}
