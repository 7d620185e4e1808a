/**
 * Typed errors shared by every component. Each failure is a class with a fixed `name` and
 * structured fields; they are mapped to gRPC status codes and HTTP statuses in one place each
 * (controller/quota/server/grpc-errors.ts, sidecar's error responses).
 */
export class TokenleaseError extends Error {
  override name = 'TokenleaseError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** A configuration value (flag, env, file) is invalid; the binary must not start. */
export class ConfigError extends TokenleaseError {
  override name = 'ConfigError';
  readonly field: string;
  constructor(field: string, message: string, options?: { cause?: unknown }) {
    super(`${field}: ${message}`, options);
    this.field = field;
  }
}

/** Budgets YAML (or custom resources) that do not validate. */
export class BudgetValidationError extends TokenleaseError {
  override name = 'BudgetValidationError';
  readonly issues: readonly string[];
  constructor(source: string, issues: readonly string[]) {
    super(`${source}: ${issues.join('; ')}`);
    this.issues = issues;
  }
}

/** A request field is missing or out of range. */
export class InvalidRequestError extends TokenleaseError {
  override name = 'InvalidRequestError';
  readonly field: string;
  constructor(field: string, message: string) {
    super(`${field}: ${message}`);
    this.field = field;
  }
}

export type UnknownKind = 'provider' | 'model' | 'budget' | 'lease';

/** A request names a provider, model, budget or lease that does not exist. */
export class NotFoundError extends TokenleaseError {
  override name = 'NotFoundError';
  readonly kind: UnknownKind;
  readonly id: string;
  constructor(kind: UnknownKind, id: string, detail?: string) {
    super(`unknown ${kind} ${JSON.stringify(id)}${detail ? `: ${detail}` : ''}`);
    this.kind = kind;
    this.id = id;
  }
}

/** The caller may not use this budget (identity does not match the budget's workloads). */
export class PermissionDeniedError extends TokenleaseError {
  override name = 'PermissionDeniedError';
}

/** The request is larger than a limit can ever allow: retrying cannot help. */
export class RequestTooLargeError extends TokenleaseError {
  override name = 'RequestTooLargeError';
  readonly limit: string;
  readonly requested: number;
  readonly allowed: number;
  constructor(limit: string, requested: number, allowed: number) {
    super(`request needs ${requested} of ${limit} but the limit is ${allowed}`);
    this.limit = limit;
    this.requested = requested;
    this.allowed = allowed;
  }
}

/** No capacity within the caller's deadline; capacity is expected back at `retryAfterMs`. */
export class CapacityExhaustedError extends TokenleaseError {
  override name = 'CapacityExhaustedError';
  readonly retryAfterMs: number;
  readonly limit: string | undefined;
  constructor(retryAfterMs: number, limit?: string, reason?: string) {
    super(
      `${reason ?? 'no capacity within the deadline'}${limit ? ` (${limit})` : ''}; retry in ${Math.ceil(retryAfterMs)}ms`,
    );
    this.retryAfterMs = retryAfterMs;
    this.limit = limit;
  }
}

/** The store (Redis) cannot be reached or answered an error. */
export class StoreUnavailableError extends TokenleaseError {
  override name = 'StoreUnavailableError';
}

/** The caller gave up (cancelled the call or disconnected) before a lease was granted. */
export class CancelledError extends TokenleaseError {
  override name = 'CancelledError';
}

/** The tokenizer's rank table (a `.tiktoken` file shipped by a package) is missing or malformed. */
export class TokenizerDataError extends TokenleaseError {
  override name = 'TokenizerDataError';
}
