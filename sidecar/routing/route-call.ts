/**
 * One call along its budget's route: the provider the router chose, then its fallbacks in order.
 * Each step waits for a lease at most its `after` (the last one, the caller's whole deadline), and
 * the call moves on when no lease comes in that time, when the quota engine has closed the
 * provider (a window reset or retry-after beyond the wait), on an overload or a failure upstream,
 * and past a provider whose circuit breaker is open. A fallback is asked for its mapped model: the
 * body's `model` is rewritten and its tokens counted again by the same estimator. The answer's own
 * `model` is left as the fallback wrote it (the honest name of what answered), and
 * `x-tokenlease-provider` names the provider that served the call.
 */
import type { ServerResponse } from 'node:http';
import { CapacityExhaustedError, RequestTooLargeError } from '../../common/errors/errors.ts';
import { CircuitOpenError, UpstreamError, UpstreamRefusalError } from '../errors/sidecar-errors.ts';
import { parseCallRequest, type CallRequest } from '../providers/parse-request.ts';
import { forwardCall, type CallInput, type CallResult, type ForwardContext } from '../proxy/forward-call.ts';
import { clientResponseHeaders } from '../proxy/upstream.ts';
import type { RouteStep } from './fallback-route.ts';
import type { FallbackReason } from './routing-metrics.ts';
import type { Routing } from './routing.ts';

export interface RouteContext extends ForwardContext {
  routing: Routing;
}

/** Why a failure lets the call move on; undefined when it would fail anywhere (or was the app's doing). */
function reasonOf(error: unknown): FallbackReason | undefined {
  if (error instanceof CapacityExhaustedError)
    return error.limit?.startsWith('closed:') ? 'closed' : 'capacity';
  if (error instanceof RequestTooLargeError) return 'tooLarge';
  if (error instanceof UpstreamError) return 'error';
  if (error instanceof UpstreamRefusalError) {
    if (error.kind === 'overload') return 'overload';
    // The engine has closed the provider until the stated reset on this very refusal.
    if (error.kind === 'window') return 'closed';
    return error.kind === 'serverError' ? 'error' : 'refused';
  }
  return undefined;
}

/** The call as a fallback asked for `model` must see it. */
function callFor(input: CallInput, model: string): CallRequest {
  if (model === input.call.model) return input.call;
  const json = { ...(JSON.parse(input.call.body.toString('utf8')) as Record<string, unknown>), model };
  const body = Buffer.from(JSON.stringify(json));
  // The body already asks for stream usage when we added it: keep hiding that chunk. Set on the
  // parsed call, not spread into a copy: a spread would count its (lazy) inputTokens here.
  const call = parseCallRequest(input.route.operation, json, body);
  call.stripUsageChunk = input.call.stripUsageChunk;
  return call;
}

/** The provider's refusal, passed on as it came. */
function answerWith(refusal: UpstreamRefusalError, response: ServerResponse): CallResult {
  if (!response.destroyed && !response.headersSent) {
    response.writeHead(refusal.status, clientResponseHeaders(refusal.headers, true, refusal.provider));
    response.end(refusal.body);
  }
  return { outcome: refusal.outcome, status: refusal.status, provider: refusal.provider };
}

export async function routeCall(
  context: RouteContext,
  input: CallInput,
  response: ServerResponse,
): Promise<CallResult> {
  const { routes, breakers, metrics } = context.routing;
  const steps: RouteStep[] = routes.stepsFrom(input.target, input.call.model);
  const failures: unknown[] = [];
  const skipped: string[] = [];
  let reopenAtMs = Infinity;
  /** The provider just left and why, counted once the next one is tried (or none is). */
  let leaving: { from: string; reason: FallbackReason } | undefined;
  const leave = (to: string) => {
    if (leaving !== undefined) metrics.fallbacks.inc({ from: leaving.from, to, reason: leaving.reason });
    leaving = undefined;
  };

  for (let index = 0; index < steps.length; index++) {
    const step = steps[index]!;
    const provider = step.target.providerId;
    const now = Date.now();
    // Later providers only get what is left of the caller's deadline.
    if (index > 0 && now >= input.deadlineMs) break;
    const breaker = breakers.get(provider);
    const permit = breaker === undefined ? { probe: false, report: () => {} } : breaker.permit();
    if (permit === undefined) {
      reopenAtMs = Math.min(reopenAtMs, breaker!.openUntilMs || now);
      skipped.push(provider);
      leave(provider);
      leaving = { from: provider, reason: 'circuitOpen' };
      continue;
    }
    leave(provider);
    const last = index === steps.length - 1;
    try {
      // A later step's own overhead is what the added-latency metric sees, not the steps before.
      const arrivedAt = index === 0 ? input.arrivedAt : performance.now();
      const call = callFor(input, step.model);
      const result = await forwardCall(
        context,
        {
          ...input,
          arrivedAt,
          target: step.target,
          call,
          deadlineMs: last ? input.deadlineMs : Math.min(input.deadlineMs, now + step.afterMs),
          step: { canFailOver: !last, report: permit.report },
        },
        response,
      );
      return { ...result, provider };
    } catch (error) {
      const reason = reasonOf(error);
      if (reason === undefined || response.headersSent || input.signal.aborted) throw error;
      failures.push(error);
      leaving = { from: provider, reason };
    } finally {
      // No verdict yet (no lease, or an unexpected failure): the provider said nothing.
      permit.report('neutral');
    }
  }
  leave('none');
  return giveUp(failures, skipped, reopenAtMs, response);
}

/** No provider of the route served the call: the most telling failure goes to the app. */
function giveUp(
  failures: unknown[],
  skipped: string[],
  reopenAtMs: number,
  response: ServerResponse,
): CallResult {
  const last = failures.at(-1);
  if (last === undefined) throw new CircuitOpenError(skipped, Math.max(1, reopenAtMs - Date.now()));
  // Only out of capacity everywhere: the app may come back when the first of them has some.
  if (failures.every((failure) => failure instanceof CapacityExhaustedError)) {
    const soonest = (failures as CapacityExhaustedError[]).reduce((a, b) =>
      b.retryAfterMs < a.retryAfterMs ? b : a,
    );
    throw soonest;
  }
  if (last instanceof UpstreamRefusalError) return answerWith(last, response);
  throw last;
}
