/**
 * The simulated provider's limits, enforced exactly.
 *
 * Charging semantics (as OpenAI documents for TPM, and Anthropic for OTPM):
 * - At arrival a request is charged, at its arrival time, 1 request, `promptTokens` input tokens
 *   and `maxOutput` output tokens (the request's max tokens, or the configured default).
 * - When its response completes (or the client goes away), the token charges are corrected, still
 *   at the arrival time, to the real usage. Generated output never exceeds `maxOutput`, so
 *   corrections only lower amounts and cannot break a window's guarantee.
 * - Concurrency: a request holds a slot from arrival until its response completes, including the
 *   whole stream.
 * - A refused request consumes nothing: it is not counted toward any window or slot. (OpenAI counts
 *   failed requests toward per-minute limits; keeping refusals free makes "admitted <= limit" the
 *   only invariant tests need to check.)
 * - A request whose own charge exceeds a limit's amount is refused as too large.
 */
import type { Dimension, Limit } from '../common/budgets/types.ts';
import { parseDuration } from '../common/duration.ts';
import { SlidingWindowLog } from './sliding-window.ts';

export interface TokenAmounts {
  input: number;
  output: number;
}

/** One configured limit with its live state. */
export interface LimitState {
  /** `requests/1m`, `totalTokens/1m@glm-4.6`, `concurrency`: stable key and ledger label. */
  readonly label: string;
  readonly dimension: Dimension;
  amount: number;
  /** 0 for concurrency. */
  readonly windowMs: number;
  readonly model: string | undefined;
  readonly log: SlidingWindowLog | undefined;
  inFlight: number;
  /** The highest window sum (or concurrency) right after an admission. */
  peak: number;
}

export interface Ticket {
  readonly model: string;
  readonly charged: TokenAmounts;
  readonly entries: Array<{ limit: LimitState; seq: number }>;
  readonly slots: LimitState[];
  done: boolean;
}

export interface LimitRefusal {
  /** `tooLarge`: the request alone exceeds the limit, retrying cannot help. */
  reason: 'limit' | 'tooLarge';
  limit: LimitState;
  /** What this request needed of the limit. */
  requested: number;
  /** What the window (or concurrency) held at arrival. */
  used: number;
  /** When enough capacity is back; 0 for concurrency (unknown: when some request completes). */
  retryAfterMs: number;
}

export type Admission = { ok: true; ticket: Ticket } | { ok: false; refusal: LimitRefusal };

/** Current state of one limit for rate-limit headers. */
export interface LimitReading {
  limit: LimitState;
  used: number;
  remaining: number;
  /** Until the window is empty again (every current entry aged out). */
  resetMs: number;
}

export function limitLabel(limit: Pick<Limit, 'dimension' | 'window' | 'model'>): string {
  const base = limit.dimension === 'concurrency' ? 'concurrency' : `${limit.dimension}/${limit.window ?? ''}`;
  return limit.model ? `${base}@${limit.model}` : base;
}

function amountOf(dimension: Dimension, charge: TokenAmounts): number {
  switch (dimension) {
    case 'requests':
    case 'concurrency':
      return 1;
    case 'inputTokens':
      return charge.input;
    case 'outputTokens':
      return charge.output;
    case 'totalTokens':
      return charge.input + charge.output;
  }
}

export class Limiter {
  private limits: LimitState[] = [];
  private byModel = new Map<string, LimitState[]>();

  constructor(limits: readonly Limit[] = []) {
    this.setLimits(limits);
  }

  /**
   * Replaces the configured limits. A limit with the same dimension, window and model keeps its
   * log, in-flight count and peak (only its amount changes), so in-flight tickets stay valid.
   */
  setLimits(limits: readonly Limit[]): void {
    const previous = new Map(this.limits.map((limit) => [limit.label, limit]));
    this.limits = limits.map((limit) => {
      const label = limitLabel(limit);
      const kept = previous.get(label);
      if (kept) {
        kept.amount = limit.amount;
        return kept;
      }
      const windowMs = limit.window === undefined ? 0 : parseDuration(limit.window)!;
      return {
        label,
        dimension: limit.dimension,
        amount: limit.amount,
        windowMs,
        model: limit.model,
        log: limit.dimension === 'concurrency' ? undefined : new SlidingWindowLog(windowMs),
        inFlight: 0,
        peak: 0,
      };
    });
    this.byModel.clear();
  }

  /** Forgets all usage (windows, slots, peaks). */
  reset(): void {
    const limits = this.limits.map((limit) => ({
      dimension: limit.dimension,
      amount: limit.amount,
      window: limit.windowMs ? `${limit.windowMs}ms` : undefined,
      model: limit.model,
    }));
    this.limits = [];
    this.setLimits(limits);
  }

  all(): readonly LimitState[] {
    return this.limits;
  }

  /** The limits that apply to `model` (every model-less limit plus that model's own). */
  applicable(model: string): LimitState[] {
    let list = this.byModel.get(model);
    if (!list) {
      list = this.limits.filter((limit) => limit.model === undefined || limit.model === model);
      // Bounded: a client sending random model names must not grow this forever.
      if (this.byModel.size > 10_000) this.byModel.clear();
      this.byModel.set(model, list);
    }
    return list;
  }

  /** Admits and charges a request at `now`, or says which limit refuses it. Refusals charge nothing. */
  admit(now: number, model: string, charge: TokenAmounts): Admission {
    const limits = this.applicable(model);
    let refusal: LimitRefusal | undefined;
    for (const limit of limits) {
      const requested = amountOf(limit.dimension, charge);
      if (requested > limit.amount) {
        const used = limit.log ? limit.log.used(now) : limit.inFlight;
        return { ok: false, refusal: { reason: 'tooLarge', limit, requested, used, retryAfterMs: Infinity } };
      }
    }
    for (const limit of limits) {
      if (limit.log) continue;
      if (limit.inFlight + 1 > limit.amount) {
        return {
          ok: false,
          refusal: { reason: 'limit', limit, requested: 1, used: limit.inFlight, retryAfterMs: 0 },
        };
      }
    }
    for (const limit of limits) {
      if (!limit.log) continue;
      const requested = amountOf(limit.dimension, charge);
      const wait = limit.log.waitFor(now, requested, limit.amount);
      // Report the limit that keeps the request out the longest: that is when a retry can succeed.
      if (wait > 0 && (!refusal || wait > refusal.retryAfterMs)) {
        refusal = { reason: 'limit', limit, requested, used: limit.log.used(now), retryAfterMs: wait };
      }
    }
    if (refusal) return { ok: false, refusal };

    const entries: Ticket['entries'] = [];
    const slots: LimitState[] = [];
    for (const limit of limits) {
      if (limit.log) {
        const amount = amountOf(limit.dimension, charge);
        entries.push({ limit, seq: limit.log.add(now, amount) });
        const used = limit.log.used(now);
        if (used > limit.peak) limit.peak = used;
      } else {
        limit.inFlight++;
        if (limit.inFlight > limit.peak) limit.peak = limit.inFlight;
        slots.push(limit);
      }
    }
    return { ok: true, ticket: { model, charged: { ...charge }, entries, slots, done: false } };
  }

  /** Corrects the ticket's token charges to `usage` and frees its concurrency slots (once). */
  complete(ticket: Ticket, usage: TokenAmounts): void {
    if (ticket.done) return;
    ticket.done = true;
    for (const { limit, seq } of ticket.entries) {
      if (limit.dimension !== 'requests') limit.log!.correct(seq, amountOf(limit.dimension, usage));
    }
    for (const limit of ticket.slots) limit.inFlight--;
  }

  /** Current use of each limit that applies to `model`, for rate-limit headers. */
  read(now: number, model: string): LimitReading[] {
    return this.applicable(model).map((limit) => {
      const used = limit.log ? limit.log.used(now) : limit.inFlight;
      return {
        limit,
        used,
        remaining: Math.max(0, limit.amount - used),
        resetMs: limit.log ? limit.log.drainMs(now) : 0,
      };
    });
  }
}
