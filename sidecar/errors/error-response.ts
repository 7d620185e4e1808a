/**
 * The one mapping from a failure to the HTTP answer the sidecar gives, written in the calling
 * API's own error format so that unmodified clients read it (and retry it, or not) as they would
 * the provider's.
 */
import type { Api } from '../../common/budgets/types.ts';
import {
  CapacityExhaustedError,
  InvalidRequestError,
  NotFoundError,
  PermissionDeniedError,
  RequestTooLargeError,
  StoreUnavailableError,
} from '../../common/errors/errors.ts';
import {
  CircuitOpenError,
  PayloadTooLargeError,
  RouteNotFoundError,
  UnsupportedMediaTypeError,
  UpstreamError,
} from './sidecar-errors.ts';

export interface ErrorResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

interface Mapped {
  status: number;
  /** OpenAI `type`. */
  openaiType: string;
  /** Anthropic `error.type`. */
  anthropicType: string;
  code: string;
  param?: string;
  retryAfterMs?: number;
  /** Retrying the same request cannot succeed: tell the SDKs not to. */
  noRetry?: boolean;
}

/** Unavailable quota service: clients may come back soon. */
const UNAVAILABLE_RETRY_MS = 1000;

function map(error: unknown): Mapped {
  if (error instanceof InvalidRequestError) {
    return {
      status: 400,
      openaiType: 'invalid_request_error',
      anthropicType: 'invalid_request_error',
      code: 'invalid_request',
      param: error.field,
      noRetry: true,
    };
  }
  if (error instanceof UnsupportedMediaTypeError) {
    return {
      status: 415,
      openaiType: 'invalid_request_error',
      anthropicType: 'invalid_request_error',
      code: 'unsupported_media_type',
      noRetry: true,
    };
  }
  if (error instanceof PayloadTooLargeError) {
    return {
      status: 413,
      openaiType: 'invalid_request_error',
      anthropicType: 'request_too_large',
      code: 'request_too_large',
      noRetry: true,
    };
  }
  if (error instanceof RouteNotFoundError) {
    return {
      status: 404,
      openaiType: 'invalid_request_error',
      anthropicType: 'not_found_error',
      code: 'unknown_url',
      noRetry: true,
    };
  }
  if (error instanceof NotFoundError) {
    if (error.kind === 'model') {
      return {
        status: 404,
        openaiType: 'invalid_request_error',
        anthropicType: 'not_found_error',
        code: 'model_not_found',
        param: 'model',
        noRetry: true,
      };
    }
    // The quota service does not know this sidecar's budget or provider yet (or lost a lease):
    // a configuration the controller may still be reconciling.
    return {
      status: 503,
      openaiType: 'server_error',
      anthropicType: 'api_error',
      code: `unknown_${error.kind}`,
      retryAfterMs: UNAVAILABLE_RETRY_MS,
    };
  }
  if (error instanceof PermissionDeniedError) {
    return {
      status: 403,
      openaiType: 'invalid_request_error',
      anthropicType: 'permission_error',
      code: 'permission_denied',
      noRetry: true,
    };
  }
  if (error instanceof RequestTooLargeError) {
    return {
      status: 429,
      openaiType: 'tokens',
      anthropicType: 'rate_limit_error',
      code: 'request_too_large',
      noRetry: true,
    };
  }
  if (error instanceof CapacityExhaustedError) {
    return {
      status: 429,
      openaiType: 'requests',
      anthropicType: 'rate_limit_error',
      code: 'rate_limit_exceeded',
      retryAfterMs: Math.max(1, error.retryAfterMs),
    };
  }
  if (error instanceof StoreUnavailableError) {
    return {
      status: 503,
      openaiType: 'server_error',
      anthropicType: 'api_error',
      code: 'quota_service_unavailable',
      retryAfterMs: UNAVAILABLE_RETRY_MS,
    };
  }
  if (error instanceof CircuitOpenError) {
    return {
      status: 503,
      openaiType: 'server_error',
      anthropicType: 'overloaded_error',
      code: 'provider_unavailable',
      retryAfterMs: Math.max(1, error.retryAfterMs),
    };
  }
  if (error instanceof UpstreamError) {
    return error.reason === 'timeout'
      ? { status: 504, openaiType: 'server_error', anthropicType: 'api_error', code: 'upstream_timeout' }
      : { status: 502, openaiType: 'server_error', anthropicType: 'api_error', code: 'upstream_unreachable' };
  }
  return { status: 500, openaiType: 'server_error', anthropicType: 'api_error', code: 'internal_error' };
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The HTTP answer for `error`, in the format of `api`. */
export function errorResponse(api: Api, error: unknown): ErrorResponse {
  const mapped = map(error);
  // Internal failures keep their details in the logs, not in answers.
  const message = mapped.status === 500 ? 'internal error in the tokenlease sidecar' : messageOf(error);
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'x-tokenlease-error': mapped.code,
  };
  if (mapped.retryAfterMs !== undefined) {
    headers['retry-after'] = String(Math.ceil(mapped.retryAfterMs / 1000));
    headers['retry-after-ms'] = String(Math.ceil(mapped.retryAfterMs));
  }
  if (mapped.noRetry) headers['x-should-retry'] = 'false';
  const body =
    api === 'anthropic'
      ? { type: 'error', error: { type: mapped.anthropicType, message } }
      : { error: { message, type: mapped.openaiType, param: mapped.param ?? null, code: mapped.code } };
  return { status: mapped.status, headers, body: JSON.stringify(body) };
}
