/**
 * Conversions between the QuotaApi's objects and the messages of tokenlease.v1 (proto/gen), in
 * both directions, so the client and the server cannot disagree. The `*FromWire` functions that
 * read requests also validate them: a bad field throws InvalidRequestError naming the proto field.
 */
import { PRIORITY_NAMES } from '../budgets/types.ts';
import { InvalidRequestError } from '../errors/errors.ts';
import {
  OUTCOMES,
  type AcquireInput,
  type Grant,
  type HeartbeatInput,
  type Outcome,
  type Reservation,
  type RateLimitObservation,
  type SettleInput,
  type SettleResult,
  type SettleStatus,
  type TokenUsage,
  type UsageSnapshot,
} from '../quota-api.ts';
import type { AcquireRequest, AcquireRequest__Output } from '../../proto/gen/tokenlease/v1/AcquireRequest.ts';
import type {
  AcquireResponse,
  AcquireResponse__Output,
} from '../../proto/gen/tokenlease/v1/AcquireResponse.ts';
import type {
  GetUsageResponse,
  GetUsageResponse__Output,
} from '../../proto/gen/tokenlease/v1/GetUsageResponse.ts';
import type {
  HeartbeatRequest,
  HeartbeatRequest__Output,
} from '../../proto/gen/tokenlease/v1/HeartbeatRequest.ts';
import type { Outcome__Output as WireOutcome } from '../../proto/gen/tokenlease/v1/Outcome.ts';
import type { Reservation__Output as WireReservation } from '../../proto/gen/tokenlease/v1/Reservation.ts';
import type { SettleRequest, SettleRequest__Output } from '../../proto/gen/tokenlease/v1/SettleRequest.ts';
import type { SettleResponse, SettleResponse__Output } from '../../proto/gen/tokenlease/v1/SettleResponse.ts';
import type { SettleStatus__Output as WireSettleStatus } from '../../proto/gen/tokenlease/v1/SettleStatus.ts';
import type { Usage, Usage__Output } from '../../proto/gen/tokenlease/v1/Usage.ts';

/** Largest token count one request may name: far above any real context, far below 2^53. */
export const MAX_REQUEST_TOKENS = 1_000_000_000;
/** Longest wait for capacity a request may ask for. */
export const MAX_WAIT_MS = 600_000;
const MAX_ID_LENGTH = 512;
/** A provider's retry hint or window reset further out than this is not believed. */
const MAX_HINT_MS = 8 * 86_400_000;

// --- field checks -------------------------------------------------------------------------------

function requiredString(value: string, field: string): string {
  if (value === '') throw new InvalidRequestError(field, 'is required');
  if (value.length > MAX_ID_LENGTH)
    throw new InvalidRequestError(field, `must be at most ${MAX_ID_LENGTH} characters`);
  return value;
}

function integerIn(value: number, field: string, min: number, max: number): number {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new InvalidRequestError(field, `must be an integer from ${min} to ${max}, got ${value}`);
  }
  return value;
}

function tokens(value: number, field: string): number {
  return integerIn(value, field, 0, MAX_REQUEST_TOKENS);
}

/** Priority as the wire carries it: empty (the budget's), a name, or a number 0..1000. */
export function parsePriority(text: string): number | undefined {
  if (text === '') return undefined;
  if (Object.hasOwn(PRIORITY_NAMES, text)) return PRIORITY_NAMES[text as keyof typeof PRIORITY_NAMES];
  if (/^\d{1,4}$/.test(text) && Number(text) <= 1000) return Number(text);
  throw new InvalidRequestError(
    'priority',
    `must be interactive, standard, batch or an integer from 0 to 1000, got ${JSON.stringify(text)}`,
  );
}

function usageFromWire(usage: Usage__Output, field: string): TokenUsage {
  return {
    inputTokens: tokens(usage.input_tokens, `${field}.input_tokens`),
    outputTokens: tokens(usage.output_tokens, `${field}.output_tokens`),
  };
}

function usageToWire(usage: TokenUsage): Usage {
  return { input_tokens: usage.inputTokens, output_tokens: usage.outputTokens };
}

// --- enums --------------------------------------------------------------------------------------

/** Every Settle names one: each spelled out once (`refusedConcurrency` -> `OUTCOME_REFUSED_CONCURRENCY`). */
const OUTCOME_TO_WIRE = new Map<Outcome, WireOutcome>(
  OUTCOMES.map((outcome) => [
    outcome,
    `OUTCOME_${outcome.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}` as WireOutcome,
  ]),
);

const OUTCOME_FROM_WIRE = new Map<string, Outcome>(
  [...OUTCOME_TO_WIRE].map(([outcome, wire]) => [wire, outcome]),
);

export function outcomeToWire(outcome: Outcome): WireOutcome {
  return OUTCOME_TO_WIRE.get(outcome)!;
}

const SETTLE_STATUS_TO_WIRE = {
  settled: 'SETTLE_STATUS_SETTLED',
  alreadySettled: 'SETTLE_STATUS_ALREADY_SETTLED',
  settledAfterExpiry: 'SETTLE_STATUS_SETTLED_AFTER_EXPIRY',
} as const satisfies Record<SettleStatus, WireSettleStatus>;

const SETTLE_STATUS_FROM_WIRE = new Map<string, SettleStatus>(
  Object.entries(SETTLE_STATUS_TO_WIRE).map(([status, wire]) => [wire, status as SettleStatus]),
);

// --- Acquire ------------------------------------------------------------------------------------

export function acquireToWire(input: AcquireInput): AcquireRequest {
  return {
    provider: input.provider,
    model: input.model,
    budget: input.budget,
    input_tokens: input.inputTokens,
    max_output_tokens: input.maxOutputTokens,
    priority: input.priority === undefined ? '' : String(input.priority),
    max_wait_ms: input.maxWaitMs,
    request_id: input.requestId ?? '',
  };
}

/** The request as the engine takes it (without a signal: the server adds the call's). */
export function acquireFromWire(request: AcquireRequest__Output): Omit<AcquireInput, 'signal'> {
  const requestId = request.request_id;
  if (requestId.length > MAX_ID_LENGTH) {
    throw new InvalidRequestError('request_id', `must be at most ${MAX_ID_LENGTH} characters`);
  }
  return {
    provider: requiredString(request.provider, 'provider'),
    model: requiredString(request.model, 'model'),
    budget: requiredString(request.budget, 'budget'),
    inputTokens: tokens(request.input_tokens, 'input_tokens'),
    maxOutputTokens: tokens(request.max_output_tokens, 'max_output_tokens'),
    priority: parsePriority(request.priority),
    maxWaitMs: integerIn(request.max_wait_ms, 'max_wait_ms', 0, MAX_WAIT_MS),
    requestId: requestId === '' ? undefined : requestId,
  };
}

function reservationToWire(reservation: Reservation): WireReservation {
  return {
    requests: reservation.requests,
    input_tokens: reservation.inputTokens,
    output_tokens: reservation.outputTokens,
    total_tokens: reservation.totalTokens,
  };
}

function reservationFromWire(reservation: WireReservation | null | undefined): Reservation {
  return {
    requests: reservation?.requests ?? 0,
    inputTokens: reservation?.input_tokens ?? 0,
    outputTokens: reservation?.output_tokens ?? 0,
    totalTokens: reservation?.total_tokens ?? 0,
  };
}

/**
 * A grant's headroom travels as a message, so that "none" (a grant from the queue) is the message
 * left unset and reads back as undefined, while a set one with zeros means "no room left".
 */
export function grantToWire(grant: Grant): AcquireResponse {
  return {
    lease_id: grant.leaseId,
    expires_at_ms: grant.expiresAtMs,
    lease_timeout_ms: grant.leaseTimeoutMs,
    waited_ms: grant.waitedMs,
    reserved: reservationToWire(grant.reserved),
    headroom: grant.headroom
      ? { fraction: grant.headroom.fraction, requests: grant.headroom.requests }
      : null,
  };
}

export function grantFromWire(response: AcquireResponse__Output): Grant {
  const headroom = response.headroom;
  return {
    leaseId: response.lease_id,
    expiresAtMs: response.expires_at_ms,
    leaseTimeoutMs: response.lease_timeout_ms,
    waitedMs: response.waited_ms,
    reserved: reservationFromWire(response.reserved),
    ...(headroom ? { headroom: { fraction: headroom.fraction, requests: headroom.requests } } : {}),
  };
}

// --- Settle -------------------------------------------------------------------------------------

export function settleToWire(input: SettleInput): SettleRequest {
  return {
    lease_id: input.leaseId,
    usage: usageToWire(input.usage),
    outcome: outcomeToWire(input.outcome),
    retry_after_ms: input.retryAfterMs ?? 0,
    reset_at_ms: input.resetAtMs ?? 0,
    rate_limits: (input.rateLimits ?? []).map((observation) => ({
      dimension: observation.dimension,
      limit: observation.limit ?? 0,
      remaining: observation.remaining ?? -1,
      reset_ms: observation.resetMs ?? 0,
    })),
  };
}

const OBSERVED_DIMENSIONS = new Set(['requests', 'inputTokens', 'outputTokens', 'totalTokens']);
const MAX_OBSERVATIONS = 16;

function rateLimitsFromWire(wire: SettleRequest__Output['rate_limits']): RateLimitObservation[] | undefined {
  if (wire.length === 0) return undefined;
  if (wire.length > MAX_OBSERVATIONS)
    throw new InvalidRequestError('rate_limits', `at most ${MAX_OBSERVATIONS}`);
  return wire.map((observation, index) => {
    const field = `rate_limits[${index}]`;
    if (!OBSERVED_DIMENSIONS.has(observation.dimension)) {
      throw new InvalidRequestError(
        `${field}.dimension`,
        'must be requests, inputTokens, outputTokens or totalTokens',
      );
    }
    const limit = integerIn(observation.limit, `${field}.limit`, 0, 1e12);
    const remaining = integerIn(observation.remaining, `${field}.remaining`, -1, 1e12);
    const resetMs = integerIn(observation.reset_ms, `${field}.reset_ms`, 0, 31 * 86_400_000);
    return {
      dimension: observation.dimension as RateLimitObservation['dimension'],
      limit: limit === 0 ? undefined : limit,
      remaining: remaining === -1 ? undefined : remaining,
      resetMs: resetMs === 0 ? undefined : resetMs,
    };
  });
}

export function settleFromWire(request: SettleRequest__Output): SettleInput {
  const leaseId = requiredString(request.lease_id, 'lease_id');
  if (!request.usage) throw new InvalidRequestError('usage', 'is required');
  const outcome = OUTCOME_FROM_WIRE.get(String(request.outcome));
  if (outcome === undefined) {
    throw new InvalidRequestError('outcome', `must be one of ${[...OUTCOME_FROM_WIRE.keys()].join(', ')}`);
  }
  const retryAfterMs = integerIn(request.retry_after_ms, 'retry_after_ms', 0, MAX_HINT_MS);
  // A reset is an epoch time; its plausibility against the store's clock is the engine's to judge.
  const resetAtMs = integerIn(request.reset_at_ms, 'reset_at_ms', 0, Number.MAX_SAFE_INTEGER);
  return {
    leaseId,
    usage: usageFromWire(request.usage, 'usage'),
    outcome,
    retryAfterMs: retryAfterMs === 0 ? undefined : retryAfterMs,
    resetAtMs: resetAtMs === 0 ? undefined : resetAtMs,
    rateLimits: rateLimitsFromWire(request.rate_limits),
  };
}

export function settleResultToWire(result: SettleResult): SettleResponse {
  return {
    status: SETTLE_STATUS_TO_WIRE[result.status],
    charged: reservationToWire(result.charged),
    settled_at_ms: result.settledAtMs,
  };
}

export function settleResultFromWire(response: SettleResponse__Output): SettleResult {
  const status = SETTLE_STATUS_FROM_WIRE.get(String(response.status));
  if (status === undefined)
    throw new Error(`quota service answered an unknown settle status ${response.status}`);
  return { status, charged: reservationFromWire(response.charged), settledAtMs: response.settled_at_ms };
}

// --- Heartbeat ----------------------------------------------------------------------------------

export function heartbeatToWire(input: HeartbeatInput): HeartbeatRequest {
  return { lease_id: input.leaseId, used_so_far: input.usedSoFar ? usageToWire(input.usedSoFar) : null };
}

export function heartbeatFromWire(request: HeartbeatRequest__Output): HeartbeatInput {
  return {
    leaseId: requiredString(request.lease_id, 'lease_id'),
    usedSoFar: request.used_so_far ? usageFromWire(request.used_so_far, 'used_so_far') : undefined,
  };
}

// --- GetUsage -----------------------------------------------------------------------------------

export function usageSnapshotToWire(snapshot: UsageSnapshot): GetUsageResponse {
  return {
    now_ms: snapshot.nowMs,
    providers: snapshot.providers.map((provider) => ({
      provider: provider.provider,
      limits: provider.limits.map((limit) => ({
        scope: limit.scope,
        dimension: limit.dimension,
        window_ms: limit.windowMs,
        model: limit.model,
        limit: limit.limit,
        effective_limit: limit.effectiveLimit,
        used: limit.used,
      })),
      in_flight: provider.inFlight,
      waiters: provider.waiters,
      budgets: provider.budgets.map((budget) => ({
        budget: budget.budget,
        in_flight: budget.inFlight,
        waiters: budget.waiters,
        granted: budget.granted,
        rejected: budget.rejected,
        refusals: budget.refusals,
        cache:
          budget.cache === undefined
            ? null
            : {
                hits: budget.cache.hits,
                input_tokens: budget.cache.inputTokens,
                output_tokens: budget.cache.outputTokens,
              },
      })),
      closed_until_ms: provider.closedUntilMs,
      closed_reason: provider.closedReason,
    })),
  };
}

export function usageSnapshotFromWire(response: GetUsageResponse__Output): UsageSnapshot {
  return {
    nowMs: response.now_ms,
    providers: response.providers.map((provider) => ({
      provider: provider.provider,
      limits: provider.limits.map((limit) => ({
        scope: limit.scope,
        dimension: limit.dimension,
        windowMs: limit.window_ms,
        model: limit.model,
        limit: limit.limit,
        effectiveLimit: limit.effective_limit,
        used: limit.used,
      })),
      inFlight: provider.in_flight,
      waiters: provider.waiters,
      budgets: provider.budgets.map((budget) => ({
        budget: budget.budget,
        inFlight: budget.in_flight,
        waiters: budget.waiters,
        granted: budget.granted,
        rejected: budget.rejected,
        refusals: { ...budget.refusals },
        ...(budget.cache
          ? {
              cache: {
                hits: budget.cache.hits,
                inputTokens: budget.cache.input_tokens,
                outputTokens: budget.cache.output_tokens,
              },
            }
          : {}),
      })),
      closedUntilMs: provider.closed_until_ms,
      closedReason: provider.closed_reason,
    })),
  };
}
