/**
 * Each call is one GenAI span, recorded by whatever SDK the binary registers. A minimal tracer
 * provider registered through the API stands in for the SDK here.
 */
import {
  trace,
  type Attributes,
  type Span,
  type SpanOptions,
  type Tracer,
  type TracerProvider,
} from '@opentelemetry/api';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ACCOUNTING_LIMITS, startStack, type Stack } from './harness.ts';

interface Recorded {
  name: string;
  attributes: Attributes;
  ended: boolean;
}

function recordingProvider(spans: Recorded[]): TracerProvider {
  const tracer: Tracer = {
    startSpan(name: string, options?: SpanOptions): Span {
      const record: Recorded = { name, attributes: { ...options?.attributes }, ended: false };
      spans.push(record);
      const span = trace.wrapSpanContext({ traceId: '1'.repeat(32), spanId: '2'.repeat(16), traceFlags: 1 });
      return Object.assign(span, {
        setAttribute(key: string, value: unknown) {
          record.attributes[key] = value as Attributes[string];
          return span;
        },
        end() {
          record.ended = true;
        },
        isRecording: () => true,
      });
    },
    startActiveSpan: (() => {
      throw new Error('not used');
    }) as Tracer['startActiveSpan'],
  };
  return { getTracer: () => tracer };
}

describe('tracing', () => {
  const spans: Recorded[] = [];
  let stack: Stack;

  beforeAll(async () => {
    trace.setGlobalTracerProvider(recordingProvider(spans));
    stack = await startStack({ sim: { outputTokens: 5 }, provider: { limits: ACCOUNTING_LIMITS } });
  });
  afterAll(async () => {
    await stack?.close();
    trace.disable();
  });

  it('records one GenAI span per call with the real usage', async () => {
    const client = new OpenAI({ baseURL: `${stack.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const completion = await client.chat.completions.create({
      model: 'sim-model',
      max_tokens: 9,
      messages: [{ role: 'user', content: 'hi' }],
    });
    expect(spans).toHaveLength(1);
    expect(spans[0]).toMatchObject({
      name: 'chat sim-model',
      ended: true,
      attributes: {
        'gen_ai.operation.name': 'chat',
        'gen_ai.request.model': 'sim-model',
        'gen_ai.request.max_tokens': 9,
        'gen_ai.usage.input_tokens': completion.usage?.prompt_tokens,
        'gen_ai.usage.output_tokens': 5,
        'http.response.status_code': 200,
        'tokenlease.outcome': 'ok',
        'tokenlease.budget': 'team/app',
      },
    });
  });
});
