/**
 * The simulated provider driven by the official `openai` and `@anthropic-ai/sdk` clients: what the
 * SDKs parse is what users' code will see through the sidecar.
 */
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { afterEach, describe, expect, it } from 'vitest';
import { countPromptTokens, countTextTokens } from '../common/tokens/count-tokens.ts';
import { startSimProvider, type SimProvider, type SimProviderOptions } from './server.ts';

// Response bodies are checked by assertions, not by types.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Body = any;
const json = (response: Response): Promise<Body> => response.json();

let sim: SimProvider | undefined;

afterEach(async () => {
  await sim?.close();
  sim = undefined;
});

async function start(options: SimProviderOptions = {}): Promise<SimProvider> {
  sim = await startSimProvider(options);
  return sim;
}

function openai(provider: SimProvider, maxRetries = 0, timeout = 10_000): OpenAI {
  return new OpenAI({ apiKey: 'sk-sim', baseURL: `${provider.url}/v1`, maxRetries, timeout });
}

function anthropic(provider: SimProvider, maxRetries = 0): Anthropic {
  return new Anthropic({ apiKey: 'sk-ant-sim', baseURL: provider.url, maxRetries });
}

async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 5));
}

const chatBody = {
  model: 'gpt-4o-mini',
  messages: [
    { role: 'system' as const, content: 'You are terse.' },
    { role: 'user' as const, content: 'Say something about rivers.' },
  ],
};

describe('openai SDK', () => {
  it('chat completion: usage is the shared token count and the reply is exactly that many tokens', async () => {
    const provider = await start({ outputTokens: 12 });
    const reply = await openai(provider).chat.completions.create({ ...chatBody, max_tokens: 50 });
    const prompt = countPromptTokens({ ...chatBody, max_tokens: 50 }, 'chat.completions');
    expect(reply.usage).toEqual({ prompt_tokens: prompt, completion_tokens: 12, total_tokens: prompt + 12 });
    expect(countTextTokens(reply.choices[0]!.message.content!)).toBe(12);
    expect(reply.choices[0]!.finish_reason).toBe('stop');
    const again = await openai(provider).chat.completions.create({ ...chatBody, max_tokens: 5 });
    expect(again.choices[0]!.finish_reason).toBe('length');
    expect(again.usage!.completion_tokens).toBe(5);
    const [first, second] = provider.ledger.entries();
    expect(first).toMatchObject({
      outcome: 'ok',
      status: 200,
      charged: { input: prompt, output: 50 },
      usage: { input: prompt, output: 12 },
    });
    expect(second).toMatchObject({ outcome: 'ok', usage: { input: prompt, output: 5 } });
  });

  it('streaming without include_usage sends no usage chunk', async () => {
    const provider = await start({ outputTokens: 6 });
    const stream = await openai(provider).chat.completions.create({ ...chatBody, stream: true });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.every((chunk) => chunk.usage === undefined)).toBe(true);
    expect(chunks.every((chunk) => chunk.choices.length === 1)).toBe(true);
    expect(chunks.at(-1)!.choices[0]!.finish_reason).toBe('stop');
    const text = chunks.map((chunk) => chunk.choices[0]!.delta.content ?? '').join('');
    expect(countTextTokens(text)).toBe(6);
    expect(provider.ledger.entries()[0]).toMatchObject({ stream: true, outcome: 'ok', usage: { output: 6 } });
  });

  it('streaming with include_usage ends with one usage chunk whose choices are empty', async () => {
    const provider = await start({ outputTokens: 6 });
    const stream = await openai(provider).chat.completions.create({
      ...chatBody,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    const prompt = countPromptTokens(chatBody, 'chat.completions');
    expect(last.usage).toEqual({ prompt_tokens: prompt, completion_tokens: 6, total_tokens: prompt + 6 });
    expect(chunks.slice(0, -1).every((chunk) => chunk.usage === null)).toBe(true);
  });

  it('usage on every chunk when the provider does that', async () => {
    const provider = await start({ outputTokens: 3, usageOnEveryChunk: true });
    const stream = await openai(provider).chat.completions.create({ ...chatBody, stream: true });
    const outputs = [];
    for await (const chunk of stream) outputs.push(chunk.usage?.completion_tokens);
    expect(outputs).toEqual([0, 1, 2, 3, 3]);
  });

  it('embeddings, base64 (the SDK default) and float', async () => {
    const provider = await start({ embeddingDimensions: 8 });
    const client = openai(provider);
    const result = await client.embeddings.create({
      model: 'text-embedding-3-small',
      input: ['hello world', 'rivers'],
    });
    expect(result.data).toHaveLength(2);
    const vector = result.data[0]!.embedding;
    expect(vector).toHaveLength(8);
    expect(Math.hypot(...vector)).toBeCloseTo(1, 5);
    const prompt = countPromptTokens({ input: ['hello world', 'rivers'] }, 'embeddings');
    expect(result.usage).toEqual({ prompt_tokens: prompt, total_tokens: prompt });
    const floats = await client.embeddings.create({
      model: 'text-embedding-3-small',
      input: 'hello world',
      encoding_format: 'float',
    });
    expect(floats.data[0]!.embedding).toEqual(vector);
    expect(provider.ledger.entries()[0]).toMatchObject({
      charged: { input: prompt, output: 0 },
      usage: { input: prompt, output: 0 },
    });
  });

  it('responses API, plain and streamed', async () => {
    const provider = await start({ outputTokens: 4 });
    const client = openai(provider);
    const response = await client.responses.create({
      model: 'gpt-4o',
      input: 'hello world',
      max_output_tokens: 20,
    });
    expect(countTextTokens(response.output_text)).toBe(4);
    expect(response.usage).toMatchObject({
      input_tokens: countPromptTokens({ input: 'hello world' }, 'responses'),
      output_tokens: 4,
    });
    const stream = await client.responses.create({ model: 'gpt-4o', input: 'hello world', stream: true });
    const types: string[] = [];
    let deltas = '';
    let usage: unknown;
    for await (const event of stream) {
      types.push(event.type);
      if (event.type === 'response.output_text.delta') deltas += event.delta;
      if (event.type === 'response.completed') usage = event.response.usage;
    }
    expect(types[0]).toBe('response.created');
    expect(types.at(-1)).toBe('response.completed');
    expect(deltas).toBe(response.output_text);
    expect(usage).toMatchObject({ output_tokens: 4 });
  });

  it('legacy completions', async () => {
    const provider = await start({ outputTokens: 4 });
    const result = await openai(provider).completions.create({
      model: 'gpt-3.5-turbo-instruct',
      prompt: 'hello world',
      max_tokens: 2,
    });
    expect(result.usage).toEqual({ prompt_tokens: 2, completion_tokens: 2, total_tokens: 4 });
    expect(result.choices[0]!.finish_reason).toBe('length');
  });

  it('rate-limit refusals parse as RateLimitError with the provider body and x-ratelimit headers', async () => {
    const provider = await start({ limits: [{ dimension: 'requests', amount: 1, window: '1m' }] });
    const client = openai(provider);
    const ok = await client.chat.completions.create(chatBody).withResponse();
    expect(ok.response.headers.get('x-ratelimit-remaining-requests')).toBe('0');
    expect(ok.response.headers.get('x-ratelimit-reset-requests')).toMatch(/^\d+(\.\d+)?s$|^\d+ms$|^1m0s$/);
    const error = await client.chat.completions.create(chatBody).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.RateLimitError);
    const rate = error as InstanceType<typeof OpenAI.RateLimitError>;
    expect(rate.status).toBe(429);
    expect(rate.code).toBe('rate_limit_exceeded');
    expect(rate.type).toBe('requests');
    expect(rate.message).toMatch(/Please try again in \d/);
    expect(rate.headers.get('x-ratelimit-limit-requests')).toBe('1');
    expect(provider.ledger.summary()).toMatchObject({ admitted: 1, refused: 1, refusedByClass: { rate: 1 } });
  });

  it('GLM: refuses the (limit+1)th concurrent request with 1302 and frees slots when requests end', async () => {
    const provider = await start({
      flavor: 'glm',
      limits: [{ dimension: 'concurrency', amount: 3 }],
      latencyMs: 60_000,
    });
    const client = openai(provider);
    const holders = Array.from({ length: 3 }, () => new AbortController());
    const held = holders.map((controller) =>
      client.chat.completions.create(chatBody, { signal: controller.signal }).catch((e: unknown) => e),
    );
    await until(() => provider.ledger.summary().inFlight === 3);
    const error = await client.chat.completions.create(chatBody).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.RateLimitError);
    expect((error as InstanceType<typeof OpenAI.APIError>).code).toBe('1302');
    expect((error as InstanceType<typeof OpenAI.APIError>).error).toMatchObject({ code: '1302' });

    for (const controller of holders) controller.abort();
    await Promise.all(held);
    await until(() => provider.ledger.summary().inFlight === 0);
    provider.setConfig({ latencyMs: 0 });
    await expect(client.chat.completions.create(chatBody)).resolves.toMatchObject({
      object: 'chat.completion',
    });
    const summary = provider.ledger.summary();
    expect(summary).toMatchObject({ aborted: 3, ok: 1, refusedByCode: { '1302': 1 }, maxInFlight: 3 });
    expect(summary.limits[0]).toMatchObject({ label: 'concurrency', peak: 3, used: 0 });
  });

  it('a storm against concurrency 5 never has more than 5 in flight', async () => {
    const provider = await start({
      flavor: 'glm',
      limits: [{ dimension: 'concurrency', amount: 5 }],
      latencyMs: 20,
    });
    const client = openai(provider);
    const results = await Promise.all(
      Array.from({ length: 40 }, () =>
        client.chat.completions.create(chatBody).then(
          () => 'ok',
          (e: { code?: string }) => e.code,
        ),
      ),
    );
    const summary = provider.ledger.summary();
    expect(summary.maxInFlight).toBeLessThanOrEqual(5);
    expect(summary.ok + (summary.refusedByCode['1302'] ?? 0)).toBe(40);
    expect(results.filter((r) => r === '1302')).toHaveLength(summary.refusedByCode['1302'] ?? 0);
  });

  it('a stream dropped mid-way fails in the SDK and is charged what was sent', async () => {
    const provider = await start({ outputTokens: 10 });
    provider.inject('drop');
    const stream = await openai(provider).chat.completions.create({ ...chatBody, stream: true });
    const pieces: string[] = [];
    await expect(
      (async () => {
        for await (const chunk of stream) pieces.push(chunk.choices[0]?.delta.content ?? '');
      })(),
    ).rejects.toThrow();
    await until(() => provider.ledger.summary().dropped === 1);
    expect(countTextTokens(pieces.join(''))).toBe(5);
    expect(provider.ledger.entries()[0]).toMatchObject({ outcome: 'dropped', usage: { output: 5 } });
  });

  it('a hung request times out in the SDK and is recorded as hung', async () => {
    const provider = await start();
    provider.inject('hang');
    await expect(openai(provider, 0, 200).chat.completions.create(chatBody)).rejects.toBeInstanceOf(
      OpenAI.APIConnectionTimeoutError,
    );
    await until(() => provider.ledger.summary().hung === 1);
    expect(provider.ledger.summary().inFlight).toBe(0);
  });

  it('bad input gets 400 in the provider shape', async () => {
    const provider = await start();
    const client = openai(provider);
    const error = await client.chat.completions
      .create({ model: 'gpt-4o', messages: [] })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.BadRequestError);
    expect((error as InstanceType<typeof OpenAI.APIError>).param).toBe('messages');
    const malformed = await fetch(`${provider.url}/v1/chat/completions`, {
      method: 'POST',
      body: '{"model": ',
    });
    expect(malformed.status).toBe(400);
    expect((await json(malformed)).error.type).toBe('invalid_request_error');
    const missingModel = await fetch(`${provider.url}/v1/embeddings`, {
      method: 'POST',
      body: '{"input": "x"}',
    });
    expect((await json(missingModel)).error.param).toBe('model');
    const unknown = await fetch(`${provider.url}/v1/nothing`, { method: 'POST', body: '{}' });
    expect(unknown.status).toBe(404);
    expect(provider.ledger.summary().refusedByClass).toEqual({ invalid: 3, notFound: 1 });
  });
});

describe('@anthropic-ai/sdk', () => {
  const messageBody = {
    model: 'claude-sim-1',
    max_tokens: 64,
    messages: [{ role: 'user' as const, content: 'hello world' }],
  };

  it('messages, plain and streamed, with Anthropic usage', async () => {
    const provider = await start({ flavor: 'anthropic', outputTokens: 7 });
    const client = anthropic(provider);
    const message = await client.messages.create(messageBody);
    const prompt = countPromptTokens(messageBody, 'messages');
    expect(message.usage).toMatchObject({ input_tokens: prompt, output_tokens: 7 });
    expect(message.stop_reason).toBe('end_turn');

    const events: string[] = [];
    const stream = client.messages.stream(messageBody);
    stream.on('streamEvent', (event) => events.push(event.type));
    const final = await stream.finalMessage();
    expect(final.usage).toMatchObject({ input_tokens: prompt, output_tokens: 7 });
    expect(final.content[0]).toMatchObject({
      type: 'text',
      text: (message.content[0] as { text: string }).text,
    });
    expect(events[0]).toBe('message_start');
    expect(events.filter((type) => type === 'content_block_delta')).toHaveLength(7);
    expect(events.slice(-3)).toEqual(['content_block_stop', 'message_delta', 'message_stop']);
  });

  it('rate limits with anthropic-ratelimit headers; maxRetries 2 waits for retry-after and then succeeds', async () => {
    const provider = await start({
      flavor: 'anthropic',
      limits: [{ dimension: 'requests', amount: 1, window: '1s' }],
    });
    const client = anthropic(provider, 2);
    const first = await client.messages.create(messageBody).withResponse();
    expect(first.response.headers.get('anthropic-ratelimit-requests-limit')).toBe('1');
    expect(first.response.headers.get('anthropic-ratelimit-requests-remaining')).toBe('0');
    await client.messages.create(messageBody);
    const entries = provider.ledger.entries();
    expect(entries.map((entry) => entry.outcome)).toEqual(['ok', 'refused', 'ok']);
    expect(entries[1]!.refusal).toMatchObject({ class: 'rate', code: 'rate_limit_error' });
    // The SDK waited at least the advertised retry-after (whole seconds) before retrying.
    expect(entries[2]!.arrivalMs - entries[1]!.completionMs!).toBeGreaterThanOrEqual(990);
  });

  it('without retries the refusal is a RateLimitError carrying retry-after', async () => {
    const provider = await start({
      flavor: 'anthropic',
      limits: [{ dimension: 'requests', amount: 1, window: '1m' }],
    });
    const client = anthropic(provider);
    await client.messages.create(messageBody);
    const error = await client.messages.create(messageBody).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(Anthropic.RateLimitError);
    expect((error as InstanceType<typeof Anthropic.APIError>).headers?.get('retry-after')).toMatch(
      /^(59|60)$/,
    );
  });

  it('overload is 529 OverloadedError; a low balance is a 400 the SDK does not retry', async () => {
    const provider = await start({ flavor: 'anthropic' });
    const client = anthropic(provider, 2);
    provider.inject('overload', 3);
    const overloaded = await client.messages.create(messageBody).catch((e: unknown) => e);
    expect(overloaded).toBeInstanceOf(Anthropic.InternalServerError);
    expect((overloaded as InstanceType<typeof Anthropic.APIError>).status).toBe(529);
    provider.inject('balance');
    const balance = await client.messages.create(messageBody).catch((e: unknown) => e);
    expect(balance).toBeInstanceOf(Anthropic.BadRequestError);
    expect(provider.ledger.summary().refusedByClass).toEqual({ overload: 3, balance: 1 });
  });

  it('a missing max_tokens is a 400 in Anthropic shape', async () => {
    const provider = await start({ flavor: 'anthropic' });
    const response = await fetch(`${provider.url}/v1/messages`, {
      method: 'POST',
      body: JSON.stringify({ model: 'claude', messages: [{ role: 'user', content: 'x' }] }),
    });
    expect(response.status).toBe(400);
    expect(await json(response)).toEqual({
      type: 'error',
      error: { type: 'invalid_request_error', message: 'max_tokens: Field required' },
    });
  });
});
