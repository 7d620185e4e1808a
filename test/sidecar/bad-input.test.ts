/**
 * Every bad input and upstream fault gets a provider-shaped answer and leaves no lease behind.
 */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createMemoryEngine } from '../../controller/quota/engine/index.ts';
import { startSidecar } from '../../sidecar/main.ts';
import {
  ACCOUNTING_LIMITS,
  BUDGET_ID,
  budgetsFor,
  engineState,
  eventually,
  startStack,
  type Stack,
} from './harness.ts';

async function post(
  url: string,
  body: string | Buffer,
  headers: Record<string, string> = { 'content-type': 'application/json' },
) {
  const response = await request(url, { method: 'POST', headers, body });
  const text = await response.body.text();
  return {
    status: response.statusCode,
    headers: response.headers,
    text,
    json: () => JSON.parse(text) as Record<string, unknown>,
  };
}

const chat = (extra: Record<string, unknown> = {}) =>
  JSON.stringify({
    model: 'sim-model',
    max_tokens: 20,
    messages: [{ role: 'user', content: 'hi' }],
    ...extra,
  });

describe('bad input', () => {
  let stack: Stack;

  beforeAll(async () => {
    stack = await startStack({
      sim: { outputTokens: 200, perTokenMs: 10, models: ['sim-model'] },
      provider: { limits: ACCOUNTING_LIMITS, models: ['sim-model'] },
      sidecar: { maxBodyBytes: 2048, headersTimeoutMs: 400, retryBaseMs: 10 },
    });
  });
  afterAll(async () => stack?.close());
  afterEach(async () => {
    await eventually(async () => expect((await engineState(stack.engine)).inFlight).toBe(0));
  });

  function expectOpenAIError(answer: Awaited<ReturnType<typeof post>>, status: number, code: string) {
    expect(answer.status).toBe(status);
    expect(answer.headers['content-type']).toBe('application/json');
    const error = answer.json().error as Record<string, unknown>;
    expect(Object.keys(error).sort()).toEqual(['code', 'message', 'param', 'type']);
    expect(error).toMatchObject({ message: expect.any(String), type: expect.any(String), code });
  }

  it('malformed JSON: 400 in the OpenAI shape, never retried', async () => {
    const answer = await post(`${stack.url}/v1/chat/completions`, '{"model": ');
    expectOpenAIError(answer, 400, 'invalid_request');
    expect(answer.headers['x-should-retry']).toBe('false');
  });

  it('malformed JSON on the Anthropic path: 400 in the Anthropic shape', async () => {
    const answer = await post(`${stack.url}/v1/messages`, 'nope');
    expect(answer.status).toBe(400);
    expect(answer.json()).toEqual({
      type: 'error',
      error: { type: 'invalid_request_error', message: expect.stringContaining('JSON') },
    });
  });

  it('oversized body: 413', async () => {
    const answer = await post(`${stack.url}/v1/chat/completions`, chat({ padding: 'x'.repeat(4096) }));
    expectOpenAIError(answer, 413, 'request_too_large');
  });

  it('oversized body sent without a length (chunked): 413, and the connection stays usable', async () => {
    const padding = Buffer.from('x'.repeat(1024));
    async function* chunks() {
      yield Buffer.from('{"model":"sim-model","messages":[],"padding":"');
      for (let i = 0; i < 8; i++) yield padding;
      yield Buffer.from('"}');
    }
    const response = await request(`${stack.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: Readable.from(chunks()),
    });
    expect(response.statusCode).toBe(413);
    expect(JSON.parse(await response.body.text())).toMatchObject({ error: { code: 'request_too_large' } });
  });

  it('unknown route: 404', async () => {
    expectOpenAIError(await post(`${stack.url}/v1/images/generations`, chat()), 404, 'unknown_url');
  });

  it('unknown model: 404 naming the model', async () => {
    const answer = await post(`${stack.url}/v1/chat/completions`, chat({ model: 'gpt-unknown' }));
    expectOpenAIError(answer, 404, 'model_not_found');
    expect(answer.text).toContain('gpt-unknown');
  });

  it('a request the budget provider cannot speak (Anthropic to an OpenAI provider): 404', async () => {
    const answer = await post(
      `${stack.url}/v1/messages`,
      JSON.stringify({ model: 'sim-model', max_tokens: 5, messages: [] }),
    );
    expect(answer.status).toBe(404);
    expect(answer.json()).toMatchObject({ type: 'error', error: { type: 'not_found_error' } });
  });

  it('missing model: 400 naming the parameter', async () => {
    const answer = await post(`${stack.url}/v1/chat/completions`, JSON.stringify({ messages: [] }));
    expectOpenAIError(answer, 400, 'invalid_request');
    expect(answer.json()).toMatchObject({ error: { param: 'model' } });
  });

  it('wrong content type: 415', async () => {
    expectOpenAIError(
      await post(`${stack.url}/v1/chat/completions`, chat(), { 'content-type': 'text/plain' }),
      415,
      'unsupported_media_type',
    );
  });

  it('bad deadline header: 400', async () => {
    const answer = await post(`${stack.url}/v1/chat/completions`, chat(), {
      'content-type': 'application/json',
      'x-tokenlease-timeout-ms': 'soon',
    });
    expectOpenAIError(answer, 400, 'invalid_request');
  });

  it('a request larger than a limit can ever allow: 429 that says so and is never retried', async () => {
    // The provider allows 100M output tokens per hour: ask for more than that in one call.
    const answer = await post(`${stack.url}/v1/chat/completions`, chat({ max_tokens: 200_000_000 }));
    expectOpenAIError(answer, 429, 'request_too_large');
    expect(answer.headers['x-should-retry']).toBe('false');
    expect(answer.headers['retry-after']).toBeUndefined();
  });

  it('none of the above reached the provider', () => {
    expect(stack.sim.ledger.summary().total).toBe(0);
  });

  it('client disconnecting mid-stream: upstream aborted, what was streamed is settled', async () => {
    const before = await engineState(stack.engine);
    const abort = new AbortController();
    const response = await request(`${stack.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: chat({ stream: true, max_tokens: 500 }),
      signal: abort.signal,
    });
    expect(response.statusCode).toBe(200);
    let received = 0;
    await expect(
      (async () => {
        for await (const chunk of response.body) {
          received += (chunk as Buffer).length;
          if (received > 400) abort.abort();
        }
      })(),
    ).rejects.toThrow();
    await eventually(() => expect(stack.sim.ledger.summary().aborted).toBe(1));
    await eventually(async () => {
      const after = await engineState(stack.engine);
      expect(after.inFlight).toBe(0);
      // Charged the prompt and the tokens streamed so far: more than nothing, less than the 200 a full answer has.
      expect(after.output - before.output).toBeGreaterThan(0);
      expect(after.output - before.output).toBeLessThan(200);
    });
  });

  it('upstream that hangs: 504 after the headers timeout, lease settled', async () => {
    stack.sim.inject('hang');
    const answer = await post(`${stack.url}/v1/chat/completions`, chat());
    expectOpenAIError(answer, 504, 'upstream_timeout');
  });

  it('upstream that drops mid-stream: the app sees a cut stream, the streamed text is settled', async () => {
    const before = await engineState(stack.engine);
    stack.sim.inject('drop');
    const response = await request(`${stack.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: chat({ stream: true, max_tokens: 500 }),
    });
    await expect(response.body.text()).rejects.toThrow();
    await eventually(async () => {
      const after = await engineState(stack.engine);
      expect(after.inFlight).toBe(0);
      expect(after.output - before.output).toBeGreaterThan(0);
    });
  });

  it('a retryable refusal is retried within the deadline and the app sees success', async () => {
    const before = stack.sim.ledger.summary();
    stack.sim.inject('overload');
    const answer = await post(`${stack.url}/v1/chat/completions`, chat({ max_tokens: 5 }));
    expect(answer.status).toBe(200);
    const after = stack.sim.ledger.summary();
    expect(after.refused - before.refused).toBe(1);
    expect(after.ok - before.ok).toBe(1);
    expect(
      await stack.sidecars[0]!.metrics.registry.getSingleMetricAsString('tokenlease_sidecar_retries_total'),
    ).toMatch(/kind="overload"} 1/);
  });

  it('a balance refusal is passed on as the provider sent it, never retried', async () => {
    const before = stack.sim.ledger.summary();
    stack.sim.inject('balance');
    const answer = await post(`${stack.url}/v1/chat/completions`, chat({ max_tokens: 5 }));
    expect(answer.status).toBe(429);
    expect(answer.json()).toMatchObject({ error: { code: 'insufficient_quota' } });
    expect(answer.headers['x-tokenlease-error']).toBeUndefined();
    expect(stack.sim.ledger.summary().total - before.total).toBe(1);
  });
});

describe('provider keys', () => {
  let upstream: Server;
  let seen: IncomingHttpHeaders | undefined;

  beforeAll(async () => {
    upstream = createServer((req, res) => {
      seen = req.headers;
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ choices: [], usage: { prompt_tokens: 1, completion_tokens: 1 } }));
      });
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  });
  afterAll(() => new Promise<void>((resolve) => upstream.close(() => resolve())));

  it('injects the provider key from the environment and drops the app key', async () => {
    const port = (upstream.address() as AddressInfo).port;
    const budgets = budgetsFor(`http://127.0.0.1:${port}/v1`, { credentials: { env: 'PROVIDER_KEY' } });
    const engine = createMemoryEngine({ budgets });
    const sidecar = await startSidecar({
      budgets,
      budget: BUDGET_ID,
      quota: engine,
      env: { PROVIDER_KEY: 'sk-provider' },
    });
    try {
      const answer = await post(`${sidecar.url}/v1/chat/completions`, chat(), {
        'content-type': 'application/json',
        authorization: 'Bearer sk-app',
        'x-api-key': 'sk-app',
        'x-tokenlease-timeout-ms': '1000',
        'x-custom': 'kept',
      });
      expect(answer.status).toBe(200);
      expect(seen?.authorization).toBe('Bearer sk-provider');
      expect(seen?.['x-api-key']).toBeUndefined();
      expect(seen?.['x-tokenlease-timeout-ms']).toBeUndefined();
      expect(seen?.['x-custom']).toBe('kept');
    } finally {
      await sidecar.close();
      await engine.close();
    }
  });

  it('refuses to start when the key is missing, naming the field', async () => {
    const budgets = budgetsFor('http://127.0.0.1:1/v1', { credentials: { env: 'PROVIDER_KEY' } });
    const engine = createMemoryEngine({ budgets });
    await expect(startSidecar({ budgets, budget: BUDGET_ID, quota: engine, env: {} })).rejects.toThrow(
      /credentials\.env/,
    );
    await engine.close();
  });
});
