/**
 * The official SDKs through the sidecar get byte for byte what the provider sent (less the usage
 * chunk the sidecar asked for on their behalf), and the quota engine ends up charged exactly the
 * provider's usage. A twin simulated provider, sent the same requests in the same order, gives
 * the bytes to compare with.
 */
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { fetch } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimProvider, type SimProvider } from '../../sim-provider/index.ts';
import { ACCOUNTING_LIMITS, eventually, expectChargedAsLedger, startStack, type Stack } from './harness.ts';

/** Response ids come from the provider's ledger (the twins agree); timestamps are the wall clock. */
function normalize(text: string): string {
  return text.replace(/"(created|created_at)":\d+/g, '"$1":0');
}

async function direct(sim: SimProvider, path: string, body: unknown): Promise<string> {
  const response = await fetch(`${sim.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return normalize(await response.text());
}

const USAGE_CHUNK = /data: \{[^\n]*"choices":\[\][^\n]*"usage":\{[^\n]*\n\n/;

describe('OpenAI SDK through the sidecar', () => {
  let stack: Stack;
  let twin: SimProvider;
  let client: OpenAI;

  beforeAll(async () => {
    const sim = { outputTokens: 12, models: [] };
    stack = await startStack({
      sim,
      provider: { limits: ACCOUNTING_LIMITS, credentials: { env: 'SIM_KEY' } },
      sidecar: { env: { SIM_KEY: 'sk-provider' } },
    });
    twin = await startSimProvider(sim);
    client = new OpenAI({ baseURL: `${stack.url}/v1`, apiKey: 'sk-app-key-never-forwarded', maxRetries: 0 });
  });
  afterAll(async () => {
    await stack?.close();
    await twin?.close();
  });

  const messages = [{ role: 'user' as const, content: 'Say something deterministic.' }];

  it('chat completion: identical body, usage settled', async () => {
    const body = { model: 'sim-model', messages, max_tokens: 50 };
    const raw = await client.chat.completions.create(body).asResponse();
    expect(raw.status).toBe(200);
    expect(normalize(await raw.text())).toBe(await direct(twin, '/v1/chat/completions', body));
  });

  it('stream without include_usage: identical bytes less the usage chunk', async () => {
    const body = { model: 'sim-model', messages, max_tokens: 50, stream: true as const };
    const raw = await client.chat.completions.create(body).asResponse();
    const viaSidecar = normalize(await raw.text());
    const fromProvider = await direct(twin, '/v1/chat/completions', {
      ...body,
      stream_options: { include_usage: true },
    });
    expect(fromProvider).toMatch(USAGE_CHUNK);
    expect(viaSidecar).toBe(fromProvider.replace(USAGE_CHUNK, ''));
    expect(viaSidecar).toContain('data: [DONE]');
  });

  it('stream with include_usage: identical bytes, usage chunk included', async () => {
    const body = {
      model: 'sim-model',
      messages,
      max_tokens: 50,
      stream: true as const,
      stream_options: { include_usage: true },
    };
    const raw = await client.chat.completions.create(body).asResponse();
    const viaSidecar = normalize(await raw.text());
    expect(viaSidecar).toMatch(USAGE_CHUNK);
    expect(viaSidecar).toBe(await direct(twin, '/v1/chat/completions', body));
  });

  it('the SDK reads the stream as usual', async () => {
    const stream = await client.chat.completions.create({
      model: 'sim-model',
      messages,
      max_tokens: 50,
      stream: true,
    });
    let text = '';
    let sawUsage = false;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      if (chunk.usage) sawUsage = true;
    }
    expect(text.length).toBeGreaterThan(0);
    expect(sawUsage).toBe(false);
    await direct(twin, '/v1/chat/completions', {
      model: 'sim-model',
      messages,
      max_tokens: 50,
      stream: true,
    });
  });

  it('embeddings: identical body', async () => {
    const body = { model: 'sim-embed', input: ['alpha beta', 'gamma'], encoding_format: 'base64' as const };
    const raw = await client.embeddings.create(body).asResponse();
    expect(normalize(await raw.text())).toBe(await direct(twin, '/v1/embeddings', body));
  });

  it('responses stream: identical bytes', async () => {
    const body = { model: 'sim-model', input: 'Say hi', max_output_tokens: 40, stream: true as const };
    const raw = await client.responses.create(body).asResponse();
    expect(normalize(await raw.text())).toBe(await direct(twin, '/v1/responses', body));
  });

  it("settles exactly the provider's usage and leaves no lease", async () => {
    await eventually(async () => {
      const ledger = stack.sim.ledger.summary();
      expect(ledger.ok).toBe(6);
      await expectChargedAsLedger(stack.engine, ledger.usage);
    });
  });
});

describe('Anthropic SDK through the sidecar', () => {
  let stack: Stack;
  let twin: SimProvider;
  let client: Anthropic;

  beforeAll(async () => {
    const sim = { flavor: 'anthropic' as const, outputTokens: 9 };
    stack = await startStack({ sim, provider: { api: 'anthropic', limits: ACCOUNTING_LIMITS } });
    twin = await startSimProvider(sim);
    client = new Anthropic({ baseURL: stack.url, apiKey: 'sk-ant-app', maxRetries: 0 });
  });
  afterAll(async () => {
    await stack?.close();
    await twin?.close();
  });

  const body = {
    model: 'claude-sim',
    max_tokens: 64,
    system: 'Be brief.',
    messages: [{ role: 'user' as const, content: 'Hello there' }],
  };

  it('messages: identical body', async () => {
    const raw = await client.messages.create(body).asResponse();
    expect(normalize(await raw.text())).toBe(await direct(twin, '/v1/messages', body));
  });

  it('messages stream: identical bytes, and the SDK reads it', async () => {
    const raw = await client.messages.create({ ...body, stream: true }).asResponse();
    expect(normalize(await raw.text())).toBe(await direct(twin, '/v1/messages', { ...body, stream: true }));
    const stream = client.messages.stream(body);
    const final = await stream.finalMessage();
    expect(final.usage.output_tokens).toBeGreaterThan(0);
    await direct(twin, '/v1/messages', { ...body, stream: true });
  });

  it("settles exactly the provider's usage and leaves no lease", async () => {
    await eventually(async () => {
      const ledger = stack.sim.ledger.summary();
      expect(ledger.ok).toBe(3);
      await expectChargedAsLedger(stack.engine, ledger.usage);
    });
  });
});

describe('DeepSeek-style keep-alive lines while the answer is delayed', () => {
  let stack: Stack;

  beforeAll(async () => {
    const sim = { flavor: 'deepseek' as const, outputTokens: 7, latencyMs: 150, keepAliveMs: 30 };
    stack = await startStack({ sim, provider: { flavor: 'deepseek', limits: ACCOUNTING_LIMITS } });
  });
  afterAll(async () => stack?.close());

  it('passes them through and still settles the usage', async () => {
    const client = new OpenAI({ baseURL: `${stack.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const messages = [{ role: 'user' as const, content: 'slow please' }];
    const raw = await client.chat.completions
      .create({ model: 'deepseek-chat', max_tokens: 20, messages })
      .asResponse();
    const text = await raw.text();
    expect(text.startsWith('\n')).toBe(true);
    expect(JSON.parse(text).usage.completion_tokens).toBe(7);
    const stream = await client.chat.completions
      .create({ model: 'deepseek-chat', max_tokens: 20, messages, stream: true })
      .asResponse();
    expect(await stream.text()).toContain(': keep-alive\n\n');
    await eventually(async () => {
      const ledger = stack.sim.ledger.summary();
      expect(ledger.ok).toBe(2);
      await expectChargedAsLedger(stack.engine, ledger.usage);
    });
  });
});
