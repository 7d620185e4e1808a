/**
 * Trailer metadata keys that carry a typed error's structured fields across gRPC. The server
 * writes them (controller/quota/server/grpc-errors.ts), the client reads them back
 * (./status-errors.ts); both sides import the names from here.
 */
export const TRAILER = {
  /** InvalidRequestError: the proto field at fault (`input_tokens`, `usage.output_tokens`). */
  field: 'tokenlease-field',
  /** NotFoundError: provider | model | budget | lease. */
  kind: 'tokenlease-kind',
  /** NotFoundError: the unknown id. */
  id: 'tokenlease-id',
  /** RequestTooLargeError and CapacityExhaustedError: the limit that binds. */
  limit: 'tokenlease-limit',
  /** RequestTooLargeError: what the request needs of that limit. */
  requested: 'tokenlease-requested',
  /** RequestTooLargeError: the most the limit can ever allow. */
  allowed: 'tokenlease-allowed',
  /** CapacityExhaustedError: when capacity is expected back, in ms from now. */
  retryAfterMs: 'tokenlease-retry-after-ms',
} as const;
