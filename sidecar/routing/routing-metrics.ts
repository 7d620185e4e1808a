/**
 * Fallback and circuit-breaker metrics, in the sidecar's own registry. Labels are bounded: the
 * budget's providers, a few reasons and three states.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { BreakerState } from './circuit-breaker.ts';

const PREFIX = 'tokenlease_sidecar_';

/** Why a call left a provider of its route. */
export const FALLBACK_REASONS = [
  /** No lease within the step's `after`. */
  'capacity',
  /** The provider is closed (a window refusal, or retry-after) beyond the step's wait. */
  'closed',
  /** The request is larger than one of this provider's limits. */
  'tooLarge',
  /** Upstream overload (Anthropic 529, GLM 1305/1312, DeepSeek 503). */
  'overload',
  /** Transport error or 5xx. */
  'error',
  /** Another refusal this provider cannot get past in time (rate, window, balance). */
  'refused',
  /** Its circuit breaker is open. */
  'circuitOpen',
] as const;
export type FallbackReason = (typeof FALLBACK_REASONS)[number];

export const BREAKER_STATE_VALUE: Record<BreakerState, number> = { closed: 0, halfOpen: 1, open: 2 };

export interface RoutingMetrics {
  /** `to` is `none` when no provider was left to try. */
  fallbacks: Counter<'from' | 'to' | 'reason'>;
  breakerState: Gauge<'provider'>;
  breakerTransitions: Counter<'provider' | 'state'>;
}

/** `states` is read at each scrape, so an open breaker whose cool-down passed shows half-open. */
export function createRoutingMetrics(
  registry: Registry,
  states: () => Iterable<[string, BreakerState]>,
): RoutingMetrics {
  const registers = [registry];
  return {
    fallbacks: new Counter({
      name: `${PREFIX}fallbacks_total`,
      help: 'Calls that left a provider of their route for the next one (to="none": none was left), by reason.',
      labelNames: ['from', 'to', 'reason'],
      registers,
    }),
    breakerState: new Gauge({
      name: `${PREFIX}circuit_breaker_state`,
      help: "This sidecar's circuit breaker per upstream provider: 0 closed, 1 half-open (probing), 2 open.",
      labelNames: ['provider'],
      registers,
      collect() {
        for (const [provider, state] of states()) this.set({ provider }, BREAKER_STATE_VALUE[state]);
      },
    }),
    breakerTransitions: new Counter({
      name: `${PREFIX}circuit_breaker_transitions_total`,
      help: 'Circuit breaker state changes, by provider and the state entered.',
      labelNames: ['provider', 'state'],
      registers,
    }),
  };
}
