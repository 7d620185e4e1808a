/**
 * What a sidecar needs to route calls: its budget's fallback routes, one circuit breaker per
 * upstream provider, and their metrics.
 */
import type { Registry } from 'prom-client';
import type { BudgetSet } from '../../common/budgets/load-budgets.ts';
import type { Router } from '../proxy/router.ts';
import { breakerSettings, CircuitBreaker } from './circuit-breaker.ts';
import { FallbackRoutes } from './fallback-route.ts';
import { createRoutingMetrics, type RoutingMetrics } from './routing-metrics.ts';

export interface Routing {
  routes: FallbackRoutes;
  /** By provider id. */
  breakers: Map<string, CircuitBreaker>;
  metrics: RoutingMetrics;
}

export interface RoutingOptions {
  budgets: BudgetSet;
  budgetId: string;
  router: Router;
  registry: Registry;
  log: (message: string, fields?: Record<string, unknown>) => void;
  clock?: () => number;
}

export function createRouting(options: RoutingOptions): Routing {
  const { router, log } = options;
  const breakers = new Map<string, CircuitBreaker>();
  const metrics = createRoutingMetrics(options.registry, () =>
    [...breakers].map(([provider, breaker]) => [provider, breaker.state] as [string, typeof breaker.state]),
  );
  for (const target of router.targets) {
    const provider = target.providerId;
    if (breakers.has(provider)) continue;
    const settings = breakerSettings(target.provider.spec.circuitBreaker);
    breakers.set(
      provider,
      new CircuitBreaker(settings, options.clock, (state) => {
        metrics.breakerTransitions.inc({ provider, state });
        log(`circuit breaker ${state}`, { provider, state });
      }),
    );
  }
  const routes = new FallbackRoutes(options.budgets, options.budgetId, router.targets);
  for (const warning of routes.warnings) log(warning, { budget: options.budgetId });
  return { routes, breakers, metrics };
}
