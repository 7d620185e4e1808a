/**
 * What a sidecar needs from the quota service. The in-process lease engine (embedded mode)
 * and the gRPC client (cluster mode) both implement it, so the sidecar does not care which.
 *
 * Failures are thrown as the typed errors of ./errors/errors.ts:
 * InvalidRequestError, NotFoundError, PermissionDeniedError, RequestTooLargeError,
 * CapacityExhaustedError, StoreUnavailableError.
 */

export interface Reservation {
  requests: number;
  inputTokens: number;
  outputTokens: number;
  totalTokens: number;
}

export interface AcquireInput {
  /** `namespace/name` of the LLMProvider. */
  provider: string;
  model: string;
  /** `namespace/name` of the LLMBudget. */
  budget: string;
  /** Estimated prompt tokens. */
  inputTokens: number;
  /** The request's max output tokens (or the provider's default allowance). */
  maxOutputTokens: number;
  /** Larger is more urgent (interactive 100, standard 50, batch 0); the budget's when omitted. */
  priority?: number | undefined;
  /** How long to wait for capacity before failing with CapacityExhaustedError. */
  maxWaitMs: number;
  requestId?: string | undefined;
  /** Aborting gives up the wait (and frees whatever was reserved for it). */
  signal?: AbortSignal | undefined;
}

export interface Grant {
  leaseId: string;
  /** On the store's clock. */
  expiresAtMs: number;
  /** Heartbeat well before this much time passes without one. */
  leaseTimeoutMs: number;
  waitedMs: number;
  reserved: Reservation;
  /**
   * What the grant left free of its tightest limit, when it was granted at once (undefined for a
   * grant that waited in the queue, or from a store that does not say). The sidecar holds spare
   * leases only while this shows plenty of room (sidecar/quota/spare-leases.ts).
   */
  headroom?: Headroom | undefined;
}

export interface Headroom {
  /** The smallest share of a limit's effective amount left free, 0..1. */
  fraction: number;
  /** How many more requests of the same size all limits would take right now. */
  requests: number;
}

export const OUTCOMES = [
  'ok',
  'refusedConcurrency',
  'refusedRate',
  'refusedWindow',
  'refusedBalance',
  'overloaded',
  'tooLarge',
  'error',
  'cancelled',
  'notSent',
  // A lease taken ahead of a call (a spare) that no call used: charged nothing, not even the request.
  'unused',
] as const;
export type Outcome = (typeof OUTCOMES)[number];

export interface TokenUsage {
  inputTokens: number;
  outputTokens: number;
}

/** What a provider's rate-limit headers said about one of its limits. */
export interface RateLimitObservation {
  dimension: 'requests' | 'inputTokens' | 'outputTokens' | 'totalTokens';
  /** Undefined: not stated. */
  limit?: number | undefined;
  remaining?: number | undefined;
  /** Until the provider's window resets. */
  resetMs?: number | undefined;
}

export interface SettleInput {
  leaseId: string;
  usage: TokenUsage;
  outcome: Outcome;
  /** The provider's retry hint on a refusal. */
  retryAfterMs?: number | undefined;
  /** A window refusal's stated reset, epoch ms. */
  resetAtMs?: number | undefined;
  /** The response's rate-limit headers, parsed. */
  rateLimits?: RateLimitObservation[] | undefined;
}

export type SettleStatus = 'settled' | 'alreadySettled' | 'settledAfterExpiry';

export interface SettleResult {
  status: SettleStatus;
  /** What the lease finally counts for. */
  charged: Reservation;
  /** On the store's clock: when the slot was freed (the first settle's time for a repeat). */
  settledAtMs: number;
}

export interface HeartbeatInput {
  leaseId: string;
  /** Tokens used so far; charged beyond the reservation when they exceed it. */
  usedSoFar?: TokenUsage | undefined;
}

export interface LimitUsage {
  /** `provider`, or the budget id for a budget's cap. */
  scope: string;
  dimension: string;
  /** 0 for concurrency. */
  windowMs: number;
  /** Empty: every model. */
  model: string;
  limit: number;
  effectiveLimit: number;
  used: number;
}

export interface BudgetUsage {
  budget: string;
  inFlight: number;
  waiters: number;
  granted: number;
  rejected: number;
  refusals: Record<string, number>;
  /** What the shared response cache saved this budget (sidecar/cache); absent when nothing. */
  cache?: { hits: number; inputTokens: number; outputTokens: number } | undefined;
}

export interface ProviderUsage {
  provider: string;
  limits: LimitUsage[];
  inFlight: number;
  waiters: number;
  budgets: BudgetUsage[];
  closedUntilMs: number;
  closedReason: string;
}

export interface UsageSnapshot {
  nowMs: number;
  providers: ProviderUsage[];
}

export interface QuotaApi {
  acquire(input: AcquireInput): Promise<Grant>;
  settle(input: SettleInput): Promise<SettleResult>;
  heartbeat(input: HeartbeatInput): Promise<{ expiresAtMs: number }>;
  usage(provider?: string): Promise<UsageSnapshot>;
}
