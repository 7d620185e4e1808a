/**
 * The demo's result: one object (printed as the last line, as JSON, for tests and scripts) and
 * its side-by-side text rendering. Provider-side figures come from the simulated provider's
 * ledger; client-side ones from what the tenants' SDK clients saw.
 */
import type { LedgerFigures, LimitFill } from './ledger-figures.ts';
import type { TenantCounters } from './load.ts';
import type { Tenant } from './scenario.ts';

export const SUMMARY_KIND = 'tokenlease-demo-summary';

export interface TenantSummary {
  budget: string;
  name: string;
  weight: number;
  /** weight / sum of weights. */
  expectedShare: number;
  /** Its clients calling back to back (its demand). */
  workers: number;
  ok: number;
  failed: number;
  cancelled: number;
  attempts: number;
  /** 429s the app received. */
  throttled: number;
  /** Of the completed calls. */
  share: number;
  avgCallMs: number;
  /** The tenant's sidecar (tokenlease phase only). */
  sidecar?: { upstreamRefusals: number; avgLeaseWaitMs: number; leases: number };
}

export interface PhaseSummary {
  /** Counted by the provider: its ledger entries with ids firstId..lastId. */
  ledger: Omit<LedgerFigures, 'series' | 'limits' | 'binding'>;
  limits: LimitFill[];
  calls: {
    ok: number;
    failed: number;
    cancelled: number;
    attempts: number;
    throttled: number;
    sidecarRefusals: number;
  };
  tenants: TenantSummary[];
  /** Largest |share - expectedShare| over tenants, in percentage points. */
  fairnessMaxDeviationPoints: number;
  elapsedMs: number;
}

export interface DemoSummary {
  kind: typeof SUMMARY_KIND;
  flavour: string;
  store: 'memory' | 'redis';
  provider: string;
  /** The provider as started (embedded) or given (--provider-url). */
  providerUrl: string;
  embeddedProvider: boolean;
  durationMs: number;
  /** The limit compared between phases: the fullest one with tokenlease. */
  binding: string;
  picture: string;
  phases: { tokenlease: PhaseSummary; direct: PhaseSummary };
}

function round(value: number, digits = 4): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}

export function phaseSummary(
  figures: LedgerFigures,
  tenants: Tenant[],
  counters: Map<string, TenantCounters>,
  elapsedMs: number,
  sidecars?: Map<string, NonNullable<TenantSummary['sidecar']>>,
): PhaseSummary {
  const totalOk = tenants.reduce((sum, tenant) => sum + (counters.get(tenant.budget)?.ok ?? 0), 0);
  const rows: TenantSummary[] = tenants.map((tenant) => {
    const c = counters.get(tenant.budget)!;
    const sidecar = sidecars?.get(tenant.budget);
    return {
      budget: tenant.budget,
      name: tenant.name,
      weight: tenant.weight,
      expectedShare: round(tenant.expectedShare),
      workers: tenant.workers,
      ok: c.ok,
      failed: c.failed,
      cancelled: c.cancelled,
      attempts: c.attempts,
      throttled: c.throttled,
      share: totalOk === 0 ? 0 : round(c.ok / totalOk),
      avgCallMs: c.ok === 0 ? 0 : Math.round(c.latencyMsSum / c.ok),
      ...(sidecar ? { sidecar } : {}),
    };
  });
  const sum = (pick: (c: TenantCounters) => number) =>
    tenants.reduce((total, tenant) => total + pick(counters.get(tenant.budget)!), 0);
  const { series: _series, limits, binding: _binding, ...ledger } = figures;
  return {
    ledger,
    limits: limits.map((limit) => ({
      ...limit,
      average: round(limit.average, 2),
      utilization: round(limit.utilization),
    })),
    calls: {
      ok: sum((c) => c.ok),
      failed: sum((c) => c.failed),
      cancelled: sum((c) => c.cancelled),
      attempts: sum((c) => c.attempts),
      throttled: sum((c) => c.throttled),
      sidecarRefusals: sum((c) => c.sidecarRefusals),
    },
    tenants: rows,
    fairnessMaxDeviationPoints: round(
      Math.max(0, ...rows.map((row) => Math.abs(row.share - row.expectedShare) * 100)),
      2,
    ),
    elapsedMs: Math.round(elapsedMs),
  };
}

const percent = (value: number) => `${(value * 100).toFixed(1)}%`;

function codes(byCode: Record<string, number>): string {
  const parts = Object.entries(byCode)
    .sort((a, b) => b[1] - a[1])
    .map(([code, count]) => `${code}: ${count}`);
  return parts.length === 0 ? '' : ` (${parts.join(', ')})`;
}

/** The side-by-side table. */
export function renderSummary(summary: DemoSummary): string {
  const { tokenlease: a, direct: b } = summary.phases;
  const fill = (phase: PhaseSummary) => phase.limits.find((limit) => limit.label === summary.binding);
  const rows: Array<[string, string, string]> = [
    [
      'upstream refusals (provider ledger)',
      `${a.ledger.refused}${codes(a.ledger.refusedByCode)}`,
      `${b.ledger.refused}${codes(b.ledger.refusedByCode)}`,
    ],
    ['requests the provider saw', String(a.ledger.requests), String(b.ledger.requests)],
    ['calls completed (provider ledger)', String(a.ledger.ok), String(b.ledger.ok)],
    ['calls completed (apps)', String(a.calls.ok), String(b.calls.ok)],
    ['calls failed after SDK retries', String(a.calls.failed), String(b.calls.failed)],
    ['429s the apps saw', String(a.calls.throttled), String(b.calls.throttled)],
    [
      `use of the binding limit (${summary.binding})`,
      percent(fill(a)?.utilization ?? 0),
      percent(fill(b)?.utilization ?? 0),
    ],
    [
      `peak ${summary.binding}`,
      `${fill(a)?.peak ?? 0} / ${fill(a)?.amount ?? 0}`,
      `${fill(b)?.peak ?? 0} / ${fill(b)?.amount ?? 0}`,
    ],
    ['share of completed calls vs weight:', '', ''],
  ];
  a.tenants.forEach((tenant, index) => {
    const other = b.tenants[index]!;
    rows.push([
      `  ${tenant.name} (${tenant.workers} clients, weight ${tenant.weight} -> ${percent(tenant.expectedShare)})`,
      `${percent(tenant.share)}  (${tenant.ok} calls)`,
      `${percent(other.share)}  (${other.ok} calls)`,
    ]);
  });
  rows.push([
    'largest gap from the weights',
    `${a.fairnessMaxDeviationPoints.toFixed(1)} points`,
    `${b.fairnessMaxDeviationPoints.toFixed(1)} points`,
  ]);
  const waits = a.tenants
    .map((tenant) => `${tenant.name} ${tenant.sidecar?.avgLeaseWaitMs ?? 0} ms`)
    .join(', ');
  const widths = [Math.max(...rows.map((row) => row[0].length)), 24];
  const line = (row: [string, string, string]) =>
    `${row[0].padEnd(widths[0]!)}  ${row[1].padEnd(widths[1]!)}  ${row[2]}`;
  return [
    line(['', 'with tokenlease', 'without (SDK retries only)']),
    line(['', '---------------', '--------------------------']),
    ...rows.map(line),
    '',
    `Average wait for a lease with tokenlease: ${waits}.`,
  ].join('\n');
}
