/**
 * One lease the sidecar holds for one upstream attempt. It settles exactly once whatever path
 * the call takes (a second settle is a no-op), keeps the lease alive with heartbeats while a long
 * stream runs, and never lets a failed Settle escape: the lease then expires on its own.
 */
import type { Grant, Outcome, QuotaApi, RateLimitObservation, TokenUsage } from '../../common/quota-api.ts';

/** Where the lease came from: the quota service, the local share, or nowhere (failure mode open). */
export type LeaseSource = 'remote' | 'local' | 'open';

export interface SettleFields {
  usage: TokenUsage;
  outcome: Outcome;
  retryAfterMs?: number | undefined;
  resetAtMs?: number | undefined;
  rateLimits?: RateLimitObservation[] | undefined;
}

export interface LeaseEvents {
  /** A Settle or Heartbeat failed; the lease will expire by itself. */
  onQuotaError?(error: unknown, operation: 'settle' | 'heartbeat'): void;
}

export class HeldLease {
  readonly source: LeaseSource;
  readonly grant: Grant | undefined;
  readonly #quota: QuotaApi | undefined;
  readonly #events: LeaseEvents;
  #settled = false;
  #heartbeat: NodeJS.Timeout | undefined;

  constructor(
    source: LeaseSource,
    quota: QuotaApi | undefined,
    grant: Grant | undefined,
    events: LeaseEvents = {},
  ) {
    this.source = source;
    this.#quota = quota;
    this.grant = grant;
    this.#events = events;
  }

  static open(): HeldLease {
    return new HeldLease('open', undefined, undefined);
  }

  get settled(): boolean {
    return this.#settled;
  }

  /** Milliseconds the grant waited for capacity (0 when nothing was asked). */
  get waitedMs(): number {
    return this.grant?.waitedMs ?? 0;
  }

  /** Heartbeats every third of the lease timeout until settled. */
  startHeartbeat(): void {
    const grant = this.grant;
    const quota = this.#quota;
    if (grant === undefined || quota === undefined || this.#heartbeat !== undefined || this.#settled) return;
    const every = Math.max(100, Math.floor(grant.leaseTimeoutMs / 3));
    this.#heartbeat = setInterval(() => {
      quota
        .heartbeat({ leaseId: grant.leaseId })
        .catch((error: unknown) => this.#events.onQuotaError?.(error, 'heartbeat'));
    }, every);
    this.#heartbeat.unref();
  }

  /** Settles once; later calls do nothing. Resolves even when the quota service fails. */
  async settle(fields: SettleFields): Promise<void> {
    if (this.#settled) return;
    this.#settled = true;
    if (this.#heartbeat !== undefined) clearInterval(this.#heartbeat);
    const grant = this.grant;
    const quota = this.#quota;
    if (grant === undefined || quota === undefined) return;
    try {
      await quota.settle({
        leaseId: grant.leaseId,
        usage: fields.usage,
        outcome: fields.outcome,
        retryAfterMs: fields.retryAfterMs,
        resetAtMs: fields.resetAtMs,
        rateLimits: fields.rateLimits,
      });
    } catch (error) {
      this.#events.onQuotaError?.(error, 'settle');
    }
  }
}
