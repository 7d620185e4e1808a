/**
 * The lease engine: validates a request, works out the limits it must fit in, and asks the store
 * to grant, queue or reject it. A queued request waits without polling: it is woken when any
 * engine sharing the store grants it (settles and acquires grant from the queue head), and by a
 * timer when time alone frees capacity (a window rolling on, a lease expiring), or at its deadline.
 */
import { randomUUID } from 'node:crypto';
import type { BudgetSet } from '../../../common/budgets/load-budgets.ts';
import { ChurnMap } from '../../../common/churn-map.ts';
import { objectId, priorityValue } from '../../../common/budgets/types.ts';
import { parseDuration } from '../../../common/duration.ts';
import {
  CancelledError,
  CapacityExhaustedError,
  InvalidRequestError,
  NotFoundError,
  PermissionDeniedError,
  RequestTooLargeError,
} from '../../../common/errors/errors.ts';
import {
  OUTCOMES,
  type AcquireInput,
  type Grant,
  type Headroom,
  type HeartbeatInput,
  type LimitUsage,
  type ProviderUsage,
  type QuotaApi,
  type SettleInput,
  type SettleResult,
  type UsageSnapshot,
} from '../../../common/quota-api.ts';
import {
  budgetsOf,
  dominantShare,
  effectiveWeight,
  limitPlans,
  reservationFor,
  withNeeds,
} from './limit-plans.ts';
import type {
  LeaseStore,
  LimitPlan,
  StoreAcquireResult,
  StoredLease,
  StoredRequest,
  StoreWaiterResult,
} from './store.ts';

export const MAX_WAIT_MS = 600_000;
export const MAX_TOKENS = 1_000_000_000;
const DEFAULT_LEASE_TIMEOUT_MS = 120_000;
const LEASE_ID_SEPARATOR = '|';

export interface LeaseEngine extends QuotaApi {
  /** Replaces the budgets configuration (hot reload); waits in progress keep their limits. */
  setBudgets(budgets: BudgetSet): void;
  budgets(): BudgetSet;
  /** Resolves once the store answers. */
  ready(): Promise<void>;
  close(): Promise<void>;
}

/**
 * What every Acquire for one provider, budget and model shares, worked out once per budgets
 * configuration: the limits (needs still 0) and the request fields that follow from the budgets.
 */
interface AcquireProfile {
  limits: LimitPlan[];
  priority: number;
  fields: Pick<StoredRequest, 'weight' | 'agingMs' | 'adaptation' | 'leaseTimeoutMs'>;
}

/** Profiles kept at most (a cluster has providers x budgets x models of them in use). */
const MAX_PROFILES = 10_000;

interface Waiter {
  provider: string;
  budget: string;
  startedAt: number;
  resolve: (grant: Grant) => void;
  reject: (error: Error) => void;
  deadline: NodeJS.Timeout | undefined;
  settling: boolean;
  /** A grant was announced while a claim was in flight: claim again if that one saw none. */
  reclaim: boolean;
  detach: () => void;
}

export class StoreLeaseEngine implements LeaseEngine {
  readonly #store: LeaseStore;
  #budgets: BudgetSet;
  readonly #waiters = new Map<string, Waiter>();
  /** Requests on their way to the store: a grant announced before their answer is noted here. */
  readonly #inFlight = new ChurnMap<string, { grantedEarly: boolean }>();
  readonly #wakeTimers = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  /** Acquire profiles of the current budgets, by provider, budget and model. */
  #profiles = new Map<string, AcquireProfile>();
  #closed = false;

  constructor(store: LeaseStore, budgets: BudgetSet) {
    this.#store = store;
    this.#budgets = budgets;
    store.onGrant((provider, ids) => this.#granted(provider, ids));
    store.onResync(() => {
      for (const id of this.#waiters.keys()) void this.#claim(id);
    });
  }

  setBudgets(budgets: BudgetSet): void {
    this.#budgets = budgets;
    this.#profiles = new Map();
  }

  budgets(): BudgetSet {
    return this.#budgets;
  }

  ready(): Promise<void> {
    return this.#store.ready();
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const { timer } of this.#wakeTimers.values()) clearTimeout(timer);
    this.#wakeTimers.clear();
    for (const [id, waiter] of this.#waiters) {
      this.#finish(id, waiter);
      waiter.reject(new CancelledError('the quota service is shutting down'));
    }
    await this.#store.close();
  }

  async acquire(input: AcquireInput): Promise<Grant> {
    validateAcquire(input);
    const profile = this.#profile(input);
    const reserved = reservationFor(input.inputTokens, input.maxOutputTokens);
    const limits = withNeeds(profile.limits, reserved);
    for (const plan of limits) {
      if (plan.need > plan.amount) throw new RequestTooLargeError(plan.label, plan.need, plan.amount);
    }
    if (input.signal?.aborted) throw new CancelledError('the caller gave up before the lease was granted');
    const id = `${input.provider}${LEASE_ID_SEPARATOR}${randomUUID()}`;
    const startedAt = performance.now();
    const announced = { grantedEarly: false };
    this.#inFlight.set(id, announced);
    let result: StoreAcquireResult;
    try {
      result = await this.#store.acquire(input.provider, {
        id,
        budget: input.budget,
        priority: input.priority ?? profile.priority,
        cost: dominantShare(limits),
        limits,
        maxWaitMs: input.maxWaitMs,
        reserved,
        ...profile.fields,
      });
    } finally {
      this.#inFlight.delete(id);
    }
    this.#granted(input.provider, result.grantedIds);
    if (result.kind === 'granted') {
      return grantOf(result.lease, profile.fields.leaseTimeoutMs, result.headroom);
    }
    if (result.kind === 'rejected') {
      throw new CapacityExhaustedError(Math.max(1, result.retryAtMs - result.nowMs), result.limit);
    }
    return this.#wait(input, id, announced, startedAt, result);
  }

  /** The acquire profile for the input's provider, budget and model; throws if there is none. */
  #profile(input: AcquireInput): AcquireProfile {
    const key = `${input.provider}\n${input.budget}\n${input.model}`;
    const known = this.#profiles.get(key);
    if (known) return known;
    const provider = this.#budgets.providers.get(input.provider);
    if (!provider) throw new NotFoundError('provider', input.provider);
    const models = provider.spec.models ?? [];
    if (models.length > 0 && !models.includes(input.model)) {
      throw new NotFoundError(
        'model',
        input.model,
        `LLMProvider ${input.provider} serves ${models.join(', ')}`,
      );
    }
    const budget = this.#budgets.budgets.get(input.budget);
    if (!budget) throw new NotFoundError('budget', input.budget);
    if (!budgetsOf(this.#budgets, input.provider).includes(input.budget)) {
      throw new PermissionDeniedError(
        `LLMBudget ${input.budget} does not draw on LLMProvider ${input.provider}`,
      );
    }
    const adaptation = provider.spec.adaptation;
    const profile: AcquireProfile = {
      limits: limitPlans(this.#budgets, input.provider, [input.budget], input.model, reservationFor(0, 0)),
      priority: priorityValue(budget.spec.priority),
      fields: {
        weight: effectiveWeight(this.#budgets, input.provider, input.budget),
        agingMs: parseDuration(budget.spec.priorityAging) ?? 10_000,
        adaptation: adaptation.enabled
          ? {
              probeMs: parseDuration(adaptation.probeInterval) ?? 30_000,
              maxProbeMs: parseDuration(adaptation.maxProbeInterval) ?? 600_000,
            }
          : null,
        leaseTimeoutMs: leaseTimeoutOf(this.#budgets, input.provider),
      },
    };
    if (this.#profiles.size >= MAX_PROFILES) this.#profiles.clear();
    this.#profiles.set(key, profile);
    return profile;
  }

  /** Waits for a queued request's grant (announced by the store, or claimed at a wake-up). */
  #wait(
    input: AcquireInput,
    id: string,
    announced: { grantedEarly: boolean },
    startedAt: number,
    queued: { wakeAtMs: number; nowMs: number },
  ): Promise<Grant> {
    return new Promise<Grant>((resolve, reject) => {
      const waiter: Waiter = {
        provider: input.provider,
        budget: input.budget,
        startedAt,
        resolve,
        reject,
        deadline: undefined,
        settling: false,
        reclaim: false,
        detach: () => {},
      };
      this.#waiters.set(id, waiter);
      waiter.deadline = setTimeout(() => void this.#giveUp(id, undefined), input.maxWaitMs);
      if (input.signal) {
        const signal = input.signal;
        const onAbort = () => void this.#giveUp(id, new CancelledError('the caller gave up while waiting'));
        signal.addEventListener('abort', onAbort, { once: true });
        waiter.detach = () => signal.removeEventListener('abort', onAbort);
      }
      this.#scheduleWake(input.provider, queued.wakeAtMs, queued.nowMs);
      // Granted by another engine before the store's answer reached us: claim it now.
      if (announced.grantedEarly) void this.#claim(id);
    });
  }

  async settle(input: SettleInput): Promise<SettleResult> {
    if (!OUTCOMES.includes(input.outcome))
      throw new InvalidRequestError('outcome', `must be one of ${OUTCOMES.join(', ')}`);
    validateTokens('usage.inputTokens', input.usage?.inputTokens);
    validateTokens('usage.outputTokens', input.usage?.outputTokens);
    const provider = providerOfLease(input.leaseId);
    const result = await this.#store.settle(provider, {
      leaseId: input.leaseId,
      usage: input.usage,
      outcome: input.outcome,
      retryAfterMs: input.retryAfterMs,
      resetAtMs: input.resetAtMs,
      rateLimits: input.rateLimits,
    });
    this.#granted(provider, result.grantedIds);
    if (result.kind === 'unknown')
      throw new NotFoundError('lease', input.leaseId, 'never granted, or settled long ago');
    return { status: result.kind, charged: result.charged, settledAtMs: result.settledAtMs };
  }

  async heartbeat(input: HeartbeatInput): Promise<{ expiresAtMs: number }> {
    if (input.usedSoFar) {
      validateTokens('usedSoFar.inputTokens', input.usedSoFar.inputTokens);
      validateTokens('usedSoFar.outputTokens', input.usedSoFar.outputTokens);
    }
    const provider = providerOfLease(input.leaseId);
    const result = await this.#store.heartbeat(
      provider,
      input.leaseId,
      leaseTimeoutOf(this.#budgets, provider),
      input.usedSoFar,
    );
    this.#granted(provider, result.grantedIds);
    if (result.kind === 'extended') return { expiresAtMs: result.expiresAtMs };
    throw new NotFoundError(
      'lease',
      input.leaseId,
      result.kind === 'unknown' ? 'never granted' : `already ${result.kind}`,
    );
  }

  async usage(providerId?: string): Promise<UsageSnapshot> {
    const ids = providerId ? [providerId] : [...this.#budgets.providers.keys()].sort();
    if (providerId && !this.#budgets.providers.has(providerId))
      throw new NotFoundError('provider', providerId);
    let nowMs = 0;
    const providers: ProviderUsage[] = [];
    for (const id of ids) {
      const budgetIds = budgetsOf(this.#budgets, id);
      const plans = limitPlans(this.#budgets, id, budgetIds, undefined, reservationFor(0, 0));
      const usage = await this.#store.usage(id, plans);
      nowMs = usage.nowMs;
      const byBudget = new Map(usage.budgets.map((entry) => [entry.budget, entry]));
      const limits: LimitUsage[] = plans.map((plan, index) => ({
        scope: plan.scope,
        dimension: plan.dimension,
        windowMs: plan.windowMs,
        model: plan.model,
        limit: plan.amount,
        effectiveLimit: usage.limits[index]?.effective ?? plan.amount,
        used: usage.limits[index]?.used ?? 0,
      }));
      providers.push({
        provider: id,
        limits,
        inFlight: usage.inFlight,
        waiters: usage.waiters,
        budgets: budgetIds.map(
          (budget) =>
            byBudget.get(budget) ?? {
              budget,
              inFlight: 0,
              waiters: 0,
              granted: 0,
              rejected: 0,
              refusals: {},
            },
        ),
        closedUntilMs: usage.closedUntilMs,
        closedReason: usage.closedReason,
      });
    }
    return { nowMs, providers };
  }

  // --- waiting ---------------------------------------------------------------------------

  #granted(provider: string, ids: string[]): void {
    for (const id of ids) {
      const waiter = this.#waiters.get(id);
      if (waiter && waiter.provider === provider) void this.#claim(id);
      else {
        const announced = this.#inFlight.get(id);
        if (announced) announced.grantedEarly = true;
      }
    }
  }

  async #claim(id: string): Promise<void> {
    const waiter = this.#waiters.get(id);
    if (!waiter) return;
    if (waiter.settling) {
      waiter.reclaim = true;
      return;
    }
    waiter.settling = true;
    waiter.reclaim = false;
    let result: StoreWaiterResult;
    try {
      result = await this.#store.claim(waiter.provider, id);
    } catch (error) {
      waiter.settling = false;
      // The store is unreachable: the deadline timer gives up on the wait; nothing else to do.
      void error;
      return;
    }
    this.#granted(waiter.provider, result.grantedIds);
    if (result.kind === 'waiting') {
      waiter.settling = false;
      if (waiter.reclaim) void this.#claim(id);
      return;
    }
    this.#finish(id, waiter);
    if (result.kind === 'granted') waiter.resolve(this.#grantFor(result.lease, waiter));
    else
      waiter.reject(new CapacityExhaustedError(Math.max(1, result.retryAtMs - result.nowMs), result.limit));
  }

  /** Deadline reached (reason undefined) or the caller gave up. */
  async #giveUp(id: string, reason: Error | undefined): Promise<void> {
    const waiter = this.#waiters.get(id);
    if (!waiter) return;
    waiter.settling = true;
    let result: StoreWaiterResult;
    try {
      result = await this.#store.cancel(waiter.provider, id);
    } catch (error) {
      this.#finish(id, waiter);
      waiter.reject(error as Error);
      return;
    }
    this.#finish(id, waiter);
    this.#granted(waiter.provider, result.grantedIds);
    if (result.kind === 'granted' && reason === undefined) {
      waiter.resolve(this.#grantFor(result.lease, waiter));
      return;
    }
    if (result.kind === 'granted') {
      // Granted as the caller left: give the capacity straight back.
      await this.#store
        .settle(waiter.provider, {
          leaseId: id,
          usage: { inputTokens: 0, outputTokens: 0 },
          outcome: 'notSent',
        })
        .catch(() => {});
    }
    if (reason) waiter.reject(reason);
    else if (result.kind === 'gone') {
      waiter.reject(new CapacityExhaustedError(Math.max(1, result.retryAtMs - result.nowMs), result.limit));
    } else waiter.reject(new CapacityExhaustedError(250));
  }

  #finish(id: string, waiter: Waiter): void {
    this.#waiters.delete(id);
    if (waiter.deadline) clearTimeout(waiter.deadline);
    waiter.detach();
  }

  #grantFor(lease: StoredLease, waiter: Waiter): Grant {
    const grant = grantOf(lease, leaseTimeoutOf(this.#budgets, waiter.provider));
    grant.waitedMs = Math.round(performance.now() - waiter.startedAt);
    return grant;
  }

  /** One timer per provider, at the earliest time the store said capacity may free up. */
  #scheduleWake(provider: string, wakeAtMs: number, nowMs: number): void {
    if (this.#closed || wakeAtMs <= 0) return;
    const at = Date.now() + Math.max(1, wakeAtMs - nowMs);
    const existing = this.#wakeTimers.get(provider);
    if (existing && existing.at <= at) return;
    if (existing) clearTimeout(existing.timer);
    const timer = setTimeout(() => void this.#wake(provider), at - Date.now());
    this.#wakeTimers.set(provider, { at, timer });
  }

  async #wake(provider: string): Promise<void> {
    this.#wakeTimers.delete(provider);
    if (![...this.#waiters.values()].some((waiter) => waiter.provider === provider)) return;
    try {
      const result = await this.#store.pump(provider);
      this.#granted(provider, result.grantedIds);
      this.#scheduleWake(provider, result.wakeAtMs, result.nowMs);
    } catch {
      // Store unreachable: retry shortly; each waiter's deadline still bounds its wait.
      this.#scheduleWake(provider, 2, 1);
    }
  }
}

/** A lease as granted, with a direct grant's headroom (one from the queue has none, being stale by then). */
function grantOf(lease: StoredLease, leaseTimeoutMs: number, headroom?: Headroom): Grant {
  const grant: Grant = {
    leaseId: lease.id,
    expiresAtMs: lease.expiresAtMs,
    leaseTimeoutMs,
    waitedMs: lease.grantedAtMs - lease.enqueuedAtMs,
    reserved: lease.reserved,
  };
  if (headroom) grant.headroom = headroom;
  return grant;
}

function leaseTimeoutOf(budgets: BudgetSet, providerId: string): number {
  const provider = budgets.providers.get(providerId);
  return provider
    ? (parseDuration(provider.spec.leaseTimeout) ?? DEFAULT_LEASE_TIMEOUT_MS)
    : DEFAULT_LEASE_TIMEOUT_MS;
}

function providerOfLease(leaseId: unknown): string {
  if (typeof leaseId !== 'string' || leaseId === '') throw new InvalidRequestError('leaseId', 'is required');
  const at = leaseId.lastIndexOf(LEASE_ID_SEPARATOR);
  if (at <= 0 || leaseId.length > 600)
    throw new NotFoundError('lease', leaseId, 'not a lease id of this service');
  return leaseId.slice(0, at);
}

function validateTokens(field: string, value: unknown): void {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > MAX_TOKENS) {
    throw new InvalidRequestError(field, `must be a whole number from 0 to ${MAX_TOKENS}`);
  }
}

function validateAcquire(input: AcquireInput): void {
  for (const field of ['provider', 'model', 'budget'] as const) {
    const value = input[field];
    if (typeof value !== 'string' || value.trim() === '') throw new InvalidRequestError(field, 'is required');
    if (value.length > 300) throw new InvalidRequestError(field, 'is longer than 300 characters');
  }
  validateTokens('inputTokens', input.inputTokens);
  validateTokens('maxOutputTokens', input.maxOutputTokens);
  if (
    input.priority !== undefined &&
    (!Number.isInteger(input.priority) || input.priority < 0 || input.priority > 1000)
  ) {
    throw new InvalidRequestError('priority', 'must be a whole number from 0 to 1000');
  }
  if (!Number.isInteger(input.maxWaitMs) || input.maxWaitMs < 0 || input.maxWaitMs > MAX_WAIT_MS) {
    throw new InvalidRequestError(
      'maxWaitMs',
      `must be a whole number of milliseconds from 0 to ${MAX_WAIT_MS}`,
    );
  }
}

/** `namespace/name` of a provider reference written in a budget of `namespace`. */
export function providerIdOf(
  ref: { name: string; namespace?: string | undefined },
  namespace: string,
): string {
  return objectId(ref, namespace);
}
