/**
 * Every request the simulated provider saw, and exact counters over all of them. The entry list
 * is capped (oldest dropped first) so a long benchmark does not grow memory without bound; the
 * counters in the summary are never capped.
 */
import type { RequestApi } from '../common/tokens/count-tokens.ts';
import type { RefusalClass } from './flavors.ts';
import type { TokenAmounts } from './limiter.ts';

export const OUTCOMES = ['inFlight', 'ok', 'refused', 'dropped', 'hung', 'aborted'] as const;
/**
 * `refused`: answered with an error (limit, fault, invalid request); `dropped`: we cut the
 * connection on purpose; `hung`: never answered until the client or server gave up; `aborted`:
 * the client went away before the response completed.
 */
export type LedgerOutcome = (typeof OUTCOMES)[number];

export interface LedgerEntry {
  id: number;
  requestId: string;
  /** Epoch ms on the provider's clock. */
  arrivalMs: number;
  completionMs: number | undefined;
  api: RequestApi | 'other';
  path: string;
  model: string;
  stream: boolean;
  /** HTTP status sent; 0 when no status line was sent (hang, drop before headers). */
  status: number;
  outcome: LedgerOutcome;
  refusal: { class: RefusalClass; code: string; limit?: string; retryAfterMs?: number } | undefined;
  /** Prompt tokens as counted at arrival. */
  promptTokens: number;
  /** What was charged at arrival (0 when refused). */
  charged: TokenAmounts;
  /** Real usage once the request completed; what the limits were corrected to. */
  usage: TokenAmounts | undefined;
}

export interface LimitSummary {
  label: string;
  amount: number;
  windowMs: number;
  /** In the window now (or in flight, for concurrency). */
  used: number;
  /** Highest window sum (or concurrency) right after an admission. */
  peak: number;
}

export interface LedgerSummary {
  total: number;
  /** Passed every limit (and so was charged). */
  admitted: number;
  ok: number;
  refused: number;
  dropped: number;
  hung: number;
  aborted: number;
  inFlight: number;
  maxInFlight: number;
  refusedByClass: Partial<Record<RefusalClass, number>>;
  refusedByCode: Record<string, number>;
  /** Sum of the real usage of completed admitted requests. */
  usage: TokenAmounts;
  limits: LimitSummary[];
}

export class Ledger {
  private list: LedgerEntry[] = [];
  private readonly capacity: number;
  private nextId = 1;
  private counts = { total: 0, admitted: 0, ok: 0, refused: 0, dropped: 0, hung: 0, aborted: 0 };
  private inFlight = 0;
  private maxInFlight = 0;
  private byClass: Partial<Record<RefusalClass, number>> = {};
  private byCode: Record<string, number> = {};
  private usage: TokenAmounts = { input: 0, output: 0 };

  constructor(capacity = 100_000) {
    this.capacity = capacity;
  }

  open(
    fields: Omit<
      LedgerEntry,
      'id' | 'requestId' | 'completionMs' | 'status' | 'outcome' | 'refusal' | 'usage' | 'charged'
    >,
  ): LedgerEntry {
    const id = this.nextId++;
    const entry: LedgerEntry = {
      id,
      requestId: `req_sim_${id}`,
      completionMs: undefined,
      status: 0,
      outcome: 'inFlight',
      refusal: undefined,
      usage: undefined,
      charged: { input: 0, output: 0 },
      ...fields,
    };
    this.counts.total++;
    this.list.push(entry);
    if (this.list.length > this.capacity * 1.25)
      this.list = this.list.slice(this.list.length - this.capacity);
    return entry;
  }

  /** The request passed every limit and now holds its charge. */
  admit(entry: LedgerEntry, charged: TokenAmounts): void {
    entry.charged = charged;
    this.counts.admitted++;
    this.inFlight++;
    if (this.inFlight > this.maxInFlight) this.maxInFlight = this.inFlight;
  }

  refuse(
    entry: LedgerEntry,
    nowMs: number,
    status: number,
    refusal: NonNullable<LedgerEntry['refusal']>,
  ): void {
    entry.status = status;
    entry.refusal = refusal;
    entry.outcome = 'refused';
    entry.completionMs = nowMs;
    this.counts.refused++;
    this.byClass[refusal.class] = (this.byClass[refusal.class] ?? 0) + 1;
    this.byCode[refusal.code] = (this.byCode[refusal.code] ?? 0) + 1;
  }

  /** An admitted request ended (normally or not) with `usage`. */
  finish(
    entry: LedgerEntry,
    nowMs: number,
    outcome: Exclude<LedgerOutcome, 'inFlight' | 'refused'>,
    usage: TokenAmounts,
  ): void {
    if (entry.outcome !== 'inFlight') return;
    entry.outcome = outcome;
    entry.completionMs = nowMs;
    entry.usage = usage;
    this.counts[outcome]++;
    this.inFlight--;
    this.usage.input += usage.input;
    this.usage.output += usage.output;
  }

  /** Entries still held, oldest first; only those with `id > sinceId` when given. */
  entries(sinceId = 0): LedgerEntry[] {
    if (sinceId <= 0) return [...this.list];
    const first = this.list.findIndex((entry) => entry.id > sinceId);
    return first < 0 ? [] : this.list.slice(first);
  }

  summary(limits: LimitSummary[]): LedgerSummary {
    return {
      ...this.counts,
      inFlight: this.inFlight,
      maxInFlight: this.maxInFlight,
      refusedByClass: { ...this.byClass },
      refusedByCode: { ...this.byCode },
      usage: { ...this.usage },
      limits,
    };
  }
}
