/** The server over plain HTTP with a controlled clock: exact limits, charging, faults, admin API. */
import { afterEach, describe, expect, it } from 'vitest';
import { countPromptTokens } from '../common/tokens/count-tokens.ts';
import { startSimProvider, type SimProvider, type SimProviderOptions } from './server.ts';

// Response bodies are checked by assertions, not by types.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Body = any;
const json = (response: Response): Promise<Body> => response.json();

let sim: SimProvider | undefined;
let now = 0;

afterEach(async () => {
  await sim?.close();
  sim = undefined;
});

async function start(options: SimProviderOptions = {}): Promise<SimProvider> {
  now = Date.parse('2026-03-01T00:00:00Z');
  sim = await startSimProvider({ clock: () => now, ...options });
  return sim;
}

const chat = { model: 'm', messages: [{ role: 'user', content: 'hello world' }] };

async function post(path: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${sim!.url}${path}`, {
    method: 'POST',
    body: typeof body === 'string' ? body : JSON.stringify(body),
    headers,
  });
}

describe('exact windows over HTTP', () => {
  it('admits `amount` per window and the next one exactly W after the first', async () => {
    await start({ limits: [{ dimension: 'requests', amount: 3, window: '1s' }] });
    const t0 = now;
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await post('/v1/chat/completions', chat)).status);
    expect(statuses).toEqual([200, 200, 200, 429]);
    now = t0 + 999.999;
    expect((await post('/v1/chat/completions', chat)).status).toBe(429);
    now = t0 + 1000;
    const response = await post('/v1/chat/completions', chat);
    expect(response.status).toBe(200);
    // The three at t0 have all aged out; only this one is in the window.
    expect(response.headers.get('x-ratelimit-remaining-requests')).toBe('2');
    expect(sim!.ledger.summary()).toMatchObject({
      admitted: 4,
      refused: 2,
      limits: [{ label: 'requests/1s', peak: 3 }],
    });
  });

  it('charges prompt + max tokens at arrival and corrects to real usage at completion', async () => {
    const body = { ...chat, max_tokens: 80 };
    const prompt = countPromptTokens(body, 'chat.completions');
    await start({
      outputTokens: 10,
      limits: [{ dimension: 'totalTokens', amount: 2 * prompt + 90, window: '1m' }],
    });
    expect((await post('/v1/chat/completions', body)).status).toBe(200);
    // Charged prompt + 80, corrected to prompt + 10 once done: a second prompt + 80 now fits exactly.
    expect((await post('/v1/chat/completions', body)).status).toBe(200);
    const refused = await post('/v1/chat/completions', { ...chat, max_tokens: 71 });
    expect(refused.status).toBe(429);
    expect((await json(refused)).error.message).toContain(
      `Used ${2 * prompt + 20}, Requested ${prompt + 71}`,
    );
    expect(sim!.ledger.entries().map((e) => e.charged.output)).toEqual([80, 80, 0]);
  });

  it('charges the default allowance when no max tokens is given, and refuses a request larger than a limit', async () => {
    await start({
      defaultMaxOutputTokens: 100,
      limits: [{ dimension: 'outputTokens', amount: 150, window: '1m' }],
    });
    expect((await post('/v1/chat/completions', chat)).status).toBe(200);
    expect(sim!.ledger.entries()[0]!.charged.output).toBe(100);
    const tooLarge = await post('/v1/chat/completions', { ...chat, max_tokens: 151 });
    expect(tooLarge.status).toBe(429);
    expect((await json(tooLarge)).error.message).toMatch(/^Request too large/);
    expect(sim!.ledger.summary().refusedByClass).toEqual({ tooLarge: 1 });
  });

  it('applies model limits to that model only; limits change at runtime keeping their state', async () => {
    await start({ limits: [{ dimension: 'requests', amount: 1, window: '1m', model: 'big' }] });
    expect((await post('/v1/chat/completions', { ...chat, model: 'big' })).status).toBe(200);
    expect((await post('/v1/chat/completions', { ...chat, model: 'big' })).status).toBe(429);
    expect((await post('/v1/chat/completions', { ...chat, model: 'small' })).status).toBe(200);
    sim!.setConfig({ limits: [{ dimension: 'requests', amount: 2, window: '1m', model: 'big' }] });
    expect((await post('/v1/chat/completions', { ...chat, model: 'big' })).status).toBe(200);
    expect((await post('/v1/chat/completions', { ...chat, model: 'big' })).status).toBe(429);
  });
});

describe('responses', () => {
  it('n choices, the x-sim-output-tokens override, and paced streaming give the same text as unpaced', async () => {
    await start({ outputTokens: 4 });
    const multi = await json(
      await post('/v1/chat/completions', { ...chat, n: 2 }, { 'x-sim-output-tokens': '3' }),
    );
    expect(multi.choices).toHaveLength(2);
    expect(multi.usage.completion_tokens).toBe(6);
    const fast = await (await post('/v1/chat/completions', { ...chat, stream: true })).text();
    sim!.setConfig({ perTokenMs: 1 });
    const paced = await (await post('/v1/chat/completions', { ...chat, stream: true })).text();
    const strip = (text: string) => text.replace(/chatcmpl-sim\w+/g, 'ID');
    expect(strip(paced)).toBe(strip(fast));
    expect(fast.endsWith('data: [DONE]\n\n')).toBe(true);
  });

  it('Anthropic SSE frames are named events', async () => {
    await start({ flavor: 'anthropic', outputTokens: 2 });
    const text = await (
      await post('/v1/messages', {
        model: 'c',
        max_tokens: 10,
        stream: true,
        messages: [{ role: 'user', content: 'hi' }],
      })
    ).text();
    const names = [...text.matchAll(/^event: (\w+)$/gm)].map((match) => match[1]);
    expect(names).toEqual([
      'message_start',
      'content_block_start',
      'ping',
      'content_block_delta',
      'content_block_delta',
      'content_block_stop',
      'message_delta',
      'message_stop',
    ]);
    expect(text).toContain('"usage":{"output_tokens":2}');
  });

  it('serves any path prefix (GLM uses /api/paas/v4) and lists models', async () => {
    await start({ flavor: 'glm', models: ['glm-4.6'] });
    expect((await post('/api/paas/v4/chat/completions', { ...chat, model: 'glm-4.6' })).status).toBe(200);
    const unknown = await post('/api/paas/v4/chat/completions', chat);
    expect(unknown.status).toBe(400);
    expect((await json(unknown)).error.code).toBe('1211');
    const models = await json(await fetch(`${sim!.url}/v1/models`));
    expect(models.data.map((model: { id: string }) => model.id)).toEqual(['glm-4.6']);
  });

  it('answers an oversized body with 413 and keeps serving', async () => {
    await start({ maxBodyBytes: 1000 });
    const big = await post('/v1/chat/completions', {
      ...chat,
      messages: [{ role: 'user', content: 'x'.repeat(5000) }],
    });
    expect(big.status).toBe(413);
    expect((await post('/v1/chat/completions', chat)).status).toBe(200);
  });
});

describe('keep-alive lines (DeepSeek)', () => {
  it('sends blank lines before a delayed JSON body and comments in a delayed stream; clients still parse them', async () => {
    await start({ flavor: 'deepseek', keepAliveMs: 2, latencyMs: 30, outputTokens: 3 });
    const plain = await post('/v1/chat/completions', chat);
    expect(plain.status).toBe(200);
    const text = await plain.text();
    expect(text.startsWith('\n')).toBe(true);
    expect(JSON.parse(text).usage.completion_tokens).toBe(3);
    const streamed = await (await post('/v1/chat/completions', { ...chat, stream: true })).text();
    expect(streamed.startsWith(': keep-alive\n\n')).toBe(true);
    expect(streamed.endsWith('data: [DONE]\n\n')).toBe(true);
  });
});

describe('faults', () => {
  it('error and overload rates refuse before admission and consume nothing', async () => {
    await start({
      flavor: 'deepseek',
      errorRate: 0.5,
      overloadRate: 0.5,
      limits: [{ dimension: 'requests', amount: 1, window: '1m' }],
    });
    const statuses = [];
    for (let i = 0; i < 20; i++) statuses.push((await post('/v1/chat/completions', chat)).status);
    expect(new Set(statuses)).toEqual(new Set([500, 503]));
    sim!.setConfig({ errorRate: 0, overloadRate: 0 });
    expect((await post('/v1/chat/completions', chat)).status).toBe(200);
  });

  it('balance refusals per flavour', async () => {
    await start({ flavor: 'deepseek', balanceExhausted: true });
    expect((await post('/v1/chat/completions', chat)).status).toBe(402);
    sim!.setConfig({ flavor: 'glm' });
    const glm = await post('/v1/chat/completions', chat);
    expect([glm.status, (await json(glm)).error.code]).toEqual([429, '1113']);
  });

  it('a non-streaming drop cuts the connection before any response', async () => {
    await start();
    sim!.inject('drop');
    await expect(post('/v1/chat/completions', chat)).rejects.toThrow();
    expect((await post('/v1/chat/completions', chat)).status).toBe(200);
    expect(sim!.ledger.entries().map((entry) => [entry.outcome, entry.status])).toEqual([
      ['dropped', 0],
      ['ok', 200],
    ]);
  });

  it('close() ends hung requests and they are recorded', async () => {
    const provider = await start({ limits: [{ dimension: 'concurrency', amount: 1 }] });
    provider.inject('hang');
    const hung = post('/v1/chat/completions', chat).catch((error: unknown) => error);
    while (provider.ledger.summary().inFlight === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    expect((await post('/v1/chat/completions', chat)).status).toBe(429);
    await provider.close();
    expect(await hung).toBeInstanceOf(Error);
    expect(provider.ledger.summary()).toMatchObject({ hung: 1, inFlight: 0, limits: [{ used: 0 }] });
  });
});

describe('admin API', () => {
  it('reads and changes config, injects faults, serves the ledger, resets', async () => {
    await start();
    const bad = await post('/_sim/config', { latencyMs: -1 });
    expect(bad.status).toBe(400);
    expect((await json(bad)).error.field).toBe('latencyMs');
    const unknownField = await post('/_sim/config', { latency: 5 });
    expect(unknownField.status).toBe(400);
    expect(
      (await post('/_sim/config', { flavor: 'glm', limits: [{ dimension: 'concurrency', amount: 2 }] }))
        .status,
    ).toBe(200);
    expect((await json(await fetch(`${sim!.url}/_sim/config`))).flavor).toBe('glm');
    expect((await post('/_sim/inject', { fault: 'modelOverload', count: 1 })).status).toBe(200);
    expect((await post('/_sim/inject', { fault: 'nope' })).status).toBe(400);
    const refused = await post('/v1/chat/completions', chat);
    expect((await json(refused)).error.code).toBe('1312');
    await post('/v1/chat/completions', chat);
    const ledger = await json(await fetch(`${sim!.url}/_sim/ledger?since=1`));
    expect(ledger.entries.map((entry: { id: number }) => entry.id)).toEqual([2]);
    expect(ledger.summary).toMatchObject({ total: 2, ok: 1, refusedByCode: { '1312': 1 } });
    await post('/_sim/reset', {});
    expect((await json(await fetch(`${sim!.url}/_sim/summary`))).total).toBe(0);
  });
});
