/**
 * One sidecar's circuit breaker for one upstream provider: closed -> open after N failures in a
 * row or a failure rate over a sliding window -> half-open after a cool-down, when exactly one
 * call probes -> closed on its success, open again on its failure.
 *
 * Permit-based rather than wrapping a function (as opossum does): a call holds its permit from
 * before the lease until its stream ends, and its verdict can be "neutral" (a rate refusal, a
 * cancelled call, no lease granted) - the quota engine's business, not the breaker's.
 */
import type { CircuitBreakerSpec } from '../../common/budgets/types.ts';
import { parseDuration } from '../../common/duration.ts';

export type BreakerState = 'closed' | 'open' | 'halfOpen';

/** What one call says about the provider's health. */
export type Health = 'success' | 'failure' | 'neutral';

export interface BreakerSettings {
  enabled: boolean;
  consecutiveFailures: number;
  failureRate: number;
  windowMs: number;
  minCalls: number;
  coolDownMs: number;
}

export function breakerSettings(spec: Partial<CircuitBreakerSpec> | undefined): BreakerSettings {
  return {
    enabled: spec?.enabled ?? true,
    consecutiveFailures: spec?.consecutiveFailures ?? 5,
    failureRate: spec?.failureRate ?? 0.5,
    windowMs: parseDuration(spec?.window ?? '30s') ?? 30_000,
    minCalls: spec?.minCalls ?? 20,
    coolDownMs: parseDuration(spec?.coolDown ?? '30s') ?? 30_000,
  };
}

/** Leave to call the provider once; the first `report` counts, later ones do nothing. */
export interface BreakerPermit {
  /** This call is the half-open probe. */
  readonly probe: boolean;
  report(health: Health): void;
}

/** The sliding window is kept as this many buckets. */
const BUCKETS = 10;

export class CircuitBreaker {
  readonly #settings: BreakerSettings;
  readonly #clock: () => number;
  readonly #onChange: (state: BreakerState) => void;
  #state: BreakerState = 'closed';
  #consecutive = 0;
  #openUntilMs = 0;
  #probeOut = false;
  /** Bumped on every state change: verdicts of permits from an older state only count as stats. */
  #generation = 0;
  readonly #bucketMs: number;
  readonly #calls = new Array<number>(BUCKETS).fill(0);
  readonly #failures = new Array<number>(BUCKETS).fill(0);
  /** Index (time / bucketMs) of the newest bucket written. */
  #head = 0;

  constructor(
    settings: BreakerSettings,
    clock: () => number = Date.now,
    onChange: (state: BreakerState) => void = () => {},
  ) {
    this.#settings = settings;
    this.#clock = clock;
    this.#onChange = onChange;
    this.#bucketMs = Math.max(1, Math.ceil(settings.windowMs / BUCKETS));
  }

  /** The state now (an open breaker whose cool-down passed reads as half-open). */
  get state(): BreakerState {
    if (this.#state === 'open' && this.#clock() >= this.#openUntilMs) this.#set('halfOpen');
    return this.#state;
  }

  /** Epoch ms at which an open breaker lets a probe through; 0 unless open. */
  get openUntilMs(): number {
    return this.state === 'open' ? this.#openUntilMs : 0;
  }

  /** A permit to call now, or undefined while open or while the half-open probe is out. */
  permit(): BreakerPermit | undefined {
    if (!this.#settings.enabled) return { probe: false, report: () => {} };
    const state = this.state;
    if (state === 'open') return undefined;
    if (state === 'halfOpen') {
      if (this.#probeOut) return undefined;
      this.#probeOut = true;
    }
    const generation = this.#generation;
    const probe = state === 'halfOpen';
    let reported = false;
    return {
      probe,
      report: (health) => {
        if (reported) return;
        reported = true;
        this.#record(health, probe, generation);
      },
    };
  }

  #record(health: Health, probe: boolean, generation: number): void {
    if (probe) {
      this.#probeOut = false;
      if (generation !== this.#generation) return;
      if (health === 'success') this.#close();
      else if (health === 'failure') this.#open();
      // Neutral: the probe told nothing; the next call probes instead.
      return;
    }
    if (health === 'neutral') return;
    this.#count(health === 'failure');
    // A verdict from before the breaker opened does not move it again.
    if (generation !== this.#generation || this.#state !== 'closed') return;
    if (health === 'success') {
      this.#consecutive = 0;
      return;
    }
    this.#consecutive += 1;
    if (this.#consecutive >= this.#settings.consecutiveFailures) {
      this.#open();
      return;
    }
    const { calls, failures } = this.#windowTotals();
    if (calls >= this.#settings.minCalls && failures / calls >= this.#settings.failureRate) this.#open();
  }

  #count(failed: boolean): void {
    const index = Math.floor(this.#clock() / this.#bucketMs);
    // Clear the buckets that fell out of the window since the last write.
    for (let i = this.#head + 1; i <= index && i <= this.#head + BUCKETS; i++) {
      this.#calls[i % BUCKETS] = 0;
      this.#failures[i % BUCKETS] = 0;
    }
    if (index > this.#head) this.#head = index;
    const slot = index % BUCKETS;
    this.#calls[slot]! += 1;
    if (failed) this.#failures[slot]! += 1;
  }

  #windowTotals(): { calls: number; failures: number } {
    const index = Math.floor(this.#clock() / this.#bucketMs);
    let calls = 0;
    let failures = 0;
    for (let i = index - BUCKETS + 1; i <= index; i++) {
      if (i > this.#head || i <= this.#head - BUCKETS) continue;
      calls += this.#calls[((i % BUCKETS) + BUCKETS) % BUCKETS]!;
      failures += this.#failures[((i % BUCKETS) + BUCKETS) % BUCKETS]!;
    }
    return { calls, failures };
  }

  #open(): void {
    this.#openUntilMs = this.#clock() + this.#settings.coolDownMs;
    this.#set('open');
  }

  #close(): void {
    this.#consecutive = 0;
    this.#calls.fill(0);
    this.#failures.fill(0);
    this.#set('closed');
  }

  #set(state: BreakerState): void {
    if (state === this.#state) return;
    this.#state = state;
    this.#generation += 1;
    this.#onChange(state);
  }
}
