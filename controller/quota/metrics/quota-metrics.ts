/**
 * The quota service's Prometheus metrics, in a private registry with the prefix
 * `tokenlease_quota_`. They describe the shared state in the store (limits declared and in force,
 * use, leases in flight, waiters, closures, and per-budget counts), so they are read from the
 * engine's usage snapshot at each scrape: every replica reports the same cluster-wide figures.
 * Labels are bounded by the configuration: provider, budget, limit (scope, dimension, window,
 * model), outcome (the fixed set of Settle outcomes) and closure reason (CLOSURE_REASONS).
 */
import { Counter, Gauge, Registry } from 'prom-client';
import { formatDuration } from '../../../common/duration.ts';
import type { QuotaApi, UsageSnapshot } from '../../../common/quota-api.ts';

const PREFIX = 'tokenlease_quota_';

/** Why a provider is closed: the refusal class that closed it, or `other`. */
export const CLOSURE_REASONS = ['window', 'rate', 'concurrency', 'other'] as const;
export type ClosureReason = (typeof CLOSURE_REASONS)[number];

/** The engine writes `<outcome> from the provider`; anything else is `other`. */
export function closureReason(text: string): ClosureReason {
  if (text.startsWith('refusedWindow')) return 'window';
  if (text.startsWith('refusedRate')) return 'rate';
  if (text.startsWith('refusedConcurrency')) return 'concurrency';
  return 'other';
}

type LimitLabel = 'provider' | 'scope' | 'dimension' | 'window' | 'model';
type BudgetLabel = 'provider' | 'budget';

export interface QuotaMetrics {
  registry: Registry;
  /** Reads the usage snapshot into the metrics; scrapes call it before rendering. */
  refresh(): Promise<void>;
  /** refresh() then the exposition text. */
  render(): Promise<string>;
}

export function createQuotaMetrics(engine: Pick<QuotaApi, 'usage'>): QuotaMetrics {
  const registry = new Registry();
  const registers = [registry];
  const limitLabels: LimitLabel[] = ['provider', 'scope', 'dimension', 'window', 'model'];
  const budgetLabels: BudgetLabel[] = ['provider', 'budget'];
  const declared = new Gauge({
    name: `${PREFIX}limit_declared`,
    help: 'A limit as declared (LLMProvider limits, scope "provider"; LLMBudget caps, scope = the budget).',
    labelNames: limitLabels,
    registers,
  });
  const effective = new Gauge({
    name: `${PREFIX}limit_effective`,
    help: 'The limit in force: the declared one, or lower after upstream refusals and rate-limit headers.',
    labelNames: limitLabels,
    registers,
  });
  const used = new Gauge({
    name: `${PREFIX}limit_used`,
    help: 'Use counted against the limit now: in its window, or in flight for concurrency.',
    labelNames: limitLabels,
    registers,
  });
  const inFlight = new Gauge({
    name: `${PREFIX}leases_in_flight`,
    help: 'Leases granted and not yet settled or expired.',
    labelNames: ['provider'],
    registers,
  });
  const waiters = new Gauge({
    name: `${PREFIX}waiters`,
    help: 'Requests queued for capacity.',
    labelNames: ['provider'],
    registers,
  });
  const closedUntil = new Gauge({
    name: `${PREFIX}closed_until_seconds`,
    help: 'Unix time until which the provider is closed (a window reset or retry-after); 0 when open.',
    labelNames: ['provider'],
    registers,
  });
  const closed = new Gauge({
    name: `${PREFIX}closed`,
    help: 'Whether the provider is closed now, by reason (1 for the reason in force, 0 for the others).',
    labelNames: ['provider', 'reason'],
    registers,
  });
  const budgetInFlight = new Gauge({
    name: `${PREFIX}budget_leases_in_flight`,
    help: "A budget's leases granted and not yet settled or expired.",
    labelNames: budgetLabels,
    registers,
  });
  const budgetWaiters = new Gauge({
    name: `${PREFIX}budget_waiters`,
    help: "A budget's requests queued for capacity.",
    labelNames: budgetLabels,
    registers,
  });
  const grants = new Counter({
    name: `${PREFIX}grants_total`,
    help: 'Leases granted, cluster-wide (counted in the store); spare leases sidecars take ahead of calls included.',
    labelNames: budgetLabels,
    registers,
  });
  const rejections = new Counter({
    name: `${PREFIX}rejections_total`,
    help: 'Requests refused by the quota service (no capacity within their wait), cluster-wide.',
    labelNames: budgetLabels,
    registers,
  });
  const refusals = new Counter({
    name: `${PREFIX}upstream_outcomes_total`,
    help: 'Settled calls whose outcome was not ok (refusedRate, refusedConcurrency, refusedWindow, overloaded, error, ...), cluster-wide.',
    labelNames: ['provider', 'budget', 'outcome'],
    registers,
  });
  const storeUp = new Gauge({
    name: `${PREFIX}store_up`,
    help: 'Whether the last scrape could read the store (the other metrics keep their last values when not).',
    registers,
  });
  const refreshed = [
    declared,
    effective,
    used,
    inFlight,
    waiters,
    closedUntil,
    closed,
    budgetInFlight,
    budgetWaiters,
  ];
  const counted = [grants, rejections, refusals];

  function apply(snapshot: UsageSnapshot): void {
    for (const metric of [...refreshed, ...counted]) metric.reset();
    for (const provider of snapshot.providers) {
      const id = provider.provider;
      for (const limit of provider.limits) {
        const labels = {
          provider: id,
          scope: limit.scope,
          dimension: limit.dimension,
          window: limit.windowMs > 0 ? formatDuration(limit.windowMs) : '',
          model: limit.model,
        };
        declared.set(labels, limit.limit);
        effective.set(labels, limit.effectiveLimit);
        used.set(labels, limit.used);
      }
      inFlight.set({ provider: id }, provider.inFlight);
      waiters.set({ provider: id }, provider.waiters);
      const isClosed = provider.closedUntilMs > snapshot.nowMs;
      closedUntil.set({ provider: id }, isClosed ? provider.closedUntilMs / 1000 : 0);
      const reason = isClosed ? closureReason(provider.closedReason) : undefined;
      for (const each of CLOSURE_REASONS) closed.set({ provider: id, reason: each }, each === reason ? 1 : 0);
      for (const budget of provider.budgets) {
        const labels = { provider: id, budget: budget.budget };
        budgetInFlight.set(labels, budget.inFlight);
        budgetWaiters.set(labels, budget.waiters);
        // The store keeps the cluster-wide totals: each scrape sets the counters to them.
        grants.inc(labels, budget.granted);
        rejections.inc(labels, budget.rejected);
        for (const [outcome, count] of Object.entries(budget.refusals)) {
          refusals.inc({ ...labels, outcome }, count);
        }
      }
    }
  }

  async function read(): Promise<void> {
    let snapshot: UsageSnapshot;
    try {
      snapshot = await engine.usage();
    } catch {
      storeUp.set(0);
      return;
    }
    apply(snapshot);
    storeUp.set(1);
  }

  // Scrapes may overlap: one at a time, so none renders a reset half refilled.
  let last: Promise<unknown> = Promise.resolve();
  function exclusive<T>(task: () => Promise<T>): Promise<T> {
    const run = last.then(task);
    last = run.catch(() => {});
    return run;
  }

  return {
    registry,
    refresh: () => exclusive(read),
    render: () => exclusive(async () => (await read(), registry.metrics())),
  };
}
