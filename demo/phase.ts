/**
 * One phase of the demo: wait until the provider is idle, run the load for the phase's duration
 * while refreshing the live view, let the calls in progress finish, and collect what the
 * provider's ledger recorded meanwhile.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { UsageSnapshot } from '../common/quota-api.ts';
import type { LedgerEntry, LedgerSummary } from '../sim-provider/index.ts';
import type { LiveSnapshot, LiveView } from './live-view.ts';
import { startLoad, type ClientTarget, type TenantCounters } from './load.ts';
import type { Tenant } from './scenario.ts';
import type { SimHandle } from './sim-handle.ts';

/** Longest time calls in progress get to finish once the load stops; the rest are cancelled. */
const DRAIN_MS = 30_000;
/** Windows longer than this are not waited out between phases (a day would never clear). */
const IDLE_WINDOW_MAX_MS = 60_000;

export interface PhaseOptions {
  title: string;
  sim: SimHandle;
  tenants: Tenant[];
  targetOf(tenant: Tenant): ClientTarget;
  durationMs: number;
  view: LiveView;
  /** The quota service's view, shown while the phase runs (the tokenlease phase). */
  usage?: () => Promise<UsageSnapshot>;
  providerId: string;
}

export interface PhaseResult {
  /** Ledger entries of this phase (ids after `sinceId`). */
  entries: LedgerEntry[];
  sinceId: number;
  /** On the provider's clock: the first request's arrival, and when the load stopped. */
  startMs: number;
  loadEndMs: number;
  /** Wall time of the whole phase including the drain. */
  elapsedMs: number;
  counters: Map<string, TenantCounters>;
}

/** Until nothing is in flight and every short window has emptied, so phases start equal. */
async function waitIdle(sim: SimHandle, timeoutMs: number): Promise<LedgerSummary> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const summary = await sim.summary();
    const busy =
      summary.inFlight > 0 ||
      summary.limits.some(
        (limit) => limit.windowMs > 0 && limit.windowMs <= IDLE_WINDOW_MAX_MS && limit.used > 0,
      );
    if (!busy) return summary;
    if (Date.now() > deadline) throw new Error('the simulated provider did not become idle between phases');
    await sleep(100);
  }
}

export async function runPhase(options: PhaseOptions): Promise<PhaseResult> {
  const before = await waitIdle(options.sim, IDLE_WINDOW_MAX_MS + 10_000);
  // Ledger ids run from 1, one per request: everything after `total` belongs to this phase.
  const sinceId = before.total;
  const started = performance.now();
  const load = startLoad(options.tenants, options.targetOf);
  let draining = false;

  const snapshot = async (): Promise<LiveSnapshot> => {
    const [summary, usage] = await Promise.all([
      options.sim.summary(),
      options.usage ? options.usage().catch(() => undefined) : Promise.resolve(undefined),
    ]);
    const provider = usage?.providers.find((entry) => entry.provider === options.providerId);
    const waiting = new Map(provider?.budgets.map((budget) => [budget.budget, budget.waiters]) ?? []);
    return {
      title: options.title,
      elapsedMs: performance.now() - started,
      durationMs: options.durationMs,
      draining,
      tenants: options.tenants.map((tenant) => ({
        name: tenant.name,
        weight: tenant.weight,
        counters: load.counters.get(tenant.budget)!,
        waiting: provider ? (waiting.get(tenant.budget) ?? 0) : undefined,
      })),
      provider: {
        inFlight: summary.inFlight,
        limits: summary.limits.map((limit) => ({
          label: limit.label,
          used: limit.used,
          amount: limit.amount,
          effective: provider?.limits.find(
            (entry) =>
              entry.scope === 'provider' &&
              entry.dimension === labelDimension(limit.label) &&
              entry.windowMs === limit.windowMs,
          )?.effectiveLimit,
        })),
        okThisPhase: summary.ok - before.ok,
        refusedThisPhase: summary.refused - before.refused,
      },
    };
  };

  let ticking = true;
  const ticker = (async () => {
    while (ticking) {
      options.view.update(await snapshot());
      await sleep(250);
    }
  })();

  await sleep(options.durationMs);
  const loadEndedAt = performance.now();
  draining = true;
  await load.stop(DRAIN_MS);
  // The provider frees a slot when the response has gone out; give its ledger a moment to agree.
  const settleBy = Date.now() + 5_000;
  while ((await options.sim.summary()).inFlight > 0 && Date.now() < settleBy) await sleep(20);
  ticking = false;
  await ticker;
  options.view.done(await snapshot());

  const entries = (await options.sim.entries(sinceId)).filter((entry) => entry.id > sinceId);
  const startMs = entries[0]?.arrivalMs ?? 0;
  return {
    entries,
    sinceId,
    startMs,
    loadEndMs: startMs + (loadEndedAt - started),
    elapsedMs: performance.now() - started,
    counters: load.counters,
  };
}

/** `requests/5s@model` -> `requests`. */
function labelDimension(label: string): string {
  return label.split(/[/@]/, 1)[0]!;
}
