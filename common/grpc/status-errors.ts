/**
 * gRPC statuses back to the typed errors of ../errors/errors.ts: the inverse of
 * controller/quota/server/grpc-errors.ts, so code using the remote quota service sees the same
 * errors as code using the in-process engine.
 */
import { status, type ServiceError } from '@grpc/grpc-js';
import {
  CancelledError,
  CapacityExhaustedError,
  InvalidRequestError,
  NotFoundError,
  PermissionDeniedError,
  RequestTooLargeError,
  StoreUnavailableError,
  type UnknownKind,
} from '../errors/errors.ts';
import { TRAILER } from './error-trailers.ts';

const KINDS: readonly UnknownKind[] = ['provider', 'model', 'budget', 'lease'];

/** `usage.input_tokens` (proto) -> `usage.inputTokens` (QuotaApi). */
function apiFieldName(protoField: string): string {
  return protoField.replace(/_([a-z])/g, (_, letter: string) => letter.toUpperCase());
}

function trailer(error: ServiceError, key: string): string | undefined {
  const value = error.metadata?.get(key)[0];
  return value === undefined ? undefined : String(value);
}

function numberTrailer(error: ServiceError, key: string): number | undefined {
  const text = trailer(error, key);
  const value = text === undefined ? NaN : Number(text);
  return Number.isFinite(value) ? value : undefined;
}

/** Keeps the server's wording: the constructors rebuild the fields, the details are the message. */
function withMessage<E extends Error>(error: E, details: string): E {
  if (details !== '') error.message = details;
  return error;
}

export function errorFromStatus(error: ServiceError): Error {
  const details = error.details ?? '';
  switch (error.code) {
    case status.INVALID_ARGUMENT: {
      const field = trailer(error, TRAILER.field) ?? 'request';
      const prefix = `${field}: `;
      const message = details.startsWith(prefix) ? details.slice(prefix.length) : details;
      return new InvalidRequestError(apiFieldName(field), message);
    }
    case status.NOT_FOUND: {
      const kindText = trailer(error, TRAILER.kind);
      const kind = KINDS.find((k) => k === kindText);
      if (kind === undefined) return new StoreUnavailableError(`quota service: ${details}`, { cause: error });
      return withMessage(new NotFoundError(kind, trailer(error, TRAILER.id) ?? ''), details);
    }
    case status.PERMISSION_DENIED:
    case status.UNAUTHENTICATED:
      return new PermissionDeniedError(details, { cause: error });
    case status.FAILED_PRECONDITION:
      return withMessage(
        new RequestTooLargeError(
          trailer(error, TRAILER.limit) ?? 'unknown',
          numberTrailer(error, TRAILER.requested) ?? 0,
          numberTrailer(error, TRAILER.allowed) ?? 0,
        ),
        details,
      );
    case status.RESOURCE_EXHAUSTED:
      return withMessage(
        new CapacityExhaustedError(
          numberTrailer(error, TRAILER.retryAfterMs) ?? 0,
          trailer(error, TRAILER.limit),
        ),
        details,
      );
    case status.CANCELLED:
      return new CancelledError(details, { cause: error });
    default:
      // UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL and the rest: the quota service could not answer,
      // which a caller treats as the store being unreachable (the budget's failure mode applies).
      return new StoreUnavailableError(`quota service: ${status[error.code] ?? error.code}: ${details}`, {
        cause: error,
      });
  }
}
