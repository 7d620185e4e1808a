/**
 * One call through the sidecar, after its body was parsed and routed: lease, forward, stream
 * back, settle; retrying within the deadline only refusals that can succeed. Every lease taken
 * here is settled exactly once, on every path (HeldLease makes a second settle a no-op, and the
 * `finally` below settles whatever an unexpected failure left open).
 */
import type { ServerResponse } from 'node:http';
import type { IncomingHttpHeaders } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Agent } from 'undici';
import { CancelledError } from '../../common/errors/errors.ts';
import type { Outcome, TokenUsage } from '../../common/quota-api.ts';
import { UpstreamError, UpstreamRefusalError } from '../errors/sidecar-errors.ts';
import type { SidecarMetrics } from '../metrics.ts';
import type { CallRequest } from '../providers/parse-request.ts';
import type { Route } from '../providers/routes.ts';
import type { ResponseRecorder } from '../cache/response-cache.ts';
import { classifyResponse, type Classification, type RefusalKind } from '../refusals/classify.ts';
import { parseRateLimitHeaders, rateLimitObservations } from '../refusals/rate-limit-headers.ts';
import type { HeldLease } from '../quota/held-lease.ts';
import type { Health } from '../routing/circuit-breaker.ts';
import type { QuotaGate } from '../quota/quota-gate.ts';
import { authHeader } from './credentials.ts';
import { endCallSpan, injectTraceHeaders, startCallSpan, withCallSpan } from '../telemetry.ts';
import { pump } from './pump.ts';
import { ResponseTap } from './response-tap.ts';
import type { Target } from './router.ts';
import { clientResponseHeaders, undiciErrors, upstreamRequestHeaders } from './upstream.ts';
import { readBounded, UpstreamExchange, type UpstreamResponse } from './upstream-exchange.ts';

/** Refusals worth another attempt at the same provider once their hint has passed. */
const RETRY_KINDS = new Set<RefusalKind>(['concurrency', 'rate', 'window', 'overload', 'riskControl']);
/**
 * Refusals another provider of the route may serve: retryable ones that cannot be retried here in
 * time, and those of this account alone (balance, plan, model not in the plan). A bad request
 * (clientError, tooLarge) would fail anywhere.
 */
const FAIL_OVER_KINDS = new Set<RefusalKind>([
  ...RETRY_KINDS,
  'serverError',
  'balance',
  'subscription',
  'entitlement',
]);
/** Answers that say the provider is unwell (the circuit breaker's failures). */
const UNHEALTHY_KINDS = new Set<RefusalKind>(['overload', 'serverError']);
/** Error bodies are read whole to classify them; larger ones are cut here. */
const MAX_ERROR_BODY = 1024 * 1024;
const NO_USAGE: TokenUsage = { inputTokens: 0, outputTokens: 0 };

export interface ForwardContext {
  gate: QuotaGate;
  agent: Agent;
  keys: Map<string, string>;
  metrics: SidecarMetrics;
  countTokens: (text: string) => number;
  maxRetries: number;
  /** Backoff when a retryable refusal gives no hint. */
  retryBaseMs: number;
}

export interface CallInput {
  route: Route;
  search: string;
  call: CallRequest;
  target: Target;
  headers: IncomingHttpHeaders;
  deadlineMs: number;
  /** Aborted when the app disconnects. */
  signal: AbortSignal;
  /** performance.now() when the request arrived. */
  arrivedAt: number;
  requestId: string | undefined;
  /** Sees a 2xx answer as the app receives it (sidecar/cache). */
  recorder?: ResponseRecorder | undefined;
  /** Set by sidecar/routing for each provider of the call's route. */
  step?: StepControl | undefined;
}

export interface StepControl {
  /**
   * Another provider of the route may take the call: a refusal it could serve is thrown as
   * UpstreamRefusalError instead of answered, and an overload is not retried here.
   */
  canFailOver: boolean;
  /** What this attempt said about the provider's health (its circuit breaker). */
  report(health: Health): void;
}

/** What happened, for the requests metric and the call's span. */
export interface CallResult {
  outcome: Outcome;
  /** `namespace/name` of the provider that answered (a fallback's, when the route moved on). */
  provider?: string;
  /** The HTTP status the app got from the provider. */
  status?: number;
  usage?: TokenUsage;
}

/** Whether undici failed before the request could reach the provider. */
function notSent(error: unknown): boolean {
  if (error instanceof undiciErrors.ConnectTimeoutError) return true;
  const code = (error as { code?: unknown })?.code;
  return code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'EHOSTUNREACH' || code === 'EAI_AGAIN';
}

function isTimeout(error: unknown): boolean {
  return (
    error instanceof undiciErrors.HeadersTimeoutError ||
    error instanceof undiciErrors.BodyTimeoutError ||
    error instanceof undiciErrors.ConnectTimeoutError
  );
}

export async function forwardCall(
  context: ForwardContext,
  input: CallInput,
  response: ServerResponse,
): Promise<CallResult> {
  const { call, target, route, signal } = input;
  const { metrics } = context;
  const maxOutputTokens = call.maxOutputTokens ?? target.defaultMaxOutputTokens;
  const key = context.keys.get(target.providerId);
  const headers = upstreamRequestHeaders(
    input.headers,
    key === undefined ? undefined : authHeader(target.provider, key),
  );
  const path = `${target.basePath}${route.upstreamPath}${input.search}`;
  const span = startCallSpan(input.headers, {
    operation: route.operation,
    model: call.model,
    provider: target.providerId,
    system: target.flavor,
    budget: target.budgetId,
    maxOutputTokens: call.maxOutputTokens,
  });
  injectTraceHeaders(span, headers);
  let leaseWaitMs = 0;
  try {
    const result = await withCallSpan(span, attempts);
    endCallSpan(span, { ...result, leaseWaitMs });
    return result;
  } catch (error) {
    endCallSpan(span, { outcome: 'error', leaseWaitMs, error });
    throw error;
  }

  async function attempts(): Promise<CallResult> {
    for (let attempt = 0; ; attempt++) {
      const askedAt = performance.now();
      const lease = await context.gate.acquire({
        provider: target.providerId,
        model: call.model,
        budget: target.budgetId,
        inputTokens: call.inputTokens,
        maxOutputTokens,
        maxWaitMs: Math.max(0, Math.floor(input.deadlineMs - Date.now())),
        requestId: input.requestId,
        signal,
      });
      try {
        const heldAt = performance.now();
        leaseWaitMs += heldAt - askedAt;
        metrics.leaseWait.observe({ provider: target.providerId }, (heldAt - askedAt) / 1000);
        if (attempt === 0) {
          const added = heldAt - input.arrivedAt - lease.waitedMs;
          metrics.addedLatency.observe({ route: route.operation }, Math.max(0, added) / 1000);
        }

        let upstream: UpstreamResponse;
        try {
          upstream = await UpstreamExchange.send(
            context.agent,
            { origin: target.origin, path, method: 'POST', headers, body: call.body },
            signal,
          );
        } catch (error) {
          const cancelled = signal.aborted;
          const sent = !notSent(error);
          await lease.settle({
            usage: sent ? { inputTokens: call.inputTokens, outputTokens: 0 } : NO_USAGE,
            outcome: cancelled ? 'cancelled' : sent ? 'error' : 'notSent',
          });
          input.step?.report(cancelled ? 'neutral' : 'failure');
          if (cancelled) return { outcome: 'cancelled' };
          throw new UpstreamError(
            isTimeout(error) ? 'timeout' : 'unreachable',
            `upstream ${target.providerId}: ${(error as Error).message}`,
            {
              cause: error,
            },
          );
        }

        if (upstream.statusCode < 200 || upstream.statusCode >= 300) {
          const body = await readBounded(upstream.body, MAX_ERROR_BODY).catch(() => Buffer.alloc(0));
          const now = Date.now();
          const verdict = classifyResponse(
            target.flavor,
            { status: upstream.statusCode, headers: upstream.headers, body: body.toString('utf8') },
            now,
          );
          metrics.upstreamRefusals.inc({ provider: target.providerId, kind: verdict.kind });
          await lease.settle({
            usage: NO_USAGE,
            outcome: verdict.outcome,
            retryAfterMs: verdict.retryAfterMs,
            resetAtMs: verdict.resetAtMs,
            rateLimits: rateLimitObservations(
              parseRateLimitHeaders(target.flavor, upstream.headers, now),
              now,
            ),
          });
          input.step?.report(UNHEALTHY_KINDS.has(verdict.kind) ? 'failure' : 'neutral');
          const failOver = input.step?.canFailOver === true && FAIL_OVER_KINDS.has(verdict.kind);
          const delay = retryDelay(verdict, attempt, context.retryBaseMs);
          if (
            verdict.retryable &&
            RETRY_KINDS.has(verdict.kind) &&
            // An overloaded provider is left at once when another can take the call.
            !(failOver && verdict.kind === 'overload') &&
            attempt < context.maxRetries &&
            Date.now() + delay < input.deadlineMs &&
            !signal.aborted
          ) {
            metrics.retries.inc({ provider: target.providerId, kind: verdict.kind });
            try {
              await sleep(delay, undefined, { signal });
            } catch {
              return { outcome: 'cancelled' };
            }
            continue;
          }
          if (failOver && !signal.aborted) {
            throw new UpstreamRefusalError(target.providerId, verdict, {
              status: upstream.statusCode,
              headers: upstream.headers,
              body,
            });
          }
          if (!response.destroyed) {
            response.writeHead(
              upstream.statusCode,
              clientResponseHeaders(upstream.headers, true, target.providerId),
            );
            response.end(body);
          }
          return { outcome: verdict.outcome, status: upstream.statusCode };
        }

        return await streamBack(context, input, lease, upstream, maxOutputTokens, response);
      } finally {
        // Only reached unsettled when something above threw unexpectedly.
        if (!lease.settled)
          await lease.settle({
            usage: { inputTokens: call.inputTokens, outputTokens: maxOutputTokens },
            outcome: 'error',
          });
      }
    }
  }
}

function retryDelay(verdict: Classification, attempt: number, baseMs: number): number {
  if (verdict.retryAfterMs !== undefined) return verdict.retryAfterMs;
  // Like the official SDKs: exponential with jitter.
  return Math.min(baseMs * 2 ** attempt, 8_000) * (0.75 + Math.random() * 0.25);
}

async function streamBack(
  context: ForwardContext,
  input: CallInput,
  lease: HeldLease,
  upstream: UpstreamResponse,
  maxOutputTokens: number,
  response: ServerResponse,
): Promise<CallResult> {
  const { call, route } = input;
  const contentType = String(upstream.headers['content-type'] ?? '');
  const sse = contentType.includes('text/event-stream');
  const headersAt = Date.now();
  const rateLimits = rateLimitObservations(
    parseRateLimitHeaders(input.target.flavor, upstream.headers, headersAt),
    headersAt,
  );
  const tap = new ResponseTap(route.operation, sse, call.stripUsageChunk);
  response.writeHead(
    upstream.statusCode,
    clientResponseHeaders(upstream.headers, sse && call.stripUsageChunk, input.target.providerId),
  );
  if (sse) response.flushHeaders();
  input.recorder?.head(upstream.statusCode, upstream.headers);
  lease.startHeartbeat();
  let outcome: Outcome = 'ok';
  try {
    await pump(upstream.body, tap, response, input.recorder && ((bytes) => input.recorder!.bytes(bytes)));
  } catch (error) {
    // The app went away (which aborts the upstream call), or the provider broke the stream: the
    // app then gets a cut stream, as it would from the provider.
    outcome = error instanceof CancelledError ? 'cancelled' : 'error';
    if (!response.destroyed) response.destroy();
  }
  const usage = tap.usage(outcome === 'ok', call.inputTokens, maxOutputTokens, context.countTokens);
  await lease.settle({ usage, outcome, rateLimits });
  // A stream the provider broke off is a failure; one the app left says nothing.
  input.step?.report(outcome === 'ok' ? 'success' : outcome === 'error' ? 'failure' : 'neutral');
  return { outcome, status: upstream.statusCode, usage };
}
