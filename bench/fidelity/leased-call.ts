/**
 * One call the way the sidecar makes it, without the proxy around it: count the prompt tokens,
 * acquire a lease, call the provider, classify its answer by flavour, settle with the outcome,
 * the retry hints and the rate-limit headers. Used by the fidelity benchmark and the scheduling
 * tests, so that what they measure is the engine's reaction to real refusals.
 */
import { Agent, request } from 'undici';
import type { Flavor } from '../../common/budgets/types.ts';
import { CapacityExhaustedError } from '../../common/errors/errors.ts';
import type { Outcome, QuotaApi } from '../../common/quota-api.ts';
import { countPromptTokens, maxOutputTokens } from '../../common/tokens/count-tokens.ts';
import {
  classifyResponse,
  parseRateLimitHeaders,
  rateLimitObservations,
} from '../../sidecar/refusals/index.ts';

export interface LeasedCallTarget {
  quota: QuotaApi;
  provider: string;
  budget: string;
  flavor: Flavor;
  /** The provider's base URL including `/v1` (or its own prefix). */
  baseUrl: string;
  dispatcher: Agent;
  /** Output allowance when the body names none (the provider's defaultMaxOutputTokens). */
  defaultMaxOutputTokens: number;
}

export type LeasedCallResult =
  /** Never sent: no lease within maxWaitMs. */
  | { kind: 'rejected'; waitedMs: number }
  /** Sent; `outcome` is what was settled. */
  | {
      kind: 'sent';
      outcome: Outcome;
      /** From asking for the lease to sending the call. */
      waitedMs: number;
      /** When the store granted the lease, on its clock (epoch ms). */
      grantedAtMs: number;
      status: number;
      /** Wall-clock ms when the call was sent and answered. */
      sentAtMs: number;
      answeredAtMs: number;
      resetAtMs?: number | undefined;
      /** When the store took the settle (its clock): a closure it caused starts here. */
      settledAtMs: number;
    };

export function createDispatcher(connections = 256): Agent {
  return new Agent({ connections, pipelining: 0, keepAliveTimeout: 30_000 });
}

interface UsageBody {
  usage?: { prompt_tokens?: number; completion_tokens?: number };
}

export async function leasedCall(
  target: LeasedCallTarget,
  body: Record<string, unknown>,
  options: {
    maxWaitMs: number;
    priority?: number | undefined;
    signal?: AbortSignal;
    /** Time between holding the lease and sending the call (a network hop away, say). */
    sendDelayMs?: number;
  },
): Promise<LeasedCallResult> {
  const started = performance.now();
  const inputTokens = countPromptTokens(body, 'chat.completions');
  const maxOutput = maxOutputTokens(body, 'chat.completions') ?? target.defaultMaxOutputTokens;
  let leaseId: string;
  let grantedAtMs: number;
  try {
    const grant = await target.quota.acquire({
      provider: target.provider,
      budget: target.budget,
      model: String(body.model),
      inputTokens,
      maxOutputTokens: maxOutput,
      priority: options.priority,
      maxWaitMs: options.maxWaitMs,
      signal: options.signal,
    });
    leaseId = grant.leaseId;
    grantedAtMs = grant.expiresAtMs - grant.leaseTimeoutMs;
  } catch (error) {
    if (error instanceof CapacityExhaustedError)
      return { kind: 'rejected', waitedMs: performance.now() - started };
    throw error;
  }
  const waitedMs = performance.now() - started;
  if (options.sendDelayMs) await new Promise((resolve) => setTimeout(resolve, options.sendDelayMs));
  const sentAtMs = Date.now();
  let status = 0;
  let headers: Record<string, string | string[] | undefined> = {};
  let text = '';
  try {
    const response = await request(`${target.baseUrl}/chat/completions`, {
      method: 'POST',
      dispatcher: target.dispatcher,
      headers: { 'content-type': 'application/json', authorization: 'Bearer sim' },
      body: JSON.stringify(body),
    });
    status = response.statusCode;
    headers = response.headers;
    text = await response.body.text();
  } catch (error) {
    await target.quota.settle({ leaseId, usage: { inputTokens: 0, outputTokens: 0 }, outcome: 'error' });
    throw error;
  }
  const answeredAtMs = Date.now();
  const classification = classifyResponse(
    target.flavor,
    { status, headers, body: status < 300 ? '' : text },
    answeredAtMs,
  );
  let usage = { inputTokens: 0, outputTokens: 0 };
  if (classification.outcome === 'ok') {
    const parsed = (JSON.parse(text) as UsageBody).usage;
    usage = {
      inputTokens: parsed?.prompt_tokens ?? inputTokens,
      outputTokens: parsed?.completion_tokens ?? 0,
    };
  }
  const settled = await target.quota.settle({
    leaseId,
    usage,
    outcome: classification.outcome,
    retryAfterMs: classification.retryAfterMs,
    resetAtMs: classification.resetAtMs,
    rateLimits: rateLimitObservations(
      parseRateLimitHeaders(target.flavor, headers, answeredAtMs),
      answeredAtMs,
    ),
  });
  return {
    kind: 'sent',
    outcome: classification.outcome,
    waitedMs,
    grantedAtMs,
    status,
    sentAtMs,
    answeredAtMs,
    resetAtMs: classification.resetAtMs,
    settledAtMs: settled.settledAtMs,
  };
}
