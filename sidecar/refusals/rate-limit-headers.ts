/**
 * The rate-limit headers providers send with every response, read into one shape so that the
 * quota service can learn the real limits (PROVIDERS.md, "Rate-limit headers").
 */
import { parseDuration } from '../../common/duration.ts';
import type { Flavor } from '../../common/budgets/types.ts';
import type { RateLimitObservation } from '../../common/quota-api.ts';
import { header, type HeaderMap } from './retry-hint.ts';

export interface RateLimitWindow {
  limit?: number;
  remaining?: number;
  /** Epoch ms. */
  resetAtMs?: number;
}

export const RATE_LIMIT_DIMENSIONS = ['requests', 'tokens', 'inputTokens', 'outputTokens'] as const;
export type RateLimitDimension = (typeof RATE_LIMIT_DIMENSIONS)[number];
export type RateLimitHeaders = Partial<Record<RateLimitDimension, RateLimitWindow>>;

function count(text: string | undefined): number | undefined {
  if (text === undefined || text.trim() === '') return undefined;
  const value = Number(text);
  return Number.isFinite(value) ? value : undefined;
}

/** Runs on every response: kept to plain property checks. */
function put(into: RateLimitHeaders, dimension: RateLimitDimension, window: RateLimitWindow): void {
  const defined: RateLimitWindow = {};
  let any = false;
  if (window.limit !== undefined) {
    defined.limit = window.limit;
    any = true;
  }
  if (window.remaining !== undefined) {
    defined.remaining = window.remaining;
    any = true;
  }
  if (window.resetAtMs !== undefined) {
    defined.resetAtMs = window.resetAtMs;
    any = true;
  }
  if (any) into[dimension] = defined;
}

/**
 * Header names per dimension, spelled out once: read on every response, and a name built per call
 * (a template string) is a fresh string each time, which the header object must hash to look up.
 */
function names(prefix: string, suffix: string) {
  return {
    limit: `${prefix}limit${suffix}`,
    remaining: `${prefix}remaining${suffix}`,
    reset: `${prefix}reset${suffix}`,
  };
}
const OPENAI_NAMES = [
  ['requests', names('x-ratelimit-', '-requests')],
  ['tokens', names('x-ratelimit-', '-tokens')],
] as const;
const ANTHROPIC_NAMES = [
  ['requests', names('anthropic-ratelimit-requests-', '')],
  ['tokens', names('anthropic-ratelimit-tokens-', '')],
  ['inputTokens', names('anthropic-ratelimit-input-tokens-', '')],
  ['outputTokens', names('anthropic-ratelimit-output-tokens-', '')],
] as const;

/** OpenAI and Azure: `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`, resets as Go durations. */
function openai(headers: HeaderMap, nowMs: number, azure: boolean): RateLimitHeaders {
  const out: RateLimitHeaders = {};
  for (const [dimension, name] of OPENAI_NAMES) {
    const limit = count(header(headers, name.limit));
    let remaining = count(header(headers, name.remaining));
    // Azure sends -1 (and 0 without a limit) as "unknown", not as "exhausted".
    if (remaining !== undefined && (remaining < 0 || (azure && remaining === 0 && limit === undefined))) {
      remaining = undefined;
    }
    const reset = header(headers, name.reset);
    const resetMs = reset === undefined ? undefined : parseDuration(reset);
    put(out, dimension, { limit, remaining, resetAtMs: resetMs === undefined ? undefined : nowMs + resetMs });
  }
  return out;
}

/** Anthropic: `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-*`, RFC 3339 resets. */
function anthropic(headers: HeaderMap): RateLimitHeaders {
  const out: RateLimitHeaders = {};
  for (const [dimension, name] of ANTHROPIC_NAMES) {
    const reset = header(headers, name.reset);
    const resetAtMs = reset === undefined ? undefined : Date.parse(reset);
    put(out, dimension, {
      limit: count(header(headers, name.limit)),
      remaining: count(header(headers, name.remaining)),
      resetAtMs: resetAtMs === undefined || Number.isNaN(resetAtMs) ? undefined : resetAtMs,
    });
  }
  return out;
}

/** Moonshot: `x-ratelimit-{limit,remaining,reset}` for requests; reset in seconds or epoch seconds. */
function moonshot(headers: HeaderMap, nowMs: number): RateLimitHeaders {
  const out: RateLimitHeaders = {};
  const reset = count(header(headers, 'x-ratelimit-reset'));
  const resetAtMs = reset === undefined ? undefined : reset > 1e9 ? reset * 1000 : nowMs + reset * 1000;
  put(out, 'requests', {
    limit: count(header(headers, 'x-ratelimit-limit')),
    remaining: count(header(headers, 'x-ratelimit-remaining')),
    resetAtMs,
  });
  return out;
}

/** Whatever the flavour's headers say; empty for providers that send none (GLM, DeepSeek, Gemini). */
export function parseRateLimitHeaders(flavor: Flavor, headers: HeaderMap, nowMs: number): RateLimitHeaders {
  switch (flavor) {
    case 'openai':
    case 'dashscope':
      return openai(headers, nowMs, false);
    case 'azure':
      return openai(headers, nowMs, true);
    case 'anthropic':
      return anthropic(headers);
    case 'moonshot':
      return moonshot(headers, nowMs);
    case 'glm':
    case 'deepseek':
    case 'gemini':
      return {};
  }
}

const OBSERVED_DIMENSION: Record<RateLimitDimension, RateLimitObservation['dimension']> = {
  requests: 'requests',
  tokens: 'totalTokens',
  inputTokens: 'inputTokens',
  outputTokens: 'outputTokens',
};

/** The parsed headers as Settle carries them to the quota service; undefined when there are none. */
export function rateLimitObservations(
  parsed: RateLimitHeaders,
  nowMs: number,
): RateLimitObservation[] | undefined {
  const observations: RateLimitObservation[] = [];
  for (const dimension of RATE_LIMIT_DIMENSIONS) {
    const window = parsed[dimension];
    if (window === undefined) continue;
    observations.push({
      dimension: OBSERVED_DIMENSION[dimension],
      limit: window.limit,
      remaining: window.remaining,
      resetMs: window.resetAtMs === undefined ? undefined : Math.max(0, window.resetAtMs - nowMs),
    });
  }
  return observations.length > 0 ? observations : undefined;
}
