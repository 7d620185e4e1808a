/**
 * Reads an upstream response by provider flavour (PROVIDERS.md, "How a refusal looks") into
 * what the system does about it: the outcome reported in Settle, whether trying again can
 * succeed, and when.
 */
import type { Flavor } from '../../common/budgets/types.ts';
import type { Outcome } from '../../common/quota-api.ts';
import {
  header,
  resetAtFromMessage,
  retryAfterFromHeaders,
  retryAfterFromMessage,
  type HeaderMap,
} from './retry-hint.ts';

export const REFUSAL_KINDS = [
  'ok',
  'concurrency',
  'rate',
  'window',
  'balance',
  'subscription',
  'entitlement',
  'overload',
  'tooLarge',
  'riskControl',
  'clientError',
  'serverError',
] as const;
/** Finer than the outcome: what the metrics and logs call the refusal. */
export type RefusalKind = (typeof REFUSAL_KINDS)[number];

export interface Classification {
  kind: RefusalKind;
  outcome: Outcome;
  /** Trying again (after `retryAfterMs`, or `resetAtMs`) can succeed. */
  retryable: boolean;
  retryAfterMs?: number;
  /** Epoch ms at which a window refusal lifts. */
  resetAtMs?: number;
  /** The provider's own code or type, for logs and metrics. */
  code?: string;
  message?: string;
}

export interface UpstreamResponse {
  status: number;
  headers: HeaderMap;
  /** The response body as text (only error bodies are read). */
  body: string;
}

const OUTCOME_OF: Record<RefusalKind, Outcome> = {
  ok: 'ok',
  concurrency: 'refusedConcurrency',
  rate: 'refusedRate',
  window: 'refusedWindow',
  balance: 'refusedBalance',
  subscription: 'refusedBalance',
  entitlement: 'error',
  overload: 'overloaded',
  tooLarge: 'tooLarge',
  riskControl: 'refusedRate',
  clientError: 'error',
  serverError: 'error',
};

const RETRYABLE: Record<RefusalKind, boolean> = {
  ok: false,
  concurrency: true,
  rate: true,
  window: true,
  balance: false,
  subscription: false,
  entitlement: false,
  overload: true,
  tooLarge: false,
  riskControl: true,
  clientError: false,
  serverError: true,
};

/** Zhipu business codes: the code is a string in the body, whatever the HTTP status. */
const GLM_CODES: Record<string, RefusalKind> = {
  '1113': 'balance',
  '1302': 'concurrency',
  '1303': 'rate',
  '1304': 'window',
  '1305': 'overload',
  '1308': 'window',
  '1309': 'subscription',
  '1310': 'window',
  '1311': 'entitlement',
  '1312': 'overload',
  '1313': 'riskControl',
};

interface ErrorBody {
  code?: string;
  type?: string;
  message: string;
  /** Gemini's google.rpc.RetryInfo delay, when present. */
  retryDelayMs?: number;
}

function text(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'number') return String(value);
  return undefined;
}

/** The error object of any provider's body: OpenAI/GLM `{error:{…}}`, Anthropic `{type:'error',error:{…}}`, Gemini `[{error:{…}}]`. */
function readErrorBody(body: string): ErrorBody {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return { message: body.slice(0, 500) };
  }
  if (Array.isArray(parsed)) parsed = parsed[0];
  const root = (parsed ?? {}) as Record<string, unknown>;
  const error = (typeof root.error === 'object' && root.error !== null ? root.error : root) as Record<
    string,
    unknown
  >;
  const result: ErrorBody = {
    code: text(error.code) ?? text(root.code),
    type: text(error.type) ?? text(error.status),
    message: text(error.message) ?? text(root.message) ?? '',
  };
  if (Array.isArray(error.details)) {
    for (const detail of error.details as Array<Record<string, unknown>>) {
      const delay = text(detail?.retryDelay);
      const seconds = delay === undefined ? undefined : /^(\d+(?:\.\d+)?)s$/.exec(delay);
      if (seconds) result.retryDelayMs = Math.ceil(Number(seconds[1]) * 1000);
    }
  }
  return result;
}

function byStatus(status: number): RefusalKind {
  if (status < 400) return 'ok';
  if (status === 429) return 'rate';
  if (status === 402) return 'balance';
  if (status === 413) return 'tooLarge';
  if (status === 503 || status === 529) return 'overload';
  if (status >= 500 || status === 408) return 'serverError';
  return 'clientError';
}

const PER_DAY = /per day|\bTPD\b|\bRPD\b|PerDay|daily/i;

function openaiKind(status: number, error: ErrorBody): RefusalKind {
  const id = `${error.code ?? ''} ${error.type ?? ''}`;
  if (/insufficient_quota|billing/.test(id)) return 'balance';
  if (status === 429 || /rate_limit/.test(id)) {
    if (/request too large/i.test(error.message)) return 'tooLarge';
    if (PER_DAY.test(error.message)) return 'window';
    return 'rate';
  }
  if (error.code === 'context_length_exceeded') return 'tooLarge';
  return byStatus(status);
}

function anthropicKind(status: number, error: ErrorBody): RefusalKind {
  switch (error.type) {
    case 'rate_limit_error':
      return 'rate';
    case 'overloaded_error':
      return 'overload';
    case 'request_too_large':
      return 'tooLarge';
    case 'billing_error':
      return 'balance';
  }
  if (/credit balance is too low|reached your specified API usage limits/i.test(error.message))
    return 'balance';
  return byStatus(status);
}

function glmKind(status: number, error: ErrorBody): RefusalKind {
  const known = error.code === undefined ? undefined : GLM_CODES[error.code];
  return known ?? byStatus(status);
}

function deepseekKind(status: number): RefusalKind {
  // DeepSeek limits concurrency per account; its 429 means too many requests in flight.
  if (status === 429) return 'concurrency';
  return byStatus(status);
}

function geminiKind(status: number, error: ErrorBody): RefusalKind {
  if (status === 429 || error.type === 'RESOURCE_EXHAUSTED')
    return PER_DAY.test(error.message) ? 'window' : 'rate';
  return byStatus(status);
}

function moonshotKind(status: number, error: ErrorBody): RefusalKind {
  const id = `${error.code ?? ''} ${error.type ?? ''}`;
  if (status === 403 || /exceeded_current_quota|insufficient/i.test(id)) return 'balance';
  if (/engine_overloaded/.test(id)) return 'overload';
  if (status === 429) {
    if (/concurrency/i.test(error.message)) return 'concurrency';
    if (PER_DAY.test(error.message)) return 'window';
    return 'rate';
  }
  return byStatus(status);
}

function dashscopeKind(status: number, error: ErrorBody): RefusalKind {
  const id = `${error.code ?? ''} ${error.type ?? ''} ${error.message}`;
  if (/Arrearage|overdue/i.test(id)) return 'balance';
  if (status === 429 || /Throttling|limit_requests|limit_burst/i.test(id)) return 'rate';
  return byStatus(status);
}

function kindFor(flavor: Flavor, status: number, error: ErrorBody): RefusalKind {
  switch (flavor) {
    case 'openai':
    case 'azure':
      return openaiKind(status, error);
    case 'anthropic':
      return anthropicKind(status, error);
    case 'glm':
      return glmKind(status, error);
    case 'deepseek':
      return deepseekKind(status);
    case 'gemini':
      return geminiKind(status, error);
    case 'moonshot':
      return moonshotKind(status, error);
    case 'dashscope':
      return dashscopeKind(status, error);
  }
}

/** Classifies one upstream response. A 2xx is `ok` whatever its body. */
export function classifyResponse(flavor: Flavor, response: UpstreamResponse, nowMs: number): Classification {
  if (response.status >= 200 && response.status < 300) return { kind: 'ok', outcome: 'ok', retryable: false };
  const error = readErrorBody(response.body);
  const kind = kindFor(flavor, response.status, error);
  const result: Classification = { kind, outcome: OUTCOME_OF[kind], retryable: RETRYABLE[kind] };
  const code = error.code ?? error.type;
  if (code !== undefined) result.code = code;
  if (error.message !== '') result.message = error.message;
  // Anthropic says `x-should-retry: false` when no retry can help.
  if (header(response.headers, 'x-should-retry') === 'false') result.retryable = false;

  const retryAfterMs =
    retryAfterFromHeaders(response.headers, nowMs) ??
    error.retryDelayMs ??
    retryAfterFromMessage(error.message);
  if (kind === 'window') {
    const resetAtMs =
      resetAtFromMessage(error.message) ?? (retryAfterMs === undefined ? undefined : nowMs + retryAfterMs);
    if (resetAtMs !== undefined) {
      result.resetAtMs = resetAtMs;
      result.retryAfterMs = Math.max(0, resetAtMs - nowMs);
    }
  } else if (retryAfterMs !== undefined) {
    result.retryAfterMs = retryAfterMs;
  }
  return result;
}
