/**
 * The lease store: the atomic operations behind the engine. Two implementations with the same
 * semantics — memory-store.ts (embedded mode, tests) and redis-store.ts (one Lua script) — are
 * held to one conformance suite (store-conformance.ts).
 *
 * Model, per provider (everything of one provider lives under one Redis hash tag):
 * - A window limit keeps its charges in buckets of `bucketMs`; the amount in a window is the sum
 *   of the buckets overlapping [now - window - margin, now]. Counting a little more than the
 *   window (never less) means the provider, which sees a call slightly after we grant it, can
 *   never count more in its own window than we did.
 * - A concurrency limit counts leases in flight. Every lease has an expiry; an expired lease frees
 *   its slots the next time any operation touches the provider, so no sweeper is needed.
 * - Waiters queue in one global order per provider (a sorted set); every operation first grants
 *   from the head of the queue what now fits, so capacity is never given past a waiter.
 * - While budgets share a provider's rate window, it is paced (see PACE_FREE_SHARE below).
 */
import type { Dimension } from '../../../common/budgets/types.ts';
import type {
  Headroom,
  Outcome,
  RateLimitObservation,
  Reservation,
  TokenUsage,
} from '../../../common/quota-api.ts';

export interface LimitPlan {
  /** Stable id of the limit: counts survive edits of its amount. */
  key: string;
  dimension: Dimension;
  /** What may be in the window (or in flight) now. */
  amount: number;
  /** 0 for concurrency. */
  windowMs: number;
  bucketMs: number;
  marginMs: number;
  /** What this request takes of it. */
  need: number;
  /** For messages: "LLMProvider llm/glm totalTokens per 1m". */
  label: string;
  /** `provider`, or the budget id of a cap. */
  scope: string;
  /** Empty: every model. */
  model: string;
  /** Learns a lower effective amount from upstream refusals and headers (the provider's own limits). */
  adaptive: boolean;
}

export interface StoredRequest {
  /** Becomes the lease id when granted. */
  id: string;
  budget: string;
  /** Higher first within the budget; 0 (batch) only on capacity no one else asks for. */
  priority: number;
  /** The budget's share of contended capacity, its guaranteed share folded in. */
  weight: number;
  /** Virtual time the request costs its budget: its dominant share of the provider's limits. */
  cost: number;
  /** A waiter older than this goes before newer ones of higher priority in its budget. */
  agingMs: number;
  /** How adaptive limits probe back up; null when the provider does not adapt. */
  adaptation: { probeMs: number; maxProbeMs: number } | null;
  limits: LimitPlan[];
  leaseTimeoutMs: number;
  maxWaitMs: number;
  reserved: Reservation;
}

export interface StoredLease {
  id: string;
  budget: string;
  enqueuedAtMs: number;
  grantedAtMs: number;
  expiresAtMs: number;
  reserved: Reservation;
}

/** Ids of waiters granted by an operation: their owners must be told. */
export interface Granting {
  grantedIds: string[];
}

export type StoreAcquireResult = Granting &
  (
    | { kind: 'granted'; nowMs: number; lease: StoredLease; headroom: Headroom }
    | { kind: 'queued'; nowMs: number; wakeAtMs: number }
    | { kind: 'rejected'; nowMs: number; retryAtMs: number; limit: string }
  );

export type StoreSettleResult = Granting &
  (
    | { kind: 'settled' | 'alreadySettled' | 'settledAfterExpiry'; charged: Reservation; settledAtMs: number }
    | { kind: 'unknown' }
  );

export type StoreHeartbeatResult = Granting &
  ({ kind: 'extended'; expiresAtMs: number } | { kind: 'unknown' | 'expired' | 'settled' });

export type StoreWaiterResult = Granting &
  (
    | { kind: 'granted'; lease: StoredLease }
    | { kind: 'waiting'; wakeAtMs: number }
    | { kind: 'gone'; nowMs: number; retryAtMs: number; limit: string }
  );

export interface StorePumpResult extends Granting {
  nowMs: number;
  /** When time alone may let the head of the queue in (0: nothing waits on time). */
  wakeAtMs: number;
}

export interface StoreLimitUsage {
  key: string;
  used: number;
  /** After adaptation (the declared amount when nothing was learned). */
  effective: number;
}

export interface StoreUsage {
  nowMs: number;
  limits: StoreLimitUsage[];
  closedUntilMs: number;
  closedReason: string;
  inFlight: number;
  waiters: number;
  budgets: Array<{
    budget: string;
    inFlight: number;
    waiters: number;
    granted: number;
    rejected: number;
    refusals: Record<string, number>;
  }>;
}

export interface SettleCommand {
  leaseId: string;
  usage: TokenUsage;
  outcome: Outcome;
  retryAfterMs?: number | undefined;
  resetAtMs?: number | undefined;
  rateLimits?: RateLimitObservation[] | undefined;
}

/** Grants are announced to every engine sharing the store, so the one holding the waiter wakes. */
export type GrantListener = (provider: string, waiterIds: string[]) => void;

export interface LeaseStore {
  /** Grants now, queues (maxWaitMs > 0 and the deadline can be met), or rejects. */
  acquire(provider: string, request: StoredRequest): Promise<StoreAcquireResult>;
  settle(provider: string, command: SettleCommand): Promise<StoreSettleResult>;
  heartbeat(
    provider: string,
    leaseId: string,
    extendMs: number,
    usedSoFar?: TokenUsage,
  ): Promise<StoreHeartbeatResult>;
  /** Grants what fits from the head of the queue; run when time may have freed capacity. */
  pump(provider: string): Promise<StorePumpResult>;
  /** A waiter's state; a granted waiter is handed over (and forgotten) here. */
  claim(provider: string, waiterId: string): Promise<StoreWaiterResult>;
  /** Gives up a wait; returns the lease instead if it was granted meanwhile. */
  cancel(provider: string, waiterId: string): Promise<StoreWaiterResult>;
  usage(provider: string, limits: LimitPlan[]): Promise<StoreUsage>;
  /** Forgets a budget's caps and counters (a deleted LLMBudget). */
  forgetBudget(provider: string, budget: string, capKeys: string[]): Promise<void>;
  onGrant(listener: GrantListener): void;
  /** After announcements may have been missed (a lost connection): holders re-check their waiters. */
  onResync(listener: () => void): void;
  /** Resolves once the store answers. */
  ready(): Promise<void>;
  close(): Promise<void>;
}

/** What an outcome charges: an unsent call costs only its request, an unused lease nothing at all. */
export function chargeFor(dimension: Dimension, usage: TokenUsage, outcome: Outcome): number {
  if (outcome === 'unused') return 0;
  if (dimension === 'requests') return 1;
  if (outcome === 'notSent') return 0;
  switch (dimension) {
    case 'inputTokens':
      return usage.inputTokens;
    case 'outputTokens':
      return usage.outputTokens;
    case 'totalTokens':
      return usage.inputTokens + usage.outputTokens;
    default:
      return 0;
  }
}

/** What a settled lease was charged, by dimension. */
export function chargedOf(usage: TokenUsage, outcome: SettleCommand['outcome']): Reservation {
  return {
    requests: chargeFor('requests', usage, outcome),
    inputTokens: chargeFor('inputTokens', usage, outcome),
    outputTokens: chargeFor('outputTokens', usage, outcome),
    totalTokens: chargeFor('totalTokens', usage, outcome),
  };
}

/**
 * Outcomes counted per budget (the `o:` counters GetUsage reports as refusals): what the provider
 * or the call did. Not `ok`, and not `unused`: a spare lease no call took never reached anyone.
 */
export function countsAsUpstreamOutcome(outcome: Outcome): boolean {
  return outcome !== 'ok' && outcome !== 'unused';
}

/** What the adaptive limits and closures learn from: everything but a lease no call used. */
export function teachesLimits(outcome: Outcome): boolean {
  return outcome !== 'unused';
}

/**
 * A direct grant's headroom (see Headroom in common/quota-api.ts): over the request's limits, the
 * smallest free share of a limit's effective amount once the grant is counted, and how many more
 * requests of the same size would fit now. Both stores compute it in their fit check, from the
 * amounts and use it reads anyway, and round the share to millionths: the Redis script's JSON reply
 * keeps 14 significant digits, so rounding is what makes the two stores answer the same.
 */
export const HEADROOM_UNBOUNDED_REQUESTS = 1e9;
export const HEADROOM_FRACTION_STEP = 1e6;

/** Headroom with no limit counted yet: everything free. */
export function fullHeadroom(): Headroom {
  return { fraction: 1, requests: HEADROOM_UNBOUNDED_REQUESTS };
}

/** Narrows `headroom` by a limit of `amount` that holds `used` before a grant of `need`. */
export function narrowHeadroom(headroom: Headroom, amount: number, used: number, need: number): void {
  const free = Math.max(0, amount - used - need);
  const fraction = amount > 0 ? free / amount : 0;
  if (fraction < headroom.fraction) headroom.fraction = fraction;
  if (need > 0) headroom.requests = Math.min(headroom.requests, Math.floor(free / need));
}

/** The share as a store answers it: to the nearest millionth (lease-store.lua does the same). */
export function roundedHeadroom(headroom: Headroom): Headroom {
  return {
    fraction: Math.floor(headroom.fraction * HEADROOM_FRACTION_STEP + 0.5) / HEADROOM_FRACTION_STEP,
    requests: headroom.requests,
  };
}

/**
 * Expired and timed-out records are kept this long so a late settle still corrects the token
 * counts; a settled record shrinks to its answer and is kept SETTLED_GRACE_MS for repeats.
 */
export const RECORD_GRACE_MS = 10 * 60_000;
export const SETTLED_GRACE_MS = 60_000;
/** How many expired leases or records one operation cleans up at most. */
export const GC_BATCH = 200;
/** How many waiters one operation grants at most (the rest on the next). */
export const PUMP_BATCH = 64;

/** Batch (priority 0) waits in its own tier, served only when the first tier is empty. */
export function tierOf(priority: number): 0 | 1 {
  return priority <= 0 ? 1 : 0;
}

/**
 * Pacing of a provider's rate windows. A window frees capacity in the pattern it was granted in:
 * what a burst took comes back all at once one window later and goes to whoever waits at that
 * instant, so a budget whose calls are still in flight then misses it, and the shares follow how
 * many callers each budget has rather than its weight. Even for one budget, a burst given back
 * at once replays window after window, and at each replay the calls of the burst reach the
 * provider spread out by their grant-to-arrival delays, beyond the window margin for some: the
 * provider, still counting the previous burst's stragglers, refuses them.
 *
 * So requests that can wait are granted at most at the window's steady rate (its amount per
 * window, margin and bucket), in bursts of at most PACE_BURST_SHARE of the window, while the
 * window is contended: it held a request back (by its amount or its pace) within the last window
 * — then even when a burst leaving it empties it, or the burst would come back — or another
 * budget drew on it within the last window and it is more than PACE_FREE_SHARE full — before it
 * is full, or the first window would go by demand. Capacity then comes back a little at a time,
 * and fair queuing picks who gets each piece among everyone waiting. A request that cannot wait,
 * one budget using a window within what it allows, or a shared window less full than that is
 * held by the window only (no added latency without contention). Windows longer than
 * PACE_MAX_WINDOW_MS are quotas to spend, not rates to smooth: never paced.
 *
 * The pace is the time up to which the limit's steady rate has been spent (a GCRA theoretical
 * arrival time); a paced grant moves it on by its need, and settling by what the real usage
 * refunds or adds.
 */
export const PACE_FREE_SHARE = 0.25;
export const PACE_BURST_SHARE = 0.02;
export const PACE_MAX_WINDOW_MS = 60_000;

/** A provider's rate window, which pacing may apply to (a budget's cap concerns that budget alone). */
export function pacedLimit(plan: LimitPlan): boolean {
  return plan.scope === 'provider' && plan.windowMs > 0 && plan.windowMs <= PACE_MAX_WINDOW_MS;
}

/** Is a grant of `plan.need` on a window holding `total` paced, given how it is contended? */
export function pacedGrant(
  plan: LimitPlan,
  amount: number,
  total: number,
  contention: { held: boolean; shared: boolean },
): boolean {
  if (!pacedLimit(plan)) return false;
  return contention.held || (contention.shared && total + plan.need > amount * PACE_FREE_SHARE);
}

/** How long a charge stays counted at most: the window, its margin and a bucket (ms). */
export function windowSpanMs(plan: LimitPlan): number {
  return plan.windowMs + plan.marginMs + plan.bucketMs;
}

/** How long one unit of a window limit lasts at its steady rate (ms). */
export function paceIntervalMs(plan: LimitPlan, amount: number): number {
  return windowSpanMs(plan) / amount;
}

/**
 * The earliest time a paced grant may happen with the pace at `paceMs`: when the pace is no
 * further ahead than the burst (PACE_BURST_SHARE of the window, and at least one unit, so that a
 * grant made a little late, as timers are, does not lose its turn for good).
 */
export function pacedAtMs(plan: LimitPlan, amount: number, paceMs: number, nowMs: number): number {
  const interval = paceIntervalMs(plan, amount);
  const burstMs = Math.max(interval, windowSpanMs(plan) * PACE_BURST_SHARE);
  return Math.max(nowMs, paceMs - burstMs);
}

/** The pace after a grant of `plan.need` that it paces. */
export function nextPaceMs(plan: LimitPlan, amount: number, paceMs: number, nowMs: number): number {
  return Math.max(paceMs, nowMs) + plan.need * paceIntervalMs(plan, amount);
}

/** How far back a request held back, or a grant to another budget, counts for pacing. */
export function contendedSinceMs(plan: LimitPlan, nowMs: number): number {
  return nowMs - windowSpanMs(plan);
}

/** A window refusal with no stated reset closes the provider this long. */
export const DEFAULT_CLOSE_MS = 60_000;
/** Longest closure a provider's hint may impose (a bad header must not close it for days). */
export const MAX_CLOSE_MS = 7 * 86_400_000;
/** A refused rate is set this far below the count at which the provider refused. */
export const RATE_BACKOFF = 0.97;
/** Anthropic rounds token remaining values to thousands: smaller gaps are not outside use. */
export const TOKEN_HEADER_TOLERANCE = 1000;

/** The main hash's per-budget counters: in flight, waiting, granted, rejected, refusals by outcome. */
const BUDGET_COUNTER_KINDS = new Set(['bi', 'bw', 'g', 'r', 'o']);

/**
 * Per-budget figures from the store's counters, named `kind:budget` (bi in flight, bw waiting,
 * g granted, r rejected) or `o:budget:outcome` (upstream refusals); budget ids hold no colon.
 */
export function budgetCounters(counters: Iterable<[string, number]>): {
  budgets: StoreUsage['budgets'];
  inFlight: number;
} {
  const budgets = new Map<string, StoreUsage['budgets'][number]>();
  let inFlight = 0;
  for (const [field, value] of counters) {
    const [kind, budget, outcome] = field.split(':');
    // Other fields (the fair-queue finish time f:, outside use x:provider:…) are not a budget's counts.
    if (!budget || !BUDGET_COUNTER_KINDS.has(kind!)) continue;
    let entry = budgets.get(budget);
    if (!entry) {
      entry = { budget, inFlight: 0, waiters: 0, granted: 0, rejected: 0, refusals: {} };
      budgets.set(budget, entry);
    }
    if (kind === 'bi') {
      entry.inFlight = value;
      inFlight += value;
    } else if (kind === 'bw') entry.waiters = value;
    else if (kind === 'g') entry.granted = value;
    else if (kind === 'r') entry.rejected = value;
    else if (kind === 'o' && outcome) entry.refusals[outcome] = value;
  }
  return { budgets: [...budgets.values()].sort((a, b) => a.budget.localeCompare(b.budget)), inFlight };
}
