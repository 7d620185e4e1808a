/** The quota service's Prometheus metrics and the HTTP endpoint serving them. */
export {
  CLOSURE_REASONS,
  closureReason,
  createQuotaMetrics,
  type ClosureReason,
  type QuotaMetrics,
} from './quota-metrics.ts';
export { startMetricsServer, type MetricsServer } from './metrics-server.ts';
