/**
 * The sidecar's Prometheus metrics, in a private registry (one per sidecar instance, so several
 * sidecars in one test process do not share counters). Labels are bounded sets: route, provider
 * id, outcome, refusal kind, failure mode.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

const PREFIX = 'tokenlease_sidecar_';

export interface SidecarMetrics {
  registry: Registry;
  requests: Counter<'route' | 'provider' | 'outcome'>;
  upstreamRefusals: Counter<'provider' | 'kind'>;
  retries: Counter<'provider' | 'kind'>;
  leaseWait: Histogram<'provider'>;
  addedLatency: Histogram<'route'>;
  quotaReachable: Gauge;
  degradedRequests: Counter<'provider' | 'mode'>;
  quotaErrors: Counter<'operation'>;
  spareLeases: Counter<'event'>;
}

export function createSidecarMetrics(): SidecarMetrics {
  const registry = new Registry();
  const registers = [registry];
  const metrics: SidecarMetrics = {
    registry,
    requests: new Counter({
      name: `${PREFIX}requests_total`,
      help: 'Calls answered, by API route, provider and outcome (an upstream outcome, or the sidecar refusing: invalid, throttled, unavailable).',
      labelNames: ['route', 'provider', 'outcome'],
      registers,
    }),
    upstreamRefusals: new Counter({
      name: `${PREFIX}upstream_refusals_total`,
      help: 'Upstream answers that were not 2xx, by refusal kind.',
      labelNames: ['provider', 'kind'],
      registers,
    }),
    retries: new Counter({
      name: `${PREFIX}retries_total`,
      help: 'Upstream refusals the sidecar retried within the caller deadline.',
      labelNames: ['provider', 'kind'],
      registers,
    }),
    leaseWait: new Histogram({
      name: `${PREFIX}lease_wait_seconds`,
      help: 'Time from asking for a lease to holding it.',
      labelNames: ['provider'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    }),
    addedLatency: new Histogram({
      name: `${PREFIX}added_latency_seconds`,
      help: 'Time the sidecar adds before forwarding a call (parsing, counting, the lease round trip), excluding time spent waiting for capacity.',
      labelNames: ['route'],
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1],
      registers,
    }),
    quotaReachable: new Gauge({
      name: `${PREFIX}quota_service_reachable`,
      help: '1 while the quota service answers; 0 while the budget failure mode applies.',
      registers,
    }),
    degradedRequests: new Counter({
      name: `${PREFIX}failure_mode_requests_total`,
      help: 'Calls served while the quota service was unreachable, by failure mode (localShare: local limiter; open: unmetered).',
      labelNames: ['provider', 'mode'],
      registers,
    }),
    quotaErrors: new Counter({
      name: `${PREFIX}quota_errors_total`,
      help: 'Settle or Heartbeat calls that failed (the lease then expires on its own).',
      labelNames: ['operation'],
      registers,
    }),
    spareLeases: new Counter({
      name: `${PREFIX}spare_leases_total`,
      help: 'Leases taken ahead of calls: taken by a call, returned unused, or refused (the account was busy).',
      labelNames: ['event'],
      registers,
    }),
  };
  metrics.quotaReachable.set(1);
  return metrics;
}
