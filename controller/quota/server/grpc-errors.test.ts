import { status, type ServiceError } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import {
  CancelledError,
  CapacityExhaustedError,
  InvalidRequestError,
  NotFoundError,
  PermissionDeniedError,
  RequestTooLargeError,
  StoreUnavailableError,
} from '../../../common/errors/errors.ts';
import { TRAILER } from '../../../common/grpc/error-trailers.ts';
import { errorFromStatus } from '../../../common/grpc/status-errors.ts';
import { MAX_REQUEST_TOKENS, MAX_WAIT_MS } from '../../../common/grpc/wire.ts';
import { MAX_TOKENS, MAX_WAIT_MS as ENGINE_MAX_WAIT_MS } from '../engine/index.ts';
import { toGrpcStatus } from './grpc-errors.ts';

/** What a client receives for `error` thrown by the engine. */
function overTheWire(error: unknown): { code: number; trailers: Record<string, unknown>; back: Error } {
  const { code, details, metadata } = toGrpcStatus(error);
  const serviceError = Object.assign(new Error(details), { code, details, metadata }) as ServiceError;
  return { code, trailers: metadata.getMap(), back: errorFromStatus(serviceError) };
}

describe('typed errors <-> gRPC status', () => {
  it('answers InvalidRequestError with INVALID_ARGUMENT naming the field, and rebuilds it', () => {
    const { code, trailers, back } = overTheWire(
      new InvalidRequestError('input_tokens', 'must be an integer'),
    );
    expect(code).toBe(status.INVALID_ARGUMENT);
    expect(trailers[TRAILER.field]).toBe('input_tokens');
    expect(back).toBeInstanceOf(InvalidRequestError);
    // The client names the QuotaApi's field, as the in-process engine would.
    expect(back).toMatchObject({ field: 'inputTokens', message: 'inputTokens: must be an integer' });
  });

  it('answers NotFoundError with NOT_FOUND and keeps kind and id', () => {
    const { code, back } = overTheWire(new NotFoundError('budget', 'ns/missing'));
    expect(code).toBe(status.NOT_FOUND);
    expect(back).toBeInstanceOf(NotFoundError);
    expect(back).toMatchObject({ kind: 'budget', id: 'ns/missing', message: 'unknown budget "ns/missing"' });
  });

  it('answers PermissionDeniedError with PERMISSION_DENIED', () => {
    const { code, back } = overTheWire(new PermissionDeniedError('budget b does not draw on provider p'));
    expect(code).toBe(status.PERMISSION_DENIED);
    expect(back).toBeInstanceOf(PermissionDeniedError);
    expect(back.message).toBe('budget b does not draw on provider p');
  });

  it('answers RequestTooLargeError with FAILED_PRECONDITION (never retried) and the limit in trailers', () => {
    const original = new RequestTooLargeError('provider totalTokens/1m', 20_000, 10_000);
    const { code, trailers, back } = overTheWire(original);
    expect(code).toBe(status.FAILED_PRECONDITION);
    expect(trailers[TRAILER.limit]).toBe('provider totalTokens/1m');
    expect(back).toBeInstanceOf(RequestTooLargeError);
    expect(back).toMatchObject({
      limit: original.limit,
      requested: 20_000,
      allowed: 10_000,
      message: original.message,
    });
  });

  it('answers CapacityExhaustedError with RESOURCE_EXHAUSTED and the retry time in trailers', () => {
    const original = new CapacityExhaustedError(1234.2, 'provider requests/1m');
    const { code, trailers, back } = overTheWire(original);
    expect(code).toBe(status.RESOURCE_EXHAUSTED);
    expect(trailers[TRAILER.retryAfterMs]).toBe('1235');
    expect(back).toBeInstanceOf(CapacityExhaustedError);
    expect(back).toMatchObject({
      retryAfterMs: 1235,
      limit: 'provider requests/1m',
      message: original.message,
    });
  });

  it('answers StoreUnavailableError with UNAVAILABLE and CancelledError with CANCELLED', () => {
    const unavailable = overTheWire(new StoreUnavailableError('redis down'));
    expect(unavailable.code).toBe(status.UNAVAILABLE);
    expect(unavailable.back).toBeInstanceOf(StoreUnavailableError);
    const cancelled = overTheWire(new CancelledError('gave up'));
    expect(cancelled.code).toBe(status.CANCELLED);
    expect(cancelled.back).toBeInstanceOf(CancelledError);
  });

  it('answers anything else with INTERNAL, flagged for the log, which the client treats as unavailable', () => {
    const answer = toGrpcStatus(new TypeError('x is undefined'));
    expect(answer).toMatchObject({ code: status.INTERNAL, internal: true });
    expect(toGrpcStatus(new NotFoundError('lease', 'l')).internal).toBe(false);
    expect(overTheWire(new TypeError('boom')).back).toBeInstanceOf(StoreUnavailableError);
  });

  it('treats a missed deadline or a dropped connection as the quota service being unavailable', () => {
    for (const code of [status.DEADLINE_EXCEEDED, status.UNAVAILABLE, status.UNKNOWN]) {
      const error = Object.assign(new Error('x'), {
        code,
        details: 'x',
        metadata: undefined,
      }) as unknown as ServiceError;
      expect(errorFromStatus(error)).toBeInstanceOf(StoreUnavailableError);
    }
  });

  it('validates requests on the wire with the same bounds as the engine', () => {
    expect(MAX_REQUEST_TOKENS).toBe(MAX_TOKENS);
    expect(MAX_WAIT_MS).toBe(ENGINE_MAX_WAIT_MS);
  });
});
