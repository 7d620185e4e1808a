/**
 * The lease store in process memory: the embedded default, and the reference semantics that the
 * Redis store's Lua script mirrors structure for structure (see store.ts for the model). Both
 * pass engine-conformance.ts.
 */
import { ChurnMap } from '../../../common/churn-map.ts';
import type { Headroom, RateLimitObservation, Reservation, TokenUsage } from '../../../common/quota-api.ts';
import {
  budgetCounters,
  chargeFor,
  chargedOf,
  countsAsUpstreamOutcome,
  DEFAULT_CLOSE_MS,
  fullHeadroom,
  GC_BATCH,
  MAX_CLOSE_MS,
  narrowHeadroom,
  pacedAtMs,
  pacedGrant,
  pacedLimit,
  paceIntervalMs,
  nextPaceMs,
  contendedSinceMs,
  PUMP_BATCH,
  RATE_BACKOFF,
  RECORD_GRACE_MS,
  roundedHeadroom,
  SETTLED_GRACE_MS,
  teachesLimits,
  tierOf,
  TOKEN_HEADER_TOLERANCE,
  windowSpanMs,
  type GrantListener,
  type LeaseStore,
  type LimitPlan,
  type SettleCommand,
  type StoreAcquireResult,
  type StoredLease,
  type StoredRequest,
  type StoreHeartbeatResult,
  type StorePumpResult,
  type StoreSettleResult,
  type StoreUsage,
  type StoreWaiterResult,
} from './store.ts';

interface WindowState {
  total: number;
  floor: number;
  buckets: Map<number, number>;
}

interface WindowCharge {
  key: string;
  dimension: LimitPlan['dimension'];
  bucket: number;
  charged: number;
  /** The window's total just before this grant (what the provider may have refused at). */
  before: number;
  /** The grant advanced the limit's pace (so a correction of the charge moves the pace too). */
  paced: boolean;
}

interface SlotCharge {
  key: string;
}

type RecordState = 'waiting' | 'timedOut' | 'active' | 'expired' | 'settled';

interface LeaseRecord {
  request: StoredRequest;
  state: RecordState;
  enqueuedAtMs: number;
  deadlineMs: number;
  grantedAtMs: number;
  expiresAtMs: number;
  /** Granted from the queue and not yet handed to its owner. */
  unclaimed: boolean;
  windows: WindowCharge[];
  slots: SlotCharge[];
  charged: Reservation;
  settledAtMs: number;
}

interface QueueEntry {
  id: string;
  score: number;
}

/** One budget's waiters in one tier: by priority (then arrival), and by arrival for aging. */
interface BudgetQueue {
  byPriority: QueueEntry[];
  byAge: QueueEntry[];
}

interface Adapted {
  effective: number;
  changedAt: number;
  probeMs: number;
  lastProbeAt: number;
  /** When it was last lowered (probes up do not count). */
  loweredAt: number;
}

interface ProviderState {
  seq: number;
  windows: Map<string, WindowState>;
  /** Per paced window limit: the time its steady rate has been spent up to. */
  pacing: Map<string, number>;
  /** The last grant's budget and time, and the last one of any other budget (for pacing). */
  lastGrants: Array<{ budget: string; atMs: number }>;
  /** Per paced window limit: when it last held a request back (by its amount or its pace). */
  heldAt: Map<string, number>;
  concurrency: Map<string, number>;
  /** One entry per lease or waiter, most of them gone in milliseconds: see ChurnMap. */
  records: ChurnMap<string, LeaseRecord>;
  /**
   * Settled leases shrink to their answer (a repeated settle gets it), kept SETTLED_GRACE_MS in
   * the order settled: that order is the order to forget them in, so no second map says when.
   */
  settled: Map<string, { charged: Reservation; settledAtMs: number }>;
  /** Active leases by expiry. */
  expiries: ChurnMap<string, number>;
  /** Records to forget, by when: expired and waiting ones. */
  forgetAt: ChurnMap<string, number>;
  /** Per tier: budgets with waiters, by the virtual start time of their next request. */
  tiers: [QueueEntry[], QueueEntry[]];
  queues: [Map<string, BudgetQueue>, Map<string, BudgetQueue>];
  waiting: number;
  /** Virtual time, and each budget's virtual finish time (start-time fair queuing). */
  virtualTime: number;
  finishTags: Map<string, number>;
  closedUntil: number;
  closedReason: string;
  adapted: Map<string, Adapted>;
  counters: Map<string, number>;
}

interface Fit {
  fits: boolean;
  /** Earliest time this request alone could fit, ignoring the queue (Infinity: never by time). */
  atMs: number;
  /** Blocked by a concurrency limit (frees on settle or expiry, not on a schedule). */
  concurrencyBound: boolean;
  limit: string;
  /** What a grant now would leave free (meaningful only when it fits). */
  headroom: Headroom;
}

export interface MemoryStoreOptions {
  clock?: (() => number) | undefined;
}

export function windowStart(plan: LimitPlan, nowMs: number): number {
  return Math.floor((nowMs - plan.windowMs - plan.marginMs) / plan.bucketMs);
}

/** Queue-bound and concurrency-bound waits have no schedule: hint a short retry. */
const UNSCHEDULED_RETRY_MS = 250;

export class MemoryLeaseStore implements LeaseStore {
  readonly #clock: () => number;
  readonly #providers = new Map<string, ProviderState>();
  readonly #listeners: GrantListener[] = [];

  constructor(options: MemoryStoreOptions = {}) {
    this.#clock = options.clock ?? Date.now;
  }

  async ready(): Promise<void> {}
  async close(): Promise<void> {}

  onGrant(listener: GrantListener): void {
    this.#listeners.push(listener);
  }

  /** In one process nothing is ever missed. */
  onResync(): void {}

  async acquire(provider: string, request: StoredRequest): Promise<StoreAcquireResult> {
    const { state, now, grantedIds } = this.#begin(provider);
    try {
      this.#pump(state, now, grantedIds);
      const tier = tierOf(request.priority);
      const ahead = state.tiers[0].length + (tier === 1 ? state.tiers[1].length : 0);
      const closed = state.closedUntil > now;
      // A request that cannot wait takes what the windows hold; pacing orders those who wait.
      const fit = this.#fit(state, request, now, request.maxWaitMs > 0);
      if (ahead === 0 && !closed && fit.fits) {
        const record = this.#newRecord(request, now, now);
        state.records.set(request.id, record);
        this.#grant(state, record, now, false);
        return {
          kind: 'granted',
          nowMs: now,
          lease: leaseOf(record),
          headroom: roundedHeadroom(fit.headroom),
          grantedIds,
        };
      }
      let retryAtMs = retryAt(fit, now);
      let limit = fit.limit;
      if (closed && state.closedUntil >= fit.atMs) {
        retryAtMs = state.closedUntil;
        limit = `closed: ${state.closedReason}`;
      }
      const earliest = Math.max(fit.atMs, closed ? state.closedUntil : now);
      if (request.maxWaitMs <= 0 || earliest > now + request.maxWaitMs) {
        this.#count(state, `r:${request.budget}`, 1);
        return { kind: 'rejected', nowMs: now, retryAtMs, limit, grantedIds };
      }
      state.seq += 1;
      const record = this.#newRecord(request, now, now + request.maxWaitMs);
      state.records.set(request.id, record);
      setInOrder(state.forgetAt, request.id, record.deadlineMs + RECORD_GRACE_MS);
      this.#enqueue(state, record, state.seq);
      this.#count(state, `bw:${request.budget}`, 1);
      const wakeAtMs = this.#pump(state, now, grantedIds);
      return {
        kind: 'queued',
        nowMs: now,
        wakeAtMs: Math.min(wakeAtMs || Infinity, record.deadlineMs),
        grantedIds,
      };
    } finally {
      this.#announce(provider, grantedIds);
    }
  }

  async settle(provider: string, command: SettleCommand): Promise<StoreSettleResult> {
    const { state, now, grantedIds } = this.#begin(provider);
    try {
      const done = state.settled.get(command.leaseId);
      if (done) return { kind: 'alreadySettled', ...done, grantedIds };
      const record = state.records.get(command.leaseId);
      if (
        !record ||
        record.state === 'waiting' ||
        record.state === 'timedOut' ||
        record.state === 'settled'
      ) {
        return { kind: 'unknown', grantedIds };
      }
      for (const charge of record.windows) {
        this.#recharge(
          state,
          charge,
          chargeFor(charge.dimension, command.usage, command.outcome),
          now,
          record.request,
        );
      }
      const wasActive = record.state === 'active';
      if (wasActive) this.#release(state, record);
      record.state = 'settled';
      record.charged = chargedOf(command.usage, command.outcome);
      record.settledAtMs = now;
      state.forgetAt.delete(command.leaseId);
      if (countsAsUpstreamOutcome(command.outcome))
        this.#count(state, `o:${record.request.budget}:${command.outcome}`, 1);
      if (teachesLimits(command.outcome)) this.#adapt(state, record, command, now);
      // Only the answer to a repeated settle is kept.
      state.records.delete(command.leaseId);
      state.settled.set(command.leaseId, { charged: record.charged, settledAtMs: now });
      this.#pump(state, now, grantedIds);
      return {
        kind: wasActive ? 'settled' : 'settledAfterExpiry',
        charged: record.charged,
        settledAtMs: now,
        grantedIds,
      };
    } finally {
      this.#announce(provider, grantedIds);
    }
  }

  async heartbeat(
    provider: string,
    leaseId: string,
    extendMs: number,
    usedSoFar?: TokenUsage,
  ): Promise<StoreHeartbeatResult> {
    const { state, now, grantedIds } = this.#begin(provider);
    try {
      if (state.settled.has(leaseId)) return { kind: 'settled', grantedIds };
      const record = state.records.get(leaseId);
      if (!record || record.state === 'waiting' || record.state === 'timedOut') {
        return { kind: 'unknown', grantedIds };
      }
      if (record.state === 'expired') return { kind: 'expired', grantedIds };
      if (record.state === 'settled') return { kind: 'settled', grantedIds };
      if (usedSoFar) {
        for (const charge of record.windows) {
          const used = chargeFor(charge.dimension, usedSoFar, 'ok');
          if (used > charge.charged) this.#recharge(state, charge, used, now, record.request);
        }
      }
      record.expiresAtMs = now + extendMs;
      setInOrder(state.expiries, leaseId, record.expiresAtMs);
      return { kind: 'extended', expiresAtMs: record.expiresAtMs, grantedIds };
    } finally {
      this.#announce(provider, grantedIds);
    }
  }

  async pump(provider: string): Promise<StorePumpResult> {
    const { state, now, grantedIds } = this.#begin(provider);
    try {
      return { nowMs: now, wakeAtMs: this.#pump(state, now, grantedIds), grantedIds };
    } finally {
      this.#announce(provider, grantedIds);
    }
  }

  async claim(provider: string, waiterId: string): Promise<StoreWaiterResult> {
    return this.#handOver(provider, waiterId, false);
  }

  async cancel(provider: string, waiterId: string): Promise<StoreWaiterResult> {
    return this.#handOver(provider, waiterId, true);
  }

  async usage(provider: string, limits: LimitPlan[]): Promise<StoreUsage> {
    const { state, now, grantedIds } = this.#begin(provider);
    this.#announce(provider, grantedIds);
    const { budgets, inFlight } = budgetCounters(state.counters);
    const closed = state.closedUntil > now;
    return {
      nowMs: now,
      limits: limits.map((plan) => ({
        key: plan.key,
        used:
          plan.windowMs > 0 ? this.#window(state, plan, now).total : (state.concurrency.get(plan.key) ?? 0),
        effective: this.#amount(state, plan),
      })),
      closedUntilMs: closed ? state.closedUntil : 0,
      closedReason: closed ? state.closedReason : '',
      inFlight,
      waiters: state.waiting,
      budgets,
    };
  }

  async forgetBudget(provider: string, budget: string, capKeys: string[]): Promise<void> {
    const state = this.#providers.get(provider);
    if (!state) return;
    for (const key of capKeys) {
      state.windows.delete(key);
      state.concurrency.delete(key);
    }
    state.finishTags.delete(budget);
    for (const field of [...state.counters.keys()]) {
      if (splitCounter(field)[1] === budget) state.counters.delete(field);
    }
  }

  // --- internals -------------------------------------------------------------------------

  #begin(provider: string): { state: ProviderState; now: number; grantedIds: string[] } {
    let state = this.#providers.get(provider);
    if (!state) {
      state = {
        seq: 0,
        windows: new Map(),
        pacing: new Map(),
        lastGrants: [],
        heldAt: new Map(),
        concurrency: new Map(),
        records: new ChurnMap(),
        settled: new Map(),
        expiries: new ChurnMap(),
        forgetAt: new ChurnMap(),
        tiers: [[], []],
        queues: [new Map(), new Map()],
        waiting: 0,
        virtualTime: 0,
        finishTags: new Map(),
        closedUntil: 0,
        closedReason: '',
        adapted: new Map(),
        counters: new Map(),
      };
      this.#providers.set(provider, state);
    }
    const now = this.#clock();
    this.#collect(state, now);
    return { state, now, grantedIds: [] };
  }

  #announce(provider: string, grantedIds: string[]): void {
    if (grantedIds.length === 0) return;
    for (const listener of this.#listeners) listener(provider, grantedIds);
  }

  /** Expires leases past their time and forgets old records; bounded per operation. */
  #collect(state: ProviderState, now: number): void {
    // Every map scanned is in time order (entries are re-inserted when their time changes), so each
    // scan stops at the first entry not yet due.
    let budget = GC_BATCH;
    for (const [id, expiresAt] of state.expiries) {
      if (budget-- <= 0 || expiresAt > now) break;
      const record = state.records.get(id);
      if (record) {
        this.#release(state, record);
        record.state = 'expired';
        record.unclaimed = false;
        setInOrder(state.forgetAt, id, now + RECORD_GRACE_MS);
      } else state.expiries.delete(id);
    }
    budget = GC_BATCH;
    for (const [id, at] of state.forgetAt) {
      if (budget-- <= 0 || at > now) break;
      state.forgetAt.delete(id);
      const record = state.records.get(id);
      if (record && record.state !== 'active') {
        if (record.state === 'waiting') this.#dequeue(state, record);
        state.records.delete(id);
      }
    }
    budget = GC_BATCH;
    for (const [id, answer] of state.settled) {
      if (budget-- <= 0 || answer.settledAtMs + SETTLED_GRACE_MS > now) break;
      state.settled.delete(id);
    }
  }

  #window(state: ProviderState, plan: LimitPlan, now: number): WindowState {
    let window = state.windows.get(plan.key);
    const start = windowStart(plan, now);
    if (!window) {
      window = { total: 0, floor: start, buckets: new Map() };
      state.windows.set(plan.key, window);
    }
    if (window.floor < start) {
      for (const [index, amount] of window.buckets) {
        if (index < start) {
          window.total -= amount;
          window.buckets.delete(index);
        }
      }
      window.floor = start;
      if (window.buckets.size === 0) window.total = 0;
    }
    return window;
  }

  /** The amount in force: the declared one, or less if adaptation learned less. */
  #amount(state: ProviderState, plan: LimitPlan): number {
    const adapted = state.adapted.get(plan.key);
    return adapted ? Math.min(plan.amount, adapted.effective) : plan.amount;
  }

  /** Also notes the paced window limits that hold the request back (they are contended). */
  #fit(state: ProviderState, request: StoredRequest, now: number, pace: boolean): Fit {
    const fit: Fit = {
      fits: true,
      atMs: now,
      concurrencyBound: false,
      limit: '',
      headroom: fullHeadroom(),
    };
    for (const plan of request.limits) {
      const amount = this.#amount(state, plan);
      if (plan.windowMs === 0) {
        const inUse = state.concurrency.get(plan.key) ?? 0;
        narrowHeadroom(fit.headroom, amount, inUse, plan.need);
        if (inUse + plan.need > amount) {
          fit.fits = false;
          fit.concurrencyBound = true;
          if (fit.limit === '') fit.limit = plan.label;
        }
        continue;
      }
      const window = this.#window(state, plan, now);
      narrowHeadroom(fit.headroom, amount, window.total, plan.need);
      const excess = window.total + plan.need - amount;
      if (excess <= 0) {
        if (!pace || !this.#paced(state, request, plan, amount, window.total, now)) continue;
        const at = pacedAtMs(plan, amount, state.pacing.get(plan.key) ?? 0, now);
        if (at <= now) continue;
        fit.fits = false;
        state.heldAt.set(plan.key, now);
        holdUntil(fit, at, plan.label);
        continue;
      }
      fit.fits = false;
      if (pacedLimit(plan)) state.heldAt.set(plan.key, now);
      let freed = 0;
      let at = Infinity;
      for (const index of [...window.buckets.keys()].sort((a, b) => a - b)) {
        freed += window.buckets.get(index)!;
        if (freed >= excess) {
          at = (index + 1) * plan.bucketMs + plan.windowMs + plan.marginMs;
          break;
        }
      }
      holdUntil(fit, at, plan.label);
    }
    return fit;
  }

  #newRecord(request: StoredRequest, now: number, deadlineMs: number): LeaseRecord {
    return {
      request,
      state: 'waiting',
      enqueuedAtMs: now,
      deadlineMs,
      grantedAtMs: 0,
      expiresAtMs: 0,
      unclaimed: false,
      windows: [],
      slots: [],
      charged: request.reserved,
      settledAtMs: 0,
    };
  }

  #grant(state: ProviderState, record: LeaseRecord, now: number, unclaimed: boolean): void {
    const request = record.request;
    for (const plan of request.limits) {
      if (plan.windowMs === 0) {
        const inUse = (state.concurrency.get(plan.key) ?? 0) + plan.need;
        state.concurrency.set(plan.key, inUse);
        record.slots.push({ key: plan.key });
        continue;
      }
      const window = this.#window(state, plan, now);
      const bucket = Math.floor(now / plan.bucketMs);
      const amount = this.#amount(state, plan);
      const pacing = this.#paced(state, request, plan, amount, window.total, now);
      if (pacing) {
        const pace = state.pacing.get(plan.key) ?? 0;
        state.pacing.set(plan.key, nextPaceMs(plan, amount, pace, now));
      }
      record.windows.push({
        key: plan.key,
        dimension: plan.dimension,
        bucket,
        charged: plan.need,
        before: window.total,
        paced: pacing,
      });
      window.buckets.set(bucket, (window.buckets.get(bucket) ?? 0) + plan.need);
      window.total += plan.need;
    }
    if (request.limits.some(pacedLimit)) this.#noteGrant(state, request.budget, now);
    // Start-time fair queuing: the budget's next request starts where this one finishes.
    const start = Math.max(state.virtualTime, state.finishTags.get(request.budget) ?? 0);
    state.finishTags.set(request.budget, start + request.cost / request.weight);
    state.virtualTime = Math.max(state.virtualTime, start);
    for (const tier of [0, 1] as const) this.#retag(state, tier, request.budget);
    record.state = 'active';
    record.unclaimed = unclaimed;
    record.grantedAtMs = now;
    record.expiresAtMs = now + request.leaseTimeoutMs;
    setInOrder(state.expiries, request.id, record.expiresAtMs);
    state.forgetAt.delete(request.id);
    this.#count(state, `bi:${request.budget}`, 1);
    this.#count(state, `g:${request.budget}`, 1);
  }

  /** Keeps the last grant's budget and time, and the last one of any other budget. */
  #noteGrant(state: ProviderState, budget: string, now: number): void {
    const [last] = state.lastGrants;
    if (last?.budget === budget) last.atMs = now;
    else state.lastGrants = [{ budget, atMs: now }, ...(last ? [last] : [])];
  }

  /** Is this grant paced: the window held a request back lately, or is shared lately and filling? */
  #paced(
    state: ProviderState,
    request: StoredRequest,
    plan: LimitPlan,
    amount: number,
    total: number,
    now: number,
  ): boolean {
    const since = contendedSinceMs(plan, now);
    const other = state.lastGrants.find((last) => last.budget !== request.budget);
    return pacedGrant(plan, amount, total, {
      held: (state.heldAt.get(plan.key) ?? -Infinity) >= since,
      shared: other !== undefined && other.atMs >= since,
    });
  }

  /** Frees a lease's slots (on settle or expiry). */
  #release(state: ProviderState, record: LeaseRecord): void {
    for (const { key } of record.slots) {
      state.concurrency.set(key, Math.max(0, (state.concurrency.get(key) ?? 0) - 1));
    }
    state.expiries.delete(record.request.id);
    this.#count(state, `bi:${record.request.budget}`, -1);
  }

  /** Moves a window charge to `amount`, in the bucket where it was made, if still counted. */
  #recharge(
    state: ProviderState,
    charge: WindowCharge,
    amount: number,
    now: number,
    request: StoredRequest,
  ): void {
    const plan = request.limits.find((limit) => limit.key === charge.key);
    const delta = amount - charge.charged;
    charge.charged = amount;
    if (!plan || delta === 0) return;
    const pace = state.pacing.get(plan.key);
    if (charge.paced && pace !== undefined) {
      state.pacing.set(plan.key, pace + delta * paceIntervalMs(plan, this.#amount(state, plan)));
    }
    const window = this.#window(state, plan, now);
    if (charge.bucket < window.floor) return;
    const current = window.buckets.get(charge.bucket) ?? 0;
    const next = Math.max(0, current + delta);
    window.buckets.set(charge.bucket, next);
    window.total += next - current;
  }

  // --- the queue -------------------------------------------------------------------------

  #enqueue(state: ProviderState, record: LeaseRecord, seq: number): void {
    const request = record.request;
    const tier = tierOf(request.priority);
    let queue = state.queues[tier].get(request.budget);
    if (!queue) {
      queue = { byPriority: [], byAge: [] };
      state.queues[tier].set(request.budget, queue);
    }
    insertSorted(queue.byPriority, { id: request.id, score: -request.priority * 1e12 + seq });
    queue.byAge.push({ id: request.id, score: record.enqueuedAtMs });
    state.waiting += 1;
    this.#retag(state, tier, request.budget);
  }

  #dequeue(state: ProviderState, record: LeaseRecord): void {
    const request = record.request;
    const tier = tierOf(request.priority);
    const queue = state.queues[tier].get(request.budget);
    if (!queue || !removeEntry(queue.byPriority, request.id)) return;
    removeEntry(queue.byAge, request.id);
    state.waiting -= 1;
    this.#count(state, `bw:${request.budget}`, -1);
    if (queue.byPriority.length === 0) state.queues[tier].delete(request.budget);
    this.#retag(state, tier, request.budget);
  }

  /** A budget's place in its tier: the virtual start time of its next request. */
  #retag(state: ProviderState, tier: 0 | 1, budget: string): void {
    const order = state.tiers[tier];
    removeEntry(order, budget);
    if (!state.queues[tier].has(budget)) return;
    insertSorted(order, {
      id: budget,
      score: Math.max(state.virtualTime, state.finishTags.get(budget) ?? 0),
    });
  }

  /** The next waiter in grant order: first tier first, fairest budget, then priority with aging. */
  #head(state: ProviderState, now: number): LeaseRecord | undefined {
    for (const tier of [0, 1] as const) {
      const budget = state.tiers[tier][0];
      if (!budget) continue;
      const queue = state.queues[tier].get(budget.id)!;
      const oldest = queue.byAge[0]!;
      const oldestRecord = state.records.get(oldest.id);
      const aged = oldestRecord !== undefined && now - oldest.score >= oldestRecord.request.agingMs;
      const id = aged ? oldest.id : queue.byPriority[0]!.id;
      const record = state.records.get(id);
      if (record) return record;
      // A record forgotten while queued cannot happen (records outlive their deadline), but a
      // missing one must not wedge the queue.
      removeEntry(queue.byPriority, id);
      removeEntry(queue.byAge, id);
      state.waiting -= 1;
      if (queue.byPriority.length === 0) state.queues[tier].delete(budget.id);
      this.#retag(state, tier, budget.id);
      return this.#head(state, now);
    }
    return undefined;
  }

  /** Grants from the head of the queue; returns when time alone may admit the head (0: never). */
  #pump(state: ProviderState, now: number, grantedIds: string[]): number {
    if (state.waiting === 0) return 0;
    if (state.closedUntil > now) return state.closedUntil;
    for (let round = 0; round < PUMP_BATCH; round++) {
      const record = this.#head(state, now);
      if (!record) return 0;
      if (record.deadlineMs <= now) {
        this.#dequeue(state, record);
        record.state = 'timedOut';
        continue;
      }
      const fit = this.#fit(state, record.request, now, true);
      if (!fit.fits) {
        let wake = record.deadlineMs;
        if (fit.atMs > now && fit.atMs < wake) wake = fit.atMs;
        if (fit.concurrencyBound) {
          const nextExpiry = state.expiries.values().next();
          if (!nextExpiry.done) wake = Math.min(wake, nextExpiry.value);
        }
        return wake;
      }
      this.#dequeue(state, record);
      this.#grant(state, record, now, true);
      grantedIds.push(record.request.id);
    }
    return now;
  }

  async #handOver(provider: string, waiterId: string, cancel: boolean): Promise<StoreWaiterResult> {
    const { state, now, grantedIds } = this.#begin(provider);
    try {
      const record = state.records.get(waiterId);
      if (record?.state === 'active' && record.unclaimed) {
        record.unclaimed = false;
        return { kind: 'granted', lease: leaseOf(record), grantedIds };
      }
      if (record?.state === 'waiting' && !cancel) {
        return {
          kind: 'waiting',
          wakeAtMs: this.#pump(state, now, grantedIds) || record.deadlineMs,
          grantedIds,
        };
      }
      if (record?.state === 'waiting') {
        this.#dequeue(state, record);
        record.state = 'timedOut';
        this.#pump(state, now, grantedIds);
      }
      if (record) this.#count(state, `r:${record.request.budget}`, 1);
      let retryAtMs = now + UNSCHEDULED_RETRY_MS;
      let limit = '';
      if (record) {
        const fit = this.#fit(state, record.request, now, true);
        retryAtMs = retryAt(fit, now);
        limit = fit.limit;
        if (state.closedUntil > now && state.closedUntil >= fit.atMs) {
          retryAtMs = state.closedUntil;
          limit = `closed: ${state.closedReason}`;
        }
      }
      return { kind: 'gone', nowMs: now, retryAtMs, limit, grantedIds };
    } finally {
      this.#announce(provider, grantedIds);
    }
  }

  // --- adaptation --------------------------------------------------------------------------

  /** What a settled call teaches: closures, lower limits after refusals, probes after successes. */
  #adapt(state: ProviderState, record: LeaseRecord, command: SettleCommand, now: number): void {
    const request = record.request;
    const plans = new Map(request.limits.map((plan) => [plan.key, plan]));
    let closeUntil = 0;
    if (command.outcome === 'refusedWindow') {
      closeUntil =
        command.resetAtMs && command.resetAtMs > now
          ? command.resetAtMs
          : now + (command.retryAfterMs ?? DEFAULT_CLOSE_MS);
    } else if (
      (command.outcome === 'refusedRate' || command.outcome === 'refusedConcurrency') &&
      command.retryAfterMs
    ) {
      closeUntil = now + command.retryAfterMs;
    }
    closeUntil = Math.min(closeUntil, now + MAX_CLOSE_MS);
    if (closeUntil > state.closedUntil) {
      state.closedUntil = closeUntil;
      state.closedReason = `${command.outcome} from the provider`;
    }
    const adaptation = request.adaptation;
    if (!adaptation) return;
    if (command.outcome === 'refusedConcurrency') {
      for (const slot of record.slots) {
        const plan = plans.get(slot.key);
        // The provider refused because the account's other calls filled it: the slots still in
        // use once this one is freed bound that from above, whatever order calls reached it in.
        if (plan?.adaptive) {
          const inUse = state.concurrency.get(slot.key) ?? 0;
          this.#lower(state, plan, Math.max(1, inUse), now, adaptation);
        }
      }
    } else if (command.outcome === 'refusedRate') {
      // The window nearest its limit at grant is the one the provider most likely refused.
      let worst: { plan: LimitPlan; charge: WindowCharge; ratio: number } | undefined;
      for (const charge of record.windows) {
        const plan = plans.get(charge.key);
        if (!plan?.adaptive) continue;
        const ratio = (charge.before + plan.need) / this.#amount(state, plan);
        if (!worst || ratio > worst.ratio) worst = { plan, charge, ratio };
      }
      if (worst && !this.#refusalExplained(state, worst.plan, request, command, now)) {
        const estimate = Math.max(worst.plan.need, Math.floor(worst.charge.before * RATE_BACKOFF));
        this.#lower(state, worst.plan, estimate, now, adaptation);
      }
    } else if (command.outcome === 'ok') {
      for (const plan of request.limits) {
        const adapted = state.adapted.get(plan.key);
        if (!plan.adaptive || !adapted || adapted.effective >= plan.amount) continue;
        if (now - adapted.changedAt < adapted.probeMs) continue;
        const step = plan.windowMs === 0 ? 1 : Math.max(1, Math.ceil(plan.amount * 0.02));
        adapted.effective = Math.min(plan.amount, adapted.effective + step);
        adapted.changedAt = now;
        adapted.lastProbeAt = now;
      }
    }
    for (const observation of command.rateLimits ?? [])
      this.#observe(state, request, observation, now, adaptation);
  }

  /**
   * A rate refusal that teaches nothing by its count. Our window and the provider's hold the same
   * calls only as far as the window margin covers the time from a grant to the provider seeing
   * the call: a refusal can come from the provider still counting calls that have left ours,
   * most likely at the edge of a window that was granted in a burst. So:
   * - the refused call's own headers state the limit of that window: they say what it is (at
   *   least ours: the refusal was such an edge; less: #observe learns it as stated);
   * - the limit was lowered less than a window ago: the provider's window still holds what it
   *   admitted before, and its edge comes within that window (one decrease per window, as TCP
   *   makes one per round trip). A limit really lower refuses again in the next window.
   */
  #refusalExplained(
    state: ProviderState,
    plan: LimitPlan,
    request: StoredRequest,
    command: SettleCommand,
    now: number,
  ): boolean {
    const adapted = state.adapted.get(plan.key);
    if (adapted && now - adapted.loweredAt < windowSpanMs(plan)) return true;
    return (command.rateLimits ?? []).some(
      (observation) =>
        observation.limit !== undefined &&
        observation.limit > 0 &&
        observedPlan(request.limits, observation.dimension) === plan,
    );
  }

  /** Sets a limit's effective amount to `estimate` if lower; a probe refused soon backs off longer. */
  #lower(
    state: ProviderState,
    plan: LimitPlan,
    estimate: number,
    now: number,
    adaptation: NonNullable<StoredRequest['adaptation']>,
    stated = false,
  ): void {
    const current = this.#amount(state, plan);
    // Multiplicative decrease at most: one refusal never takes more than half (a limit the
    // provider states in its headers is taken as it is).
    if (!stated) estimate = Math.max(estimate, Math.ceil(current / 2));
    if (estimate >= current) return;
    const adapted = state.adapted.get(plan.key);
    const probeFailed =
      adapted !== undefined && adapted.lastProbeAt > 0 && now - adapted.lastProbeAt < 2 * adapted.probeMs;
    state.adapted.set(plan.key, {
      effective: estimate,
      changedAt: now,
      probeMs: probeFailed ? Math.min(adaptation.maxProbeMs, adapted.probeMs * 2) : adaptation.probeMs,
      lastProbeAt: adapted?.lastProbeAt ?? 0,
      loweredAt: now,
    });
  }

  /** Rate-limit headers: a stated limit below ours is learned; remaining below ours is outside use. */
  #observe(
    state: ProviderState,
    request: StoredRequest,
    observation: RateLimitObservation,
    now: number,
    adaptation: NonNullable<StoredRequest['adaptation']>,
  ): void {
    const plan = observedPlan(request.limits, observation.dimension);
    if (!plan) return;
    if (observation.limit !== undefined && observation.limit > 0) {
      this.#lower(state, plan, observation.limit, now, adaptation, true);
    }
    if (observation.remaining === undefined) return;
    const window = this.#window(state, plan, now);
    const tolerance = plan.dimension === 'requests' ? 0 : TOKEN_HEADER_TOLERANCE;
    const outside = this.#amount(state, plan) - window.total - observation.remaining - tolerance;
    if (outside <= 0) return;
    const bucket = Math.floor(now / plan.bucketMs);
    window.buckets.set(bucket, (window.buckets.get(bucket) ?? 0) + outside);
    window.total += outside;
    this.#count(state, `x:provider:${plan.dimension}`, outside);
  }

  #count(state: ProviderState, field: string, delta: number): void {
    state.counters.set(field, (state.counters.get(field) ?? 0) + delta);
  }
}

/** The provider window limit a header speaks of: same dimension, the window nearest a minute. */
export function observedPlan(limits: LimitPlan[], dimension: string): LimitPlan | undefined {
  let best: LimitPlan | undefined;
  for (const plan of limits) {
    if (!plan.adaptive || plan.windowMs === 0 || plan.dimension !== dimension) continue;
    if (!best || Math.abs(plan.windowMs - 60_000) < Math.abs(best.windowMs - 60_000)) best = plan;
  }
  return best;
}

/** The request fits at `atMs` at the earliest: keep the latest such time, and the limit saying so. */
function holdUntil(fit: Fit, atMs: number, limit: string): void {
  if (atMs < fit.atMs) return;
  fit.atMs = atMs;
  fit.limit = limit;
}

function retryAt(fit: Fit, now: number): number {
  if (fit.atMs === Infinity) return now + UNSCHEDULED_RETRY_MS;
  return fit.atMs > now ? fit.atMs : now + UNSCHEDULED_RETRY_MS;
}

function leaseOf(record: LeaseRecord): StoredLease {
  return {
    id: record.request.id,
    budget: record.request.budget,
    enqueuedAtMs: record.enqueuedAtMs,
    grantedAtMs: record.grantedAtMs,
    expiresAtMs: record.expiresAtMs,
    reserved: record.request.reserved,
  };
}

/** Counter fields are `kind:budget` or `o:budget:outcome`; budget ids contain no colon. */
function splitCounter(field: string): [string, string | undefined, string | undefined] {
  const [kind, budget, outcome] = field.split(':');
  return [kind ?? '', budget, outcome];
}

function insertSorted(queue: QueueEntry[], entry: QueueEntry): void {
  let low = 0;
  let high = queue.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    const other = queue[mid]!;
    if (other.score < entry.score || (other.score === entry.score && other.id < entry.id)) low = mid + 1;
    else high = mid;
  }
  queue.splice(low, 0, entry);
}

function removeEntry(queue: QueueEntry[], id: string): boolean {
  const index = queue.findIndex((entry) => entry.id === id);
  if (index < 0) return false;
  queue.splice(index, 1);
  return true;
}

/** Re-inserts so that the map stays in time order for #collect's early stop. */
function setInOrder(map: ChurnMap<string, number>, id: string, at: number): void {
  map.delete(id);
  map.set(id, at);
}
