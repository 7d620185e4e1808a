import { describe, expect, it } from 'vitest';
import {
  CapacityExhaustedError,
  InvalidRequestError,
  NotFoundError,
  RequestTooLargeError,
  StoreUnavailableError,
} from '../../common/errors/errors.ts';
import { errorResponse } from './error-response.ts';
import {
  PayloadTooLargeError,
  RouteNotFoundError,
  UnsupportedMediaTypeError,
  UpstreamError,
} from './sidecar-errors.ts';

describe('errorResponse', () => {
  it.each([
    [new InvalidRequestError('model', 'is required'), 400, 'false', undefined],
    [new UnsupportedMediaTypeError('text/plain'), 415, 'false', undefined],
    [new PayloadTooLargeError(10), 413, 'false', undefined],
    [new RouteNotFoundError('POST', '/v1/nope'), 404, 'false', undefined],
    [new NotFoundError('model', 'gpt-x'), 404, 'false', undefined],
    [new NotFoundError('budget', 'a/b'), 503, undefined, '1'],
    [new RequestTooLargeError('totalTokens/1m', 50, 10), 429, 'false', undefined],
    [new CapacityExhaustedError(1200), 429, undefined, '2'],
    [new StoreUnavailableError('down'), 503, undefined, '1'],
    [new UpstreamError('timeout', 'slow'), 504, undefined, undefined],
    [new UpstreamError('unreachable', 'refused'), 502, undefined, undefined],
    [new Error('boom'), 500, undefined, undefined],
  ])('%s -> %i', (error, status, shouldRetry, retryAfter) => {
    const response = errorResponse('openai', error);
    expect(response.status).toBe(status);
    expect(response.headers['x-should-retry']).toBe(shouldRetry);
    expect(response.headers['retry-after']).toBe(retryAfter);
  });

  it('writes the OpenAI shape with retry-after seconds rounded up and milliseconds', () => {
    const response = errorResponse('openai', new CapacityExhaustedError(1200, 'concurrency'));
    expect(response.headers).toMatchObject({
      'retry-after': '2',
      'retry-after-ms': '1200',
      'content-type': 'application/json',
    });
    expect(JSON.parse(response.body)).toEqual({
      error: {
        message: expect.stringContaining('concurrency'),
        type: 'requests',
        param: null,
        code: 'rate_limit_exceeded',
      },
    });
  });

  it('writes the Anthropic shape', () => {
    const response = errorResponse('anthropic', new InvalidRequestError('max_tokens', 'is required'));
    expect(JSON.parse(response.body)).toEqual({
      type: 'error',
      error: { type: 'invalid_request_error', message: 'max_tokens: is required' },
    });
  });

  it('names the parameter for invalid OpenAI requests and hides internal messages', () => {
    expect(
      JSON.parse(errorResponse('openai', new InvalidRequestError('model', 'is required')).body).error.param,
    ).toBe('model');
    expect(errorResponse('openai', new Error('secret detail')).body).not.toContain('secret detail');
  });
});
