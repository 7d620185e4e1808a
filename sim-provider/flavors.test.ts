import { describe, expect, it } from 'vitest';
import { FLAVORS, type Flavor, type Limit } from '../common/budgets/types.ts';
import { classifyResponse } from '../sidecar/refusals/classify.ts';
import { parseRateLimitHeaders } from '../sidecar/refusals/rate-limit-headers.ts';
import {
  beijingTime,
  describeLimit,
  rateLimitHeaders,
  refusalResponse,
  rfc3339,
  type RefusalInput,
} from './flavors.ts';
import { formatGoDuration } from './go-duration.ts';
import { Limiter, type LimitState } from './limiter.ts';

const NOW = Date.parse('2026-03-01T12:00:00Z');

function limitState(limit: Limit): LimitState {
  return new Limiter([limit]).all()[0]!;
}

function limitRefusal(limit: Limit, retryAfterMs: number, extra: Partial<RefusalInput> = {}): RefusalInput {
  return {
    kind: 'limit',
    model: 'm1',
    limit: limitState(limit),
    requested: 1,
    used: limit.amount,
    retryAfterMs,
    anthropicApi: false,
    nowMs: NOW,
    ...extra,
  };
}

describe('formatGoDuration', () => {
  it('writes Go durations as OpenAI does', () => {
    expect(formatGoDuration(0)).toBe('0s');
    expect(formatGoDuration(12)).toBe('12ms');
    expect(formatGoDuration(11.2)).toBe('12ms');
    expect(formatGoDuration(1000)).toBe('1s');
    expect(formatGoDuration(1146)).toBe('1.146s');
    expect(formatGoDuration(90_500)).toBe('1m30.5s');
    expect(formatGoDuration(360_000)).toBe('6m0s');
    expect(formatGoDuration(3_600_000)).toBe('1h0m0s');
  });
});

describe('describeLimit', () => {
  it('names limits as providers do', () => {
    expect(describeLimit(limitState({ dimension: 'totalTokens', amount: 1, window: '1m' }))).toBe(
      'tokens per min (TPM)',
    );
    expect(describeLimit(limitState({ dimension: 'requests', amount: 1, window: '1d' }))).toBe(
      'requests per day (RPD)',
    );
    expect(describeLimit(limitState({ dimension: 'requests', amount: 1, window: '5h' }))).toBe(
      'requests per 5h',
    );
    expect(describeLimit(limitState({ dimension: 'concurrency', amount: 1 }))).toBe('concurrent requests');
  });
});

describe('refusalResponse', () => {
  it('OpenAI: 429 rate_limit_exceeded with type and a Go-duration hint', () => {
    const response = refusalResponse(
      'openai',
      limitRefusal({ dimension: 'totalTokens', amount: 1000, window: '1m' }, 1146, {
        requested: 50,
        used: 990,
      }),
    );
    expect(response.status).toBe(429);
    const body = JSON.parse(response.body);
    expect(body.error).toMatchObject({ type: 'tokens', code: 'rate_limit_exceeded', param: null });
    expect(body.error.message).toContain('Limit 1000, Used 990, Requested 50. Please try again in 1.146s.');
    expect(response.class).toBe('rate');
  });

  it('OpenAI: request too large and insufficient_quota', () => {
    const tooLarge = refusalResponse('openai', {
      ...limitRefusal({ dimension: 'totalTokens', amount: 1000, window: '1m' }, 0),
      kind: 'tooLarge',
      requested: 5000,
    });
    expect(tooLarge.status).toBe(429);
    expect(JSON.parse(tooLarge.body).error.message).toMatch(
      /^Request too large for m1 .*Limit 1000, Requested 5000/,
    );
    const balance = refusalResponse('openai', {
      kind: 'balance',
      model: 'm1',
      anthropicApi: false,
      nowMs: NOW,
    });
    expect(balance.status).toBe(429);
    expect(JSON.parse(balance.body).error).toMatchObject({
      type: 'insufficient_quota',
      code: 'insufficient_quota',
    });
  });

  it('Anthropic: 429 rate_limit_error with integer retry-after; 529 overloaded_error', () => {
    const response = refusalResponse(
      'anthropic',
      limitRefusal({ dimension: 'inputTokens', amount: 40_000, window: '1m' }, 1200, { anthropicApi: true }),
    );
    expect(response.status).toBe(429);
    expect(response.headers['retry-after']).toBe('2');
    expect(JSON.parse(response.body)).toMatchObject({ type: 'error', error: { type: 'rate_limit_error' } });
    const overload = refusalResponse('anthropic', {
      kind: 'overload',
      model: 'm',
      anthropicApi: true,
      nowMs: NOW,
    });
    expect(overload.status).toBe(529);
    expect(JSON.parse(overload.body).error.type).toBe('overloaded_error');
  });

  it('GLM: HTTP 429 with string codes chosen by limit kind, plan windows stating the reset in Beijing time', () => {
    const code = (limit: Limit, retryAfterMs = 0) => {
      const response = refusalResponse('glm', limitRefusal(limit, retryAfterMs));
      expect(response.status).toBe(429);
      return JSON.parse(response.body).error as { code: string; message: string };
    };
    expect(code({ dimension: 'concurrency', amount: 5 }).code).toBe('1302');
    expect(code({ dimension: 'requests', amount: 5, window: '1m' }).code).toBe('1303');
    expect(code({ dimension: 'requests', amount: 5, window: '1d' }).code).toBe('1304');
    const plan = code({ dimension: 'requests', amount: 600, window: '5h' }, 3_600_000);
    expect(plan.code).toBe('1308');
    expect(plan.message).toBe('Usage limit reached for 5 hour. Your limit will reset at 2026-03-01 21:00:00');
    expect(code({ dimension: 'requests', amount: 5, window: '1w' }, 1000).code).toBe('1310');
    const overload = (kind: 'overload' | 'modelOverload' | 'balance') =>
      JSON.parse(refusalResponse('glm', { kind, model: 'm', anthropicApi: false, nowMs: NOW }).body).error
        .code;
    expect([overload('overload'), overload('modelOverload'), overload('balance')]).toEqual([
      '1305',
      '1312',
      '1113',
    ]);
  });

  it('Gemini: a JSON array body with RESOURCE_EXHAUSTED and RetryInfo', () => {
    const response = refusalResponse(
      'gemini',
      limitRefusal({ dimension: 'requests', amount: 5, window: '1m' }, 12_100),
    );
    expect(response.status).toBe(429);
    const body = JSON.parse(response.body);
    expect(Array.isArray(body)).toBe(true);
    expect(body[0].error).toMatchObject({ code: 429, status: 'RESOURCE_EXHAUSTED' });
    expect(body[0].error.details[0].retryDelay).toBe('13s');
  });

  it('DeepSeek: 429 for limits, 402 balance, 503 overload', () => {
    const status = (input: RefusalInput) => refusalResponse('deepseek', input).status;
    expect(status(limitRefusal({ dimension: 'concurrency', amount: 5 }, 0))).toBe(429);
    expect(status({ kind: 'balance', model: 'm', anthropicApi: false, nowMs: NOW })).toBe(402);
    expect(status({ kind: 'overload', model: 'm', anthropicApi: false, nowMs: NOW })).toBe(503);
  });

  it('every flavour answers a too-large body with 413 and bad input with 4xx', () => {
    for (const flavor of FLAVORS) {
      expect(
        refusalResponse(flavor, { kind: 'bodyTooLarge', model: 'm', anthropicApi: false, nowMs: NOW }).status,
      ).toBe(413);
      const invalid = refusalResponse(flavor, {
        kind: 'invalid',
        message: 'bad',
        param: 'model',
        model: 'm',
        anthropicApi: false,
        nowMs: NOW,
      });
      expect(invalid.status).toBe(400);
      expect(invalid.class).toBe('invalid');
    }
  });
});

describe('agreement with the sidecar classifier', () => {
  // The sidecar must read every refusal the simulated provider sends as the class it means.
  const cases: Array<[Flavor, RefusalInput, string]> = [];
  const limits: Array<[Limit, string]> = [
    [{ dimension: 'concurrency', amount: 5 }, 'concurrency'],
    [{ dimension: 'requests', amount: 5, window: '1m' }, 'rate'],
    [{ dimension: 'requests', amount: 600, window: '5h' }, 'window'],
  ];
  for (const [limit, kind] of limits) cases.push(['glm', limitRefusal(limit, 60_000), kind]);
  for (const flavor of ['openai', 'azure', 'anthropic', 'gemini', 'moonshot', 'dashscope'] as const) {
    cases.push([
      flavor,
      limitRefusal({ dimension: 'requests', amount: 5, window: '1m' }, 2000, {
        anthropicApi: flavor === 'anthropic',
      }),
      'rate',
    ]);
  }
  cases.push(['gemini', limitRefusal({ dimension: 'requests', amount: 5, window: '1d' }, 2000), 'window']);
  cases.push(['openai', limitRefusal({ dimension: 'requests', amount: 5, window: '1d' }, 2000), 'window']);
  cases.push(['deepseek', limitRefusal({ dimension: 'concurrency', amount: 5 }, 0), 'concurrency']);
  for (const flavor of ['openai', 'anthropic', 'glm', 'deepseek', 'gemini', 'moonshot'] as const) {
    cases.push([
      flavor,
      { kind: 'overload', model: 'm', anthropicApi: flavor === 'anthropic', nowMs: NOW },
      'overload',
    ]);
  }
  for (const flavor of ['openai', 'anthropic', 'glm', 'deepseek', 'moonshot', 'dashscope'] as const) {
    cases.push([
      flavor,
      { kind: 'balance', model: 'm', anthropicApi: flavor === 'anthropic', nowMs: NOW },
      'balance',
    ]);
  }
  cases.push([
    'openai',
    {
      ...limitRefusal({ dimension: 'totalTokens', amount: 10, window: '1m' }, 0),
      kind: 'tooLarge',
      requested: 20,
    },
    'tooLarge',
  ]);

  it.each(cases)('%s %#', (flavor, input, kind) => {
    const response = refusalResponse(flavor, input);
    const classified = classifyResponse(
      flavor,
      { status: response.status, headers: response.headers, body: response.body },
      NOW,
    );
    expect(classified.kind).toBe(kind);
  });

  it('GLM plan-window reset time and OpenAI try-again hints are read back exactly (to the second / ms)', () => {
    const glm = refusalResponse(
      'glm',
      limitRefusal({ dimension: 'requests', amount: 600, window: '5h' }, 3_599_500),
    );
    const read = classifyResponse('glm', { status: glm.status, headers: glm.headers, body: glm.body }, NOW);
    expect(read.resetAtMs).toBe(NOW + 3_600_000);
    const openai = refusalResponse(
      'openai',
      limitRefusal({ dimension: 'requests', amount: 5, window: '1m' }, 1146),
    );
    expect(
      classifyResponse('openai', { status: 429, headers: {}, body: openai.body }, NOW).retryAfterMs,
    ).toBe(1146);
  });
});

describe('rateLimitHeaders', () => {
  const limiter = new Limiter([
    { dimension: 'requests', amount: 100, window: '1m' },
    { dimension: 'requests', amount: 1000, window: '1d' },
    { dimension: 'totalTokens', amount: 50_000, window: '1m' },
    { dimension: 'inputTokens', amount: 30_000, window: '1m' },
    { dimension: 'outputTokens', amount: 8_000, window: '1m' },
  ]);
  limiter.admit(0, 'm', { input: 1500, output: 500 });
  const readings = limiter.read(30_500, 'm');

  it('OpenAI: limit/remaining/reset of the shortest window, Go-duration resets', () => {
    const headers = rateLimitHeaders('openai', readings, 30_500);
    expect(headers).toEqual({
      'x-ratelimit-limit-requests': '100',
      'x-ratelimit-remaining-requests': '99',
      'x-ratelimit-reset-requests': '29.5s',
      'x-ratelimit-limit-tokens': '50000',
      'x-ratelimit-remaining-tokens': '48000',
      'x-ratelimit-reset-tokens': '29.5s',
    });
    expect(parseRateLimitHeaders('openai', headers, 30_500).requests).toEqual({
      limit: 100,
      remaining: 99,
      resetAtMs: 60_000,
    });
  });

  it('Anthropic: RFC 3339 resets and token remaining rounded down to thousands', () => {
    const headers = rateLimitHeaders('anthropic', readings, NOW);
    expect(headers['anthropic-ratelimit-requests-remaining']).toBe('99');
    expect(headers['anthropic-ratelimit-tokens-remaining']).toBe('48000');
    expect(headers['anthropic-ratelimit-input-tokens-remaining']).toBe('28000');
    expect(headers['anthropic-ratelimit-output-tokens-remaining']).toBe('7000');
    expect(headers['anthropic-ratelimit-requests-reset']).toBe(rfc3339(NOW + 29_500));
    expect(headers['anthropic-ratelimit-requests-reset']).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);
  });

  it('GLM, DeepSeek and Gemini send none', () => {
    for (const flavor of ['glm', 'deepseek', 'gemini'] as const)
      expect(rateLimitHeaders(flavor, readings, 0)).toEqual({});
  });

  it('beijingTime is UTC+8 without a zone', () => {
    expect(beijingTime(Date.parse('2026-03-01T12:00:00.200Z'))).toBe('2026-03-01 20:00:01');
  });
});
