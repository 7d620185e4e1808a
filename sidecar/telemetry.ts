/**
 * One OpenTelemetry span per call, following the GenAI semantic conventions, continuing the app's
 * trace (W3C traceparent) and handed on to the provider. Only @opentelemetry/api is used: without
 * an SDK registered by the binary, every call here would be a no-op, so none is made (no span
 * object, attributes or context per call): startCallSpan returns undefined, and the rest take that.
 */
import type { IncomingHttpHeaders } from 'node:http';
import {
  context,
  propagation,
  ProxyTracerProvider,
  SpanKind,
  SpanStatusCode,
  trace,
  type Context,
  type Span,
} from '@opentelemetry/api';
import type { Outcome, TokenUsage } from '../common/quota-api.ts';
import type { Operation } from './providers/routes.ts';

const tracer = trace.getTracer('tokenlease-sidecar');
/** What the global tracer provider delegates to while no SDK has registered one. */
const NOOP_TRACER_PROVIDER = new ProxyTracerProvider().getDelegate();

/**
 * Whether a span or a trace header can come of a call: a tracer provider or a propagator was
 * registered (by an SDK). Asked per call, since one may be registered at any time.
 */
function tracingActive(): boolean {
  const provider = trace.getTracerProvider();
  const noTracer = provider instanceof ProxyTracerProvider && provider.getDelegate() === NOOP_TRACER_PROVIDER;
  return !noTracer || propagation.fields().length > 0;
}

const OPERATION_NAME: Record<Operation, string> = {
  chat: 'chat',
  completions: 'text_completion',
  embeddings: 'embeddings',
  responses: 'chat',
  messages: 'chat',
};

export interface CallSpan {
  span: Span;
  context: Context;
}

/** The call's span, or undefined while tracing is not active (tracingActive). */
export function startCallSpan(
  headers: IncomingHttpHeaders,
  fields: {
    operation: Operation;
    model: string;
    provider: string;
    system: string;
    budget: string;
    maxOutputTokens: number | undefined;
  },
): CallSpan | undefined {
  if (!tracingActive()) return undefined;
  const parent = propagation.extract(context.active(), headers);
  const span = tracer.startSpan(
    `${OPERATION_NAME[fields.operation]} ${fields.model}`,
    {
      kind: SpanKind.CLIENT,
      attributes: {
        'gen_ai.operation.name': OPERATION_NAME[fields.operation],
        'gen_ai.system': fields.system,
        'gen_ai.request.model': fields.model,
        ...(fields.maxOutputTokens === undefined
          ? {}
          : { 'gen_ai.request.max_tokens': fields.maxOutputTokens }),
        'tokenlease.provider': fields.provider,
        'tokenlease.budget': fields.budget,
      },
    },
    parent,
  );
  return { span, context: trace.setSpan(parent, span) };
}

/** Runs `fn` with the call's span active, so the quota-service calls made in it join the trace. */
export function withCallSpan<T>(call: CallSpan | undefined, fn: () => T): T {
  return call === undefined ? fn() : context.with(call.context, fn);
}

/** Adds `traceparent` (and whatever else is propagated) to the upstream request's headers. */
export function injectTraceHeaders(
  call: CallSpan | undefined,
  headers: Record<string, string | string[]>,
): void {
  if (call !== undefined) propagation.inject(call.context, headers);
}

export function endCallSpan(
  call: CallSpan | undefined,
  result: {
    outcome: Outcome | string;
    status?: number;
    usage?: TokenUsage;
    leaseWaitMs?: number;
    error?: unknown;
  },
): void {
  if (call === undefined) return;
  const span = call.span;
  span.setAttribute('tokenlease.outcome', result.outcome);
  if (result.status !== undefined) span.setAttribute('http.response.status_code', result.status);
  if (result.usage !== undefined) {
    span.setAttribute('gen_ai.usage.input_tokens', result.usage.inputTokens);
    span.setAttribute('gen_ai.usage.output_tokens', result.usage.outputTokens);
  }
  if (result.leaseWaitMs !== undefined) span.setAttribute('tokenlease.lease_wait_ms', result.leaseWaitMs);
  if (result.error !== undefined) {
    span.recordException(result.error instanceof Error ? result.error : String(result.error));
    span.setStatus({ code: SpanStatusCode.ERROR });
  } else if (result.outcome !== 'ok') {
    span.setStatus({ code: SpanStatusCode.ERROR, message: result.outcome });
  }
  span.end();
}
