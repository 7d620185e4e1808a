/**
 * How each provider refuses and what rate-limit headers it sends (shared/docs/PROVIDERS.md). Every
 * function here is pure: the server decides THAT it refuses, this module decides what the refusal
 * looks like on the wire for the configured flavour.
 */
import type { Flavor } from '../common/budgets/types.ts';
import { formatDuration } from '../common/duration.ts';
import { formatGoDuration } from './go-duration.ts';
import type { LimitReading, LimitState } from './limiter.ts';

/** What the ledger calls a refusal (mirrors the sidecar's refusal kinds where they overlap). */
export const REFUSAL_CLASSES = [
  'concurrency',
  'rate',
  'window',
  'tooLarge',
  'overload',
  'balance',
  'serverError',
  'invalid',
  'notFound',
] as const;
export type RefusalClass = (typeof REFUSAL_CLASSES)[number];

export type RefusalKind =
  | 'limit'
  | 'tooLarge'
  | 'overload'
  | 'modelOverload'
  | 'balance'
  | 'serverError'
  | 'invalid'
  | 'notFound'
  | 'unknownRoute'
  | 'bodyTooLarge';

export interface RefusalInput {
  kind: RefusalKind;
  model: string;
  /** For `limit` and `tooLarge`: the limit, what the request needed, what was in use. */
  limit?: LimitState;
  requested?: number;
  used?: number;
  retryAfterMs?: number;
  /** For `invalid` / `unknownRoute`: what is wrong, and the field. */
  message?: string;
  param?: string;
  /** The request came to the Anthropic messages endpoint. */
  anthropicApi: boolean;
  nowMs: number;
}

export interface WireResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** The provider's code or type, for the ledger. */
  code: string;
  class: RefusalClass;
}

const MINUTE = 60_000;

/** `rate` for windows up to a minute, `window` for plan, daily and weekly windows. */
export function limitClass(limit: LimitState): RefusalClass {
  if (limit.dimension === 'concurrency') return 'concurrency';
  return limit.windowMs <= MINUTE ? 'rate' : 'window';
}

const WINDOW_WORDS: Record<number, [word: string, letter: string]> = {
  1_000: ['sec', 'S'],
  60_000: ['min', 'M'],
  3_600_000: ['hour', 'H'],
  86_400_000: ['day', 'D'],
  604_800_000: ['week', 'W'],
};

const DIMENSION_WORDS: Record<string, [word: string, abbr: string]> = {
  requests: ['requests', 'R'],
  totalTokens: ['tokens', 'T'],
  inputTokens: ['input tokens', 'IT'],
  outputTokens: ['output tokens', 'OT'],
};

/** `tokens per min (TPM)`, `requests per day (RPD)`, `requests per 5h`. */
export function describeLimit(limit: LimitState): string {
  if (limit.dimension === 'concurrency') return 'concurrent requests';
  const [word, abbr] = DIMENSION_WORDS[limit.dimension]!;
  const unit = WINDOW_WORDS[limit.windowMs];
  return unit
    ? `${word} per ${unit[0]} (${abbr}P${unit[1]})`
    : `${word} per ${formatDuration(limit.windowMs)}`;
}

const json = (value: unknown) => JSON.stringify(value);
const seconds = (ms: number) => String(Math.max(1, Math.ceil(ms / 1000)));

function classOf(input: RefusalInput): RefusalClass {
  switch (input.kind) {
    case 'limit':
      return limitClass(input.limit!);
    case 'modelOverload':
      return 'overload';
    case 'unknownRoute':
      return 'notFound';
    case 'bodyTooLarge':
      return 'invalid';
    default:
      return input.kind;
  }
}

/** Beijing time without a zone, as Zhipu writes reset times; rounded up to the second. */
export function beijingTime(epochMs: number): string {
  const iso = new Date(Math.ceil(epochMs / 1000) * 1000 + 8 * 3_600_000).toISOString();
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)}`;
}

/** RFC 3339 in UTC, rounded up to the second (Anthropic's reset headers). */
export function rfc3339(epochMs: number): string {
  return new Date(Math.ceil(epochMs / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

function openaiError(
  message: string,
  type: string,
  code: string | null,
  param: string | null = null,
): string {
  return json({ error: { message, type, param, code } });
}

function openai(input: RefusalInput): Omit<WireResponse, 'class'> {
  const { model, limit, requested, used } = input;
  switch (input.kind) {
    case 'limit': {
      const type =
        limit!.dimension === 'requests' || limit!.dimension === 'concurrency' ? 'requests' : 'tokens';
      const wait = input.retryAfterMs
        ? `Please try again in ${formatGoDuration(input.retryAfterMs)}.`
        : 'Please try again shortly.';
      const message =
        `Rate limit reached for ${model} in organization org-sim on ${describeLimit(limit!)}: ` +
        `Limit ${limit!.amount}, Used ${used}, Requested ${requested}. ${wait} ` +
        'Visit https://platform.openai.com/account/rate-limits to learn more.';
      return {
        status: 429,
        headers: {},
        body: openaiError(message, type, 'rate_limit_exceeded'),
        code: 'rate_limit_exceeded',
      };
    }
    case 'tooLarge': {
      const message =
        `Request too large for ${model} in organization org-sim on ${describeLimit(limit!)}: ` +
        `Limit ${limit!.amount}, Requested ${requested}. The input or output tokens must be reduced in order to run successfully. ` +
        'Visit https://platform.openai.com/account/rate-limits to learn more.';
      return {
        status: 429,
        headers: {},
        body: openaiError(message, 'tokens', 'rate_limit_exceeded'),
        code: 'rate_limit_exceeded',
      };
    }
    case 'overload':
    case 'modelOverload':
      return {
        status: 503,
        headers: {},
        body: openaiError(
          'The engine is currently overloaded, please try again later.',
          'server_error',
          null,
        ),
        code: 'server_error',
      };
    case 'balance':
      return {
        status: 429,
        headers: {},
        body: openaiError(
          'You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.',
          'insufficient_quota',
          'insufficient_quota',
        ),
        code: 'insufficient_quota',
      };
    case 'serverError':
      return {
        status: 500,
        headers: {},
        body: openaiError(
          'The server had an error while processing your request. Sorry about that!',
          'server_error',
          null,
        ),
        code: 'server_error',
      };
    case 'invalid':
    case 'bodyTooLarge':
      return {
        status: 400,
        headers: {},
        body: openaiError(
          input.message ?? 'Invalid request',
          'invalid_request_error',
          null,
          input.param ?? null,
        ),
        code: 'invalid_request_error',
      };
    case 'notFound':
      return {
        status: 404,
        headers: {},
        body: openaiError(
          `The model \`${model}\` does not exist or you do not have access to it.`,
          'invalid_request_error',
          'model_not_found',
        ),
        code: 'model_not_found',
      };
    case 'unknownRoute':
      return {
        status: 404,
        headers: {},
        body: openaiError(input.message ?? 'Invalid URL', 'invalid_request_error', null),
        code: 'invalid_request_error',
      };
  }
}

/** Azure OpenAI: its own 429 text with `retry-after`; otherwise OpenAI's bodies. */
function azure(input: RefusalInput): Omit<WireResponse, 'class'> {
  if (input.kind !== 'limit') return openai(input);
  const after = seconds(input.retryAfterMs || 1000);
  const what =
    input.limit!.dimension === 'requests' || input.limit!.dimension === 'concurrency'
      ? 'call rate limit'
      : 'token rate limit';
  const message =
    `Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 have exceeded ${what} ` +
    `of your current OpenAI S0 pricing tier. Please retry after ${after} seconds.`;
  return {
    status: 429,
    headers: { 'retry-after': after, 'retry-after-ms': String(Math.ceil(input.retryAfterMs || 1000)) },
    body: json({ error: { code: '429', message } }),
    code: '429',
  };
}

function anthropicError(type: string, message: string): string {
  return json({ type: 'error', error: { type, message } });
}

function anthropic(input: RefusalInput): Omit<WireResponse, 'class'> {
  // Anthropic's OpenAI-compatible endpoints answer in OpenAI's shape.
  if (!input.anthropicApi && input.kind !== 'limit' && input.kind !== 'overload') return openai(input);
  const { limit } = input;
  switch (input.kind) {
    case 'limit': {
      const headers: Record<string, string> = {};
      if (input.retryAfterMs) headers['retry-after'] = seconds(input.retryAfterMs);
      const message =
        limit!.dimension === 'concurrency'
          ? 'Number of concurrent connections has exceeded your rate limit. Please try again later or contact sales at https://www.anthropic.com/contact-sales to discuss your options for a rate limit increase.'
          : `This request would exceed the rate limit for your organization (org-sim) of ${limit!.amount} ${describeLimit(limit!)}. ` +
            'For details, refer to: https://docs.claude.com/en/api/rate-limits.';
      return {
        status: 429,
        headers,
        body: anthropicError('rate_limit_error', message),
        code: 'rate_limit_error',
      };
    }
    case 'tooLarge':
      return {
        status: 429,
        headers: { 'x-should-retry': 'false' },
        body: anthropicError(
          'rate_limit_error',
          `Request too large: it needs ${input.requested} ${describeLimit(limit!)} but your organization's limit is ${limit!.amount}.`,
        ),
        code: 'rate_limit_error',
      };
    case 'overload':
    case 'modelOverload':
      return {
        status: 529,
        headers: {},
        body: anthropicError('overloaded_error', 'Overloaded'),
        code: 'overloaded_error',
      };
    case 'balance':
      return {
        status: 400,
        headers: { 'x-should-retry': 'false' },
        body: anthropicError(
          'invalid_request_error',
          'Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.',
        ),
        code: 'invalid_request_error',
      };
    case 'serverError':
      return {
        status: 500,
        headers: {},
        body: anthropicError('api_error', 'Internal server error'),
        code: 'api_error',
      };
    case 'invalid':
    case 'bodyTooLarge':
      return {
        status: 400,
        headers: {},
        body: anthropicError('invalid_request_error', input.message ?? 'Invalid request'),
        code: 'invalid_request_error',
      };
    case 'notFound':
      return {
        status: 404,
        headers: {},
        body: anthropicError('not_found_error', `model: ${input.model}`),
        code: 'not_found_error',
      };
    case 'unknownRoute':
      return {
        status: 404,
        headers: {},
        body: anthropicError('not_found_error', input.message ?? 'Not found'),
        code: 'not_found_error',
      };
  }
}

function glmError(status: number, code: string, message: string): Omit<WireResponse, 'class'> {
  return { status, headers: {}, body: json({ error: { code, message } }), code };
}

function glm(input: RefusalInput): Omit<WireResponse, 'class'> {
  switch (input.kind) {
    case 'limit': {
      const limit = input.limit!;
      if (limit.dimension === 'concurrency') {
        return glmError(
          429,
          '1302',
          'High concurrency usage of this API, please reduce concurrency or contact customer service to increase limits',
        );
      }
      if (limit.windowMs <= MINUTE) {
        return glmError(
          429,
          '1303',
          'High frequency usage of this API, please reduce calling frequency or contact customer service to increase limits',
        );
      }
      if (limit.windowMs === 86_400_000) {
        return glmError(
          429,
          '1304',
          'The daily call limit for this API has been reached. Please contact customer service to purchase more.',
        );
      }
      const resetAt = beijingTime(input.nowMs + (input.retryAfterMs ?? 0));
      if (limit.windowMs < 86_400_000) {
        const span =
          limit.windowMs % 3_600_000 === 0
            ? `${limit.windowMs / 3_600_000} hour`
            : formatDuration(limit.windowMs);
        return glmError(429, '1308', `Usage limit reached for ${span}. Your limit will reset at ${resetAt}`);
      }
      return glmError(429, '1310', `Weekly/Monthly Limit Exhausted. Your limit will reset at ${resetAt}`);
    }
    case 'tooLarge':
      return glmError(
        400,
        '1261',
        `Prompt exceeds max length: needs ${input.requested} ${describeLimit(input.limit!)}, limit ${input.limit!.amount}`,
      );
    case 'overload':
      return glmError(429, '1305', 'The service may be temporarily overloaded, please try again later');
    case 'modelOverload':
      return glmError(
        429,
        '1312',
        'The model is currently overloaded, please switch to another model or try again later',
      );
    case 'balance':
      return glmError(429, '1113', 'Your account is in arrears, please recharge and try again');
    case 'serverError':
      return glmError(500, '500', 'Internal Error');
    case 'invalid':
    case 'bodyTooLarge':
      return glmError(400, '1214', input.message ?? 'Invalid parameters');
    case 'notFound':
      return glmError(400, '1211', `Model not found: ${input.model}`);
    case 'unknownRoute':
      return glmError(404, '404', input.message ?? 'Not found');
  }
}

function deepseek(input: RefusalInput): Omit<WireResponse, 'class'> {
  switch (input.kind) {
    case 'limit':
      return {
        status: 429,
        headers: {},
        body: openaiError('Rate Limit Reached', 'rate_limit_reached_error', 'rate_limit_reached'),
        code: 'rate_limit_reached',
      };
    case 'tooLarge':
      return {
        status: 400,
        headers: {},
        body: openaiError(
          `This model's maximum context length is ${input.limit!.amount} tokens. However, you requested ${input.requested} tokens. Please reduce the length of the messages or completion.`,
          'invalid_request_error',
          'invalid_request_error',
        ),
        code: 'invalid_request_error',
      };
    case 'overload':
    case 'modelOverload':
      return {
        status: 503,
        headers: {},
        body: openaiError('Server Overloaded', 'service_unavailable_error', 'server_overloaded'),
        code: 'server_overloaded',
      };
    case 'balance':
      return {
        status: 402,
        headers: {},
        body: openaiError('Insufficient Balance', 'unknown_error', 'invalid_request_error'),
        code: 'invalid_request_error',
      };
    case 'serverError':
      return {
        status: 500,
        headers: {},
        body: openaiError('Server Error', 'server_error', 'server_error'),
        code: 'server_error',
      };
    default:
      return openai(input);
  }
}

function geminiError(
  status: number,
  googleStatus: string,
  message: string,
  retryAfterMs?: number,
): Omit<WireResponse, 'class'> {
  const error: Record<string, unknown> = { code: status, message, status: googleStatus };
  if (retryAfterMs) {
    error.details = [
      { '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: `${seconds(retryAfterMs)}s` },
    ];
  }
  return { status, headers: {}, body: json([{ error }]), code: googleStatus };
}

function gemini(input: RefusalInput): Omit<WireResponse, 'class'> {
  switch (input.kind) {
    case 'limit':
      return geminiError(
        429,
        'RESOURCE_EXHAUSTED',
        `Resource has been exhausted (e.g. check quota). Quota exceeded for ${describeLimit(input.limit!)}, limit: ${input.limit!.amount}, model: ${input.model}`,
        input.retryAfterMs,
      );
    case 'tooLarge':
      return geminiError(
        400,
        'INVALID_ARGUMENT',
        `The input token count (${input.requested}) exceeds the maximum number of tokens allowed (${input.limit!.amount}).`,
      );
    case 'overload':
    case 'modelOverload':
      return geminiError(503, 'UNAVAILABLE', 'The model is overloaded. Please try again later.');
    case 'balance':
      return geminiError(
        403,
        'PERMISSION_DENIED',
        'Your prepayment credits are depleted. Please go to AI Studio to manage your project and billing.',
      );
    case 'serverError':
      return geminiError(500, 'INTERNAL', 'An internal error has occurred.');
    case 'invalid':
    case 'bodyTooLarge':
      return geminiError(400, 'INVALID_ARGUMENT', input.message ?? 'Invalid argument');
    case 'notFound':
      return geminiError(404, 'NOT_FOUND', `models/${input.model} is not found for API version v1beta.`);
    case 'unknownRoute':
      return geminiError(404, 'NOT_FOUND', input.message ?? 'Not found');
  }
}

function moonshot(input: RefusalInput): Omit<WireResponse, 'class'> {
  const error = (type: string, message: string, status = 429) => ({
    status,
    headers: {},
    body: json({ error: { message, type } }),
    code: type,
  });
  switch (input.kind) {
    case 'limit': {
      const limit = input.limit!;
      const after = seconds(input.retryAfterMs || 1000);
      if (limit.dimension === 'concurrency') {
        return error(
          'rate_limit_reached_error',
          `max organization concurrency: ${limit.amount}, please try again after ${after} seconds`,
        );
      }
      return error(
        'rate_limit_reached_error',
        `max ${describeLimit(limit)} reached: ${limit.amount}, please try again after ${after} seconds`,
      );
    }
    case 'overload':
    case 'modelOverload':
      return error('engine_overloaded_error', 'The engine is currently overloaded, please try again later');
    case 'balance':
      return error(
        'exceeded_current_quota_error',
        'Your account is suspended, please check your plan and billing details',
        403,
      );
    default:
      return openai(input);
  }
}

function dashscope(input: RefusalInput): Omit<WireResponse, 'class'> {
  if (input.kind !== 'limit') {
    if (input.kind === 'balance') {
      return {
        status: 400,
        headers: {},
        body: openaiError(
          'Access denied, please make sure your account is in good standing.',
          'Arrearage',
          'Arrearage',
        ),
        code: 'Arrearage',
      };
    }
    return openai(input);
  }
  const limit = input.limit!;
  const [code, message] =
    limit.dimension === 'requests' || limit.dimension === 'concurrency'
      ? [
          'limit_requests',
          `Requests rate limit exceeded (${describeLimit(limit)}: ${limit.amount}), please try again later.`,
        ]
      : [
          'limit_requests',
          `Allocated quota exceeded (${describeLimit(limit)}: ${limit.amount}), please try again later.`,
        ];
  return { status: 429, headers: {}, body: openaiError(message, code, code), code };
}

/** The provider's answer to a refusal, by flavour. */
export function refusalResponse(flavor: Flavor, input: RefusalInput): WireResponse {
  if (input.kind === 'bodyTooLarge') {
    // Every provider answers an oversized body with 413 in its usual invalid-request shape.
    const response = refusalResponse(flavor, {
      ...input,
      kind: 'invalid',
      message: input.message ?? 'Request body too large',
    });
    const body =
      flavor === 'anthropic' && input.anthropicApi
        ? anthropicError(
            'request_too_large',
            input.message ?? 'Request exceeds the maximum allowed number of bytes.',
          )
        : response.body;
    return {
      ...response,
      status: 413,
      body,
      code: flavor === 'anthropic' && input.anthropicApi ? 'request_too_large' : response.code,
    };
  }
  let response: Omit<WireResponse, 'class'>;
  switch (flavor) {
    case 'openai':
      response = openai(input);
      break;
    case 'azure':
      response = azure(input);
      break;
    case 'anthropic':
      response = anthropic(input);
      break;
    case 'glm':
      response = glm(input);
      break;
    case 'deepseek':
      response = deepseek(input);
      break;
    case 'gemini':
      response = gemini(input);
      break;
    case 'moonshot':
      response = moonshot(input);
      break;
    case 'dashscope':
      response = dashscope(input);
      break;
  }
  return { ...response, class: classOf(input) };
}

/** The reading with the shortest window among `dimensions`: the limit headers describe. */
function shortest(
  readings: readonly LimitReading[],
  dimensions: readonly string[],
): LimitReading | undefined {
  let best: LimitReading | undefined;
  for (const dimension of dimensions) {
    for (const reading of readings) {
      if (reading.limit.dimension !== dimension) continue;
      if (!best || reading.limit.windowMs < best.limit.windowMs) best = reading;
    }
    if (best) return best;
  }
  return undefined;
}

/**
 * The rate-limit headers a flavour sends on every response (none for GLM, DeepSeek, Gemini,
 * DashScope). Each header family describes the limit of its dimension with the shortest window.
 */
export function rateLimitHeaders(
  flavor: Flavor,
  readings: readonly LimitReading[],
  nowMs: number,
): Record<string, string> {
  const headers: Record<string, string> = {};
  switch (flavor) {
    case 'openai':
    case 'azure': {
      const families: Array<[string, string[]]> = [
        ['requests', ['requests']],
        ['tokens', ['totalTokens', 'inputTokens']],
      ];
      for (const [name, dimensions] of families) {
        const reading = shortest(readings, dimensions);
        if (!reading) continue;
        if (flavor === 'openai') {
          headers[`x-ratelimit-limit-${name}`] = String(reading.limit.amount);
          headers[`x-ratelimit-reset-${name}`] = formatGoDuration(reading.resetMs);
        }
        headers[`x-ratelimit-remaining-${name}`] = String(reading.remaining);
      }
      break;
    }
    case 'anthropic': {
      const families: Array<[string, string]> = [
        ['requests', 'requests'],
        ['tokens', 'totalTokens'],
        ['input-tokens', 'inputTokens'],
        ['output-tokens', 'outputTokens'],
      ];
      for (const [name, dimension] of families) {
        const reading = shortest(readings, [dimension]);
        if (!reading) continue;
        const remaining =
          name === 'requests' ? reading.remaining : Math.floor(reading.remaining / 1000) * 1000;
        headers[`anthropic-ratelimit-${name}-limit`] = String(reading.limit.amount);
        headers[`anthropic-ratelimit-${name}-remaining`] = String(remaining);
        headers[`anthropic-ratelimit-${name}-reset`] = rfc3339(nowMs + reading.resetMs);
      }
      break;
    }
    case 'moonshot': {
      const reading = shortest(readings, ['requests']);
      if (reading) {
        headers['x-ratelimit-limit'] = String(reading.limit.amount);
        headers['x-ratelimit-remaining'] = String(reading.remaining);
        headers['x-ratelimit-reset'] = String(Math.ceil(reading.resetMs / 1000));
      }
      break;
    }
    case 'glm':
    case 'deepseek':
    case 'gemini':
    case 'dashscope':
      break;
  }
  return headers;
}
