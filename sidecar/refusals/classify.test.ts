import { describe, expect, it } from 'vitest';
import type { Flavor } from '../../common/budgets/types.ts';
import { classifyResponse, type Classification } from './classify.ts';
import { parseRateLimitHeaders, rateLimitObservations } from './rate-limit-headers.ts';
import { resetAtFromMessage, retryAfterFromHeaders, retryAfterFromMessage } from './retry-hint.ts';

const NOW = Date.parse('2026-03-01T10:00:00Z');

function glm(code: string, message = 'refused'): string {
  return JSON.stringify({ error: { code, message } });
}

// One row per line of PROVIDERS.md "How a refusal looks" and the Zhipu code table.
const cases: Array<[string, Flavor, number, Record<string, string>, string, Partial<Classification>]> = [
  ['2xx is ok', 'openai', 200, {}, '{}', { kind: 'ok', outcome: 'ok', retryable: false }],
  [
    'OpenAI rate limit with hinted delay',
    'openai',
    429,
    {},
    JSON.stringify({
      error: {
        type: 'tokens',
        code: 'rate_limit_exceeded',
        message: 'Rate limit reached for gpt-4o on tokens per min (TPM). Please try again in 1.146s.',
      },
    }),
    {
      kind: 'rate',
      outcome: 'refusedRate',
      retryable: true,
      retryAfterMs: 1146,
      code: 'rate_limit_exceeded',
    },
  ],
  [
    'OpenAI retry-after-ms header wins over the message',
    'openai',
    429,
    { 'retry-after-ms': '250', 'retry-after': '3' },
    JSON.stringify({ error: { type: 'requests', code: 'rate_limit_exceeded', message: 'try again in 2s' } }),
    { kind: 'rate', retryAfterMs: 250 },
  ],
  [
    'OpenAI insufficient_quota never retries',
    'openai',
    429,
    {},
    JSON.stringify({
      error: {
        type: 'insufficient_quota',
        code: 'insufficient_quota',
        message: 'You exceeded your current quota',
      },
    }),
    { kind: 'balance', outcome: 'refusedBalance', retryable: false },
  ],
  [
    'OpenAI request too large never retries',
    'openai',
    429,
    {},
    JSON.stringify({
      error: {
        type: 'tokens',
        code: 'rate_limit_exceeded',
        message: 'Request too large for gpt-4o on tokens per min (TPM): Limit 30000, Requested 50000.',
      },
    }),
    { kind: 'tooLarge', outcome: 'tooLarge', retryable: false },
  ],
  [
    'OpenAI daily limit is a window',
    'openai',
    429,
    {},
    JSON.stringify({
      error: {
        type: 'tokens',
        code: 'rate_limit_exceeded',
        message: 'Rate limit reached on tokens per day (TPD). Please try again in 6m0s.',
      },
    }),
    { kind: 'window', outcome: 'refusedWindow', retryAfterMs: 360_000, resetAtMs: NOW + 360_000 },
  ],
  [
    'Azure rate limit with retry-after seconds',
    'azure',
    429,
    { 'retry-after': '6' },
    JSON.stringify({
      error: {
        code: '429',
        message: 'Requests have exceeded call rate limit. Please retry after 6 seconds.',
      },
    }),
    { kind: 'rate', retryable: true, retryAfterMs: 6000 },
  ],
  [
    'Anthropic rate_limit_error',
    'anthropic',
    429,
    { 'retry-after': '2' },
    JSON.stringify({
      type: 'error',
      error: {
        type: 'rate_limit_error',
        message: 'Number of request tokens has exceeded your per-minute rate limit',
      },
    }),
    { kind: 'rate', outcome: 'refusedRate', retryable: true, retryAfterMs: 2000, code: 'rate_limit_error' },
  ],
  [
    'Anthropic 529 overloaded',
    'anthropic',
    529,
    {},
    JSON.stringify({ type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } }),
    { kind: 'overload', outcome: 'overloaded', retryable: true },
  ],
  [
    'Anthropic x-should-retry false',
    'anthropic',
    429,
    { 'x-should-retry': 'false' },
    JSON.stringify({ type: 'error', error: { type: 'rate_limit_error', message: 'too many' } }),
    { kind: 'rate', retryable: false },
  ],
  [
    'GLM 1113 arrears',
    'glm',
    429,
    {},
    glm('1113'),
    { kind: 'balance', outcome: 'refusedBalance', retryable: false, code: '1113' },
  ],
  [
    'GLM 1302 concurrency',
    'glm',
    429,
    {},
    glm('1302'),
    { kind: 'concurrency', outcome: 'refusedConcurrency', retryable: true },
  ],
  [
    'GLM 1303 frequency',
    'glm',
    429,
    {},
    glm('1303'),
    { kind: 'rate', outcome: 'refusedRate', retryable: true },
  ],
  [
    'GLM 1304 daily',
    'glm',
    429,
    {},
    glm('1304'),
    { kind: 'window', outcome: 'refusedWindow', retryable: true },
  ],
  [
    'GLM 1305 overload',
    'glm',
    429,
    {},
    glm('1305'),
    { kind: 'overload', outcome: 'overloaded', retryable: true },
  ],
  [
    'GLM 1308 plan window with reset time',
    'glm',
    429,
    {},
    glm('1308', 'Usage limit reached for 5 hour. Your limit will reset at 2026-03-01 20:30:00'),
    {
      kind: 'window',
      outcome: 'refusedWindow',
      resetAtMs: Date.parse('2026-03-01T12:30:00Z'),
      retryAfterMs: 9_000_000,
    },
  ],
  [
    'GLM 1309 plan expired',
    'glm',
    429,
    {},
    glm('1309'),
    { kind: 'subscription', outcome: 'refusedBalance', retryable: false },
  ],
  [
    'GLM 1310 weekly limit with reset time',
    'glm',
    429,
    {},
    glm('1310', 'Weekly limit reached, resets at 2026-03-02 08:00:00'),
    { kind: 'window', resetAtMs: Date.parse('2026-03-02T00:00:00Z') },
  ],
  [
    'GLM 1311 model not in plan',
    'glm',
    400,
    {},
    glm('1311'),
    { kind: 'entitlement', outcome: 'error', retryable: false },
  ],
  [
    'GLM 1312 model overloaded',
    'glm',
    429,
    {},
    glm('1312'),
    { kind: 'overload', outcome: 'overloaded', retryable: true },
  ],
  ['GLM 1313 fair use', 'glm', 429, {}, glm('1313'), { kind: 'riskControl', outcome: 'refusedRate' }],
  [
    'GLM numeric code is read as text',
    'glm',
    429,
    {},
    JSON.stringify({ error: { code: 1302, message: 'x' } }),
    { kind: 'concurrency' },
  ],
  [
    'DeepSeek 429',
    'deepseek',
    429,
    {},
    '{"error":{"message":"Rate Limit Reached"}}',
    { kind: 'concurrency', retryable: true },
  ],
  [
    'DeepSeek 402 balance',
    'deepseek',
    402,
    {},
    '{"error":{"message":"Insufficient Balance"}}',
    { kind: 'balance', retryable: false },
  ],
  [
    'DeepSeek 503 overload',
    'deepseek',
    503,
    {},
    '{"error":{"message":"Server overloaded"}}',
    { kind: 'overload', retryable: true },
  ],
  [
    'Gemini array body with RetryInfo',
    'gemini',
    429,
    {},
    JSON.stringify([
      {
        error: {
          code: 429,
          message: 'Resource has been exhausted (e.g. check quota).',
          status: 'RESOURCE_EXHAUSTED',
          details: [{ '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: '17s' }],
        },
      },
    ]),
    { kind: 'rate', retryable: true, retryAfterMs: 17_000, code: '429' },
  ],
  [
    'Gemini per-day quota is a window',
    'gemini',
    429,
    {},
    JSON.stringify([
      {
        error: {
          code: 429,
          status: 'RESOURCE_EXHAUSTED',
          message: 'Quota exceeded for GenerateRequestsPerDayPerProjectPerModel',
        },
      },
    ]),
    { kind: 'window' },
  ],
  [
    'Moonshot 429 concurrency',
    'moonshot',
    429,
    {},
    JSON.stringify({
      error: {
        type: 'rate_limit_reached_error',
        message: 'max organization concurrency: 50, please try again after 1 seconds',
      },
    }),
    { kind: 'concurrency' },
  ],
  [
    'Moonshot 429 rpm',
    'moonshot',
    429,
    {},
    JSON.stringify({ error: { type: 'rate_limit_reached_error', message: 'max RPM: 200' } }),
    { kind: 'rate' },
  ],
  [
    'Moonshot 403 balance',
    'moonshot',
    403,
    {},
    JSON.stringify({
      error: { type: 'exceeded_current_quota_error', message: 'suspended due to insufficient balance' },
    }),
    { kind: 'balance', retryable: false },
  ],
  [
    'DashScope 429 names the cause',
    'dashscope',
    429,
    {},
    JSON.stringify({
      error: {
        code: 'limit_requests',
        type: 'limit_requests',
        message: 'Requests rate limit exceeded, please try again later.',
      },
    }),
    { kind: 'rate', retryable: true },
  ],
  [
    'DashScope arrears',
    'dashscope',
    400,
    {},
    JSON.stringify({
      error: {
        code: 'Arrearage',
        message: 'Access denied, please make sure your account is in good standing.',
      },
    }),
    { kind: 'balance', retryable: false },
  ],
  [
    'plain 400 is a client error',
    'openai',
    400,
    {},
    '{"error":{"message":"bad"}}',
    { kind: 'clientError', outcome: 'error', retryable: false },
  ],
  [
    '500 with a text body',
    'openai',
    500,
    {},
    'Internal Server Error',
    { kind: 'serverError', outcome: 'error' },
  ],
];

describe('classifyResponse', () => {
  it.each(cases)('%s', (_name, flavor, status, headers, body, expected) => {
    expect(classifyResponse(flavor, { status, headers, body }, NOW)).toMatchObject(expected);
  });
});

describe('retry hints', () => {
  it.each([
    [{ 'retry-after-ms': '1500' }, 1500],
    [{ 'retry-after': '1.5' }, 1500],
    [{ 'retry-after': '3' }, 3000],
    [{ 'retry-after': new Date(NOW + 4000).toUTCString() }, 4000],
    [{ 'retry-after': 'soon' }, undefined],
    [{}, undefined],
  ])('headers %j -> %s', (headers, ms) => expect(retryAfterFromHeaders(headers, NOW)).toBe(ms));

  it.each([
    ['Please try again in 1.146s.', 1146],
    ['Please try again in 20ms.', 20],
    ['Please try again in 1m30.5s.', 90_500],
    ['Please retry after 6 seconds.', 6000],
    ['nothing here', undefined],
  ])('message %j -> %s', (message, ms) => expect(retryAfterFromMessage(message)).toBe(ms));

  it('reads reset times with and without a zone', () => {
    expect(resetAtFromMessage('resets at 2026-03-01 20:30:00')).toBe(Date.parse('2026-03-01T12:30:00Z'));
    expect(resetAtFromMessage('resets at 2026-03-01T20:30:00Z')).toBe(Date.parse('2026-03-01T20:30:00Z'));
    expect(resetAtFromMessage('resets at 2026-03-01T20:30:00+0100')).toBe(Date.parse('2026-03-01T19:30:00Z'));
  });
});

describe('parseRateLimitHeaders', () => {
  it('reads OpenAI headers with Go-duration resets', () => {
    const parsed = parseRateLimitHeaders(
      'openai',
      {
        'x-ratelimit-limit-requests': '5000',
        'x-ratelimit-remaining-requests': '4999',
        'x-ratelimit-reset-requests': '12ms',
        'x-ratelimit-limit-tokens': '800000',
        'x-ratelimit-remaining-tokens': '799000',
        'x-ratelimit-reset-tokens': '1m30.5s',
      },
      NOW,
    );
    expect(parsed).toEqual({
      requests: { limit: 5000, remaining: 4999, resetAtMs: NOW + 12 },
      tokens: { limit: 800000, remaining: 799000, resetAtMs: NOW + 90_500 },
    });
  });

  it('treats Azure placeholders as unknown', () => {
    const parsed = parseRateLimitHeaders(
      'azure',
      { 'x-ratelimit-remaining-requests': '-1', 'x-ratelimit-remaining-tokens': '0' },
      NOW,
    );
    expect(parsed).toEqual({});
  });

  it('reads Anthropic headers with RFC 3339 resets', () => {
    const parsed = parseRateLimitHeaders(
      'anthropic',
      {
        'anthropic-ratelimit-requests-limit': '50',
        'anthropic-ratelimit-requests-remaining': '49',
        'anthropic-ratelimit-requests-reset': '2026-03-01T10:00:01Z',
        'anthropic-ratelimit-input-tokens-limit': '40000',
        'anthropic-ratelimit-input-tokens-remaining': '39000',
        'anthropic-ratelimit-input-tokens-reset': '2026-03-01T10:00:02Z',
      },
      NOW,
    );
    expect(parsed).toEqual({
      requests: { limit: 50, remaining: 49, resetAtMs: NOW + 1000 },
      inputTokens: { limit: 40000, remaining: 39000, resetAtMs: NOW + 2000 },
    });
  });

  it('reads Moonshot headers and nothing for GLM', () => {
    expect(
      parseRateLimitHeaders(
        'moonshot',
        { 'x-ratelimit-limit': '200', 'x-ratelimit-remaining': '10', 'x-ratelimit-reset': '5' },
        NOW,
      ),
    ).toEqual({ requests: { limit: 200, remaining: 10, resetAtMs: NOW + 5000 } });
    expect(parseRateLimitHeaders('glm', { 'x-ratelimit-limit': '200' }, NOW)).toEqual({});
  });
});

describe('rateLimitObservations', () => {
  it('turns parsed headers into what Settle carries', () => {
    const parsed = parseRateLimitHeaders(
      'openai',
      {
        'x-ratelimit-limit-tokens': '1000',
        'x-ratelimit-remaining-tokens': '10',
        'x-ratelimit-reset-tokens': '2s',
      },
      NOW,
    );
    expect(rateLimitObservations(parsed, NOW)).toEqual([
      { dimension: 'totalTokens', limit: 1000, remaining: 10, resetMs: 2000 },
    ]);
    expect(rateLimitObservations({}, NOW)).toBeUndefined();
  });
});
