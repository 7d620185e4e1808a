/**
 * Failures only the HTTP side of the sidecar has. Everything else uses the shared classes of
 * common/errors/errors.ts; error-response.ts maps both to HTTP.
 */
import { TokenleaseError } from '../../common/errors/errors.ts';
import type { Outcome } from '../../common/quota-api.ts';
import type { RefusalKind } from '../refusals/classify.ts';

/** The body is not JSON, or not `application/json`. */
export class UnsupportedMediaTypeError extends TokenleaseError {
  override name = 'UnsupportedMediaTypeError';
  readonly contentType: string;
  constructor(contentType: string) {
    super(`content-type must be application/json, got ${JSON.stringify(contentType)}`);
    this.contentType = contentType;
  }
}

/** The body is larger than the configured maximum. */
export class PayloadTooLargeError extends TokenleaseError {
  override name = 'PayloadTooLargeError';
  readonly maxBytes: number;
  constructor(maxBytes: number) {
    super(`request body is larger than ${maxBytes} bytes`);
    this.maxBytes = maxBytes;
  }
}

/** No API the sidecar serves lives at this method and path. */
export class RouteNotFoundError extends TokenleaseError {
  override name = 'RouteNotFoundError';
  readonly method: string;
  readonly path: string;
  constructor(method: string, path: string) {
    super(`no route for ${method} ${path}`);
    this.method = method;
    this.path = path;
  }
}

/** The provider did not answer in time, or could not be reached. */
export class UpstreamError extends TokenleaseError {
  override name = 'UpstreamError';
  readonly reason: 'timeout' | 'unreachable';
  constructor(reason: 'timeout' | 'unreachable', message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.reason = reason;
  }
}

/**
 * A provider refused a call that another provider of the route may serve (overload, 5xx, a
 * closed window, a retry that does not fit): it carries the provider's answer, which the app
 * gets as it was when no later provider serves the call either.
 */
export class UpstreamRefusalError extends TokenleaseError {
  override name = 'UpstreamRefusalError';
  readonly provider: string;
  readonly kind: RefusalKind;
  readonly outcome: Outcome;
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: Buffer;
  constructor(
    provider: string,
    verdict: { kind: RefusalKind; outcome: Outcome },
    answer: { status: number; headers: Record<string, string | string[] | undefined>; body: Buffer },
  ) {
    super(`upstream ${provider} refused the call (${verdict.kind}, HTTP ${answer.status})`);
    this.provider = provider;
    this.kind = verdict.kind;
    this.outcome = verdict.outcome;
    this.status = answer.status;
    this.headers = answer.headers;
    this.body = answer.body;
  }
}

/** Every provider of the call's route is circuit-broken; the first probe is due in `retryAfterMs`. */
export class CircuitOpenError extends TokenleaseError {
  override name = 'CircuitOpenError';
  readonly providers: readonly string[];
  readonly retryAfterMs: number;
  constructor(providers: readonly string[], retryAfterMs: number) {
    super(
      `circuit open for ${providers.join(', ')} after repeated failures; retry in ${Math.ceil(retryAfterMs)}ms`,
    );
    this.providers = providers;
    this.retryAfterMs = retryAfterMs;
  }
}
