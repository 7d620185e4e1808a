/**
 * The one place where the typed errors of common/errors/errors.ts become gRPC statuses. Structured
 * fields travel as trailer metadata (common/grpc/error-trailers.ts) so the client can rebuild the
 * same error (common/grpc/status-errors.ts).
 */
import { Metadata, status, type StatusObject } from '@grpc/grpc-js';
import { TRAILER } from '../../../common/grpc/error-trailers.ts';
import {
  CancelledError,
  CapacityExhaustedError,
  InvalidRequestError,
  NotFoundError,
  PermissionDeniedError,
  RequestTooLargeError,
  StoreUnavailableError,
} from '../../../common/errors/errors.ts';

export type GrpcErrorStatus = Pick<StatusObject, 'code' | 'details' | 'metadata'>;

function withTrailers(code: status, details: string, trailers: Record<string, string | number | undefined>) {
  const metadata = new Metadata();
  for (const [key, value] of Object.entries(trailers)) {
    if (value !== undefined) metadata.set(key, String(value));
  }
  return { code, details, metadata };
}

/**
 * The status answering `error`. `internal` is true for failures that are not a typed answer to the
 * caller (a bug or an unexpected error): the server logs those.
 */
export function toGrpcStatus(error: unknown): GrpcErrorStatus & { internal: boolean } {
  const message = error instanceof Error ? error.message : String(error);
  let answer: GrpcErrorStatus;
  if (error instanceof InvalidRequestError) {
    answer = withTrailers(status.INVALID_ARGUMENT, message, { [TRAILER.field]: error.field });
  } else if (error instanceof NotFoundError) {
    answer = withTrailers(status.NOT_FOUND, message, { [TRAILER.kind]: error.kind, [TRAILER.id]: error.id });
  } else if (error instanceof PermissionDeniedError) {
    answer = withTrailers(status.PERMISSION_DENIED, message, {});
  } else if (error instanceof RequestTooLargeError) {
    // Not RESOURCE_EXHAUSTED: that one means "retry later", and this request can never succeed.
    answer = withTrailers(status.FAILED_PRECONDITION, message, {
      [TRAILER.limit]: error.limit,
      [TRAILER.requested]: error.requested,
      [TRAILER.allowed]: error.allowed,
    });
  } else if (error instanceof CapacityExhaustedError) {
    answer = withTrailers(status.RESOURCE_EXHAUSTED, message, {
      [TRAILER.retryAfterMs]: Math.max(0, Math.ceil(error.retryAfterMs)),
      [TRAILER.limit]: error.limit,
    });
  } else if (error instanceof CancelledError) {
    answer = withTrailers(status.CANCELLED, message, {});
  } else if (error instanceof StoreUnavailableError) {
    answer = withTrailers(status.UNAVAILABLE, message, {});
  } else {
    return { ...withTrailers(status.INTERNAL, `internal error: ${message}`, {}), internal: true };
  }
  return { ...answer, internal: false };
}
