/**
 * The shared response cache through sidecars with the official openai client, against the
 * simulated provider whose ledger counts the upstream calls.
 */
import { request } from 'undici';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { budget, counter, startCacheStack, type CacheStack } from './cache-harness.ts';

const A = 'team-a/app';
const B = 'team-b/app';
const SHARED_1 = 'shared/one';
const SHARED_2 = 'shared/two';
const NO_HEADER = 'team-c/strict';

let stack: CacheStack;
let prompt = 0;
/** A prompt no other test used, so entries never leak between tests. */
const fresh = () => [{ role: 'user' as const, content: `question ${++prompt} ${Date.now()}` }];

beforeAll(async () => {
  stack = await startCacheStack({
    budgets: [
      budget('team-a', 'app', {
        enabled: true,
        models: [
          { model: 'short-ttl-model', ttl: '1s' },
          { model: 'tiny-entry-model', maxEntryBytes: 300 },
        ],
      }),
      budget('team-b', 'app', { enabled: true }),
      budget('shared', 'one', { enabled: true, sharedScope: 'pool' }),
      budget('shared', 'two', { enabled: true, sharedScope: 'pool' }),
      budget('team-c', 'strict', { enabled: true, allowRequestHeader: false }),
    ],
    sidecarsPerBudget: 4,
  });
});
afterAll(async () => stack?.close());
beforeEach(() => {
  stack.sim.setConfig({ latencyMs: 0, outputTokens: 12 });
});

async function raw(
  budgetId: string,
  body: Record<string, unknown>,
  headers: Record<string, string> = {},
  index = 0,
) {
  const response = await stack
    .client(budgetId, index)
    .chat.completions.create(body as never, { headers })
    .asResponse();
  return { status: response.status, headers: response.headers, text: await response.text() };
}

describe('response cache', () => {
  it('answers a repeated deterministic request from the cache, byte for byte, without a lease or a provider call', async () => {
    const body = { model: 'sim-model', messages: fresh(), temperature: 0, max_tokens: 30 };
    const calls = stack.upstreamCalls();
    const leases = await stack.granted(A);
    const first = await raw(A, body);
    expect(first.status).toBe(200);
    expect(first.headers.get('x-tokenlease-cache')).toBe('miss');
    // Key order and whitespace do not matter; `user` does not either.
    const reordered = {
      max_tokens: 30,
      temperature: 0,
      user: 'someone-else',
      messages: body.messages,
      model: 'sim-model',
    };
    const second = await raw(A, reordered, {}, 1);
    expect(second.status).toBe(200);
    expect(second.headers.get('x-tokenlease-cache')).toBe('hit');
    expect(Number(second.headers.get('age'))).toBeGreaterThanOrEqual(0);
    expect(second.headers.get('content-type')).toBe(first.headers.get('content-type'));
    expect(second.text).toBe(first.text);
    expect(stack.upstreamCalls() - calls).toBe(1);
    expect((await stack.granted(A)) - leases).toBe(1);
    const sidecar = stack.sidecar(A, 1);
    expect(await counter(sidecar, 'tokenlease_sidecar_cache_hits_total', { budget: A })).toBe(1);
    expect(await counter(sidecar, 'tokenlease_sidecar_cache_saved_requests_total', { budget: A })).toBe(1);
    expect(
      await counter(sidecar, 'tokenlease_sidecar_cache_saved_tokens_total', { direction: 'output' }),
    ).toBe(12);
  });

  it('replays a stream as SSE byte for byte, with and without include_usage (like for like)', async () => {
    const messages = fresh();
    const calls = stack.upstreamCalls();
    const plain = { model: 'sim-model', messages, temperature: 0, stream: true };
    const withUsage = { ...plain, stream_options: { include_usage: true } };
    const first = await raw(A, plain);
    const firstUsage = await raw(A, withUsage, {}, 2);
    expect(first.text).toContain('data: [DONE]');
    expect(first.text).not.toContain('"usage":{');
    expect(firstUsage.text).toContain('"usage":{');
    expect(stack.upstreamCalls() - calls).toBe(2);

    const again = await raw(A, plain, {}, 3);
    const againUsage = await raw(A, withUsage, {}, 1);
    expect(again.headers.get('x-tokenlease-cache')).toBe('hit');
    expect(again.headers.get('content-type')).toContain('text/event-stream');
    expect(again.text).toBe(first.text);
    expect(againUsage.text).toBe(firstUsage.text);
    expect(stack.upstreamCalls() - calls).toBe(2);

    // The SDK reads the replayed stream like a live one.
    const stream = await stack.client(A, 2).chat.completions.create(plain as never);
    let text = '';
    for await (const chunk of stream as unknown as AsyncIterable<{
      choices: Array<{ delta: { content?: string } }>;
    }>) {
      text += chunk.choices[0]?.delta.content ?? '';
    }
    expect(text.trim().split(/\s+/)).toHaveLength(12);
    expect(stack.upstreamCalls() - calls).toBe(2);
  });

  it('caches embeddings, which are deterministic whatever their parameters', async () => {
    const calls = stack.upstreamCalls();
    const input = `embed ${++prompt} ${Date.now()}`;
    const first = await stack.client(A).embeddings.create({ model: 'sim-embed', input }).asResponse();
    const firstText = await first.text();
    const again = await stack.client(A, 1).embeddings.create({ model: 'sim-embed', input }).asResponse();
    expect(again.headers.get('x-tokenlease-cache')).toBe('hit');
    expect(await again.text()).toBe(firstText);
    expect(stack.upstreamCalls() - calls).toBe(1);
  });

  it('does not cache a request that is not deterministic by its parameters, unless the app opts in', async () => {
    const body = { model: 'sim-model', messages: fresh(), max_tokens: 30 };
    const calls = stack.upstreamCalls();
    await raw(A, body);
    const second = await raw(A, body);
    expect(second.headers.get('x-tokenlease-cache')).toBeNull();
    expect(stack.upstreamCalls() - calls).toBe(2);

    await raw(A, body, { 'x-tokenlease-cache': 'on' });
    const optedIn = await raw(A, body, { 'x-tokenlease-cache': 'on' });
    expect(optedIn.headers.get('x-tokenlease-cache')).toBe('hit');
    expect(stack.upstreamCalls() - calls).toBe(3);

    // top_p ~0 is deterministic too.
    const greedy = { model: 'sim-model', messages: fresh(), top_p: 0 };
    await raw(A, greedy);
    expect((await raw(A, greedy)).headers.get('x-tokenlease-cache')).toBe('hit');
    expect(stack.upstreamCalls() - calls).toBe(4);
  });

  it('keeps budgets apart unless both share a scope', async () => {
    const body = { model: 'sim-model', messages: fresh(), temperature: 0 };
    const calls = stack.upstreamCalls();
    await raw(A, body);
    const other = await raw(B, body);
    expect(other.headers.get('x-tokenlease-cache')).toBe('miss');
    expect(stack.upstreamCalls() - calls).toBe(2);
    expect((await raw(B, body)).headers.get('x-tokenlease-cache')).toBe('hit');
    expect(stack.upstreamCalls() - calls).toBe(2);

    const sharedBody = { model: 'sim-model', messages: fresh(), temperature: 0 };
    const one = await raw(SHARED_1, sharedBody);
    const two = await raw(SHARED_2, sharedBody);
    expect(two.headers.get('x-tokenlease-cache')).toBe('hit');
    expect(two.text).toBe(one.text);
    expect((await raw(A, sharedBody)).headers.get('x-tokenlease-cache')).toBe('miss');
    expect(stack.upstreamCalls() - calls).toBe(4);
  });

  it('off bypasses, refresh calls the provider and replaces the entry; a budget can refuse the header', async () => {
    const body = { model: 'sim-model', messages: fresh(), temperature: 0 };
    const calls = stack.upstreamCalls();
    const first = await raw(A, body);
    const off = await raw(A, body, { 'x-tokenlease-cache': 'off' });
    expect(off.headers.get('x-tokenlease-cache')).toBeNull();
    expect(stack.upstreamCalls() - calls).toBe(2);
    const refreshed = await raw(A, body, { 'x-tokenlease-cache': 'refresh' }, 1);
    expect(refreshed.headers.get('x-tokenlease-cache')).toBe('refresh');
    expect(stack.upstreamCalls() - calls).toBe(3);
    // The provider's response ids differ per call: the entry now holds the refreshed answer.
    expect(refreshed.text).not.toBe(first.text);
    const hit = await raw(A, body, {}, 2);
    expect(hit.headers.get('x-tokenlease-cache')).toBe('hit');
    expect(hit.text).toBe(refreshed.text);
    expect(stack.upstreamCalls() - calls).toBe(3);

    const strict = { model: 'sim-model', messages: fresh(), temperature: 0 };
    await raw(NO_HEADER, strict);
    expect(
      (await raw(NO_HEADER, strict, { 'x-tokenlease-cache': 'off' })).headers.get('x-tokenlease-cache'),
    ).toBe('hit');
    expect(stack.upstreamCalls() - calls).toBe(4);

    const invalid = await request(`${stack.sidecar(A).url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-tokenlease-cache': 'sometimes' },
      body: JSON.stringify(body),
    });
    expect(invalid.statusCode).toBe(400);
    expect(await invalid.body.text()).toContain('x-tokenlease-cache');
  });

  it('forgets an entry after its TTL', async () => {
    const body = { model: 'short-ttl-model', messages: fresh(), temperature: 0 };
    const calls = stack.upstreamCalls();
    await raw(A, body);
    expect((await raw(A, body)).headers.get('x-tokenlease-cache')).toBe('hit');
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    expect((await raw(A, body)).headers.get('x-tokenlease-cache')).toBe('miss');
    expect(stack.upstreamCalls() - calls).toBe(2);
  });

  it('never caches an error, a provider refusal or a broken stream', async () => {
    const body = { model: 'sim-model', messages: fresh(), temperature: 0 };
    const calls = stack.upstreamCalls();
    for (const fault of ['serverError', 'overload', 'balance'] as const) {
      stack.sim.inject(fault);
      const failed = await raw(A, body).catch((error: { status?: number }) => ({
        status: error.status ?? 0,
      }));
      expect(failed.status).toBeGreaterThanOrEqual(400);
    }
    const stream = { ...body, stream: true };
    stack.sim.inject('drop');
    await raw(A, stream).catch(() => undefined);
    expect(stack.upstreamCalls() - calls).toBe(4);

    const ok = await raw(A, body);
    expect(ok.status).toBe(200);
    expect(ok.headers.get('x-tokenlease-cache')).toBe('miss');
    const okStream = await raw(A, stream);
    expect(okStream.headers.get('x-tokenlease-cache')).toBe('miss');
    expect(okStream.text).toContain('data: [DONE]');
    expect(stack.upstreamCalls() - calls).toBe(6);
    expect(
      await counter(stack.sidecar(A), 'tokenlease_sidecar_cache_not_stored_total', { reason: 'partial' }),
    ).toBe(1);
  });

  it('20 identical concurrent requests through 4 sidecars make one upstream call', async () => {
    stack.sim.setConfig({ latencyMs: 300 });
    const body = { model: 'sim-model', messages: fresh(), temperature: 0 };
    const calls = stack.upstreamCalls();
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => raw(B, body, {}, i % 4)));
    expect(stack.upstreamCalls() - calls).toBe(1);
    expect(new Set(answers.map((answer) => answer.text)).size).toBe(1);
    expect(answers.every((answer) => answer.status === 200)).toBe(true);
    expect(answers.filter((answer) => answer.headers.get('x-tokenlease-cache') === 'hit')).toHaveLength(19);
    let served = 0;
    for (let i = 0; i < 4; i++) {
      served += await counter(stack.sidecar(B, i), 'tokenlease_sidecar_cache_coalesced_waits_total', {
        result: 'served',
      });
    }
    expect(served).toBe(19);
  });

  it('does not store an answer larger than maxEntryBytes, and says so in a metric', async () => {
    const body = { model: 'tiny-entry-model', messages: fresh(), temperature: 0 };
    const calls = stack.upstreamCalls();
    const before = await counter(stack.sidecar(A), 'tokenlease_sidecar_cache_not_stored_total', {
      reason: 'tooLarge',
    });
    const first = await raw(A, body);
    expect(first.text.length).toBeGreaterThan(300);
    const second = await raw(A, body);
    expect(second.headers.get('x-tokenlease-cache')).toBe('miss');
    expect(stack.upstreamCalls() - calls).toBe(2);
    expect(
      await counter(stack.sidecar(A), 'tokenlease_sidecar_cache_not_stored_total', { reason: 'tooLarge' }),
    ).toBe(before + 2);
  });

  it('ignores a corrupted entry, never serves it, and replaces it', async () => {
    const body = { model: 'sim-model', messages: fresh(), temperature: 0 };
    const calls = stack.upstreamCalls();
    const first = await raw(A, body);
    const keys = (await stack.redis.keys(`${stack.prefix}{b:team-a/app@llm/sim}:e:*`)).sort();
    // Damage every entry of the scope: one byte in the middle of the body.
    for (const key of keys) {
      const length = await stack.redis.strlen(key);
      await stack.redis.setrange(key, Math.floor(length / 2), '#');
    }
    // Another sidecar than the one that stored it (which holds its own copy for a moment).
    const afterDamage = await raw(A, body, {}, 1);
    expect(afterDamage.status).toBe(200);
    expect(afterDamage.headers.get('x-tokenlease-cache')).toBe('miss');
    expect(afterDamage.text).not.toContain('#');
    JSON.parse(afterDamage.text);
    expect(stack.upstreamCalls() - calls).toBe(2);
    expect(
      await counter(stack.sidecar(A, 1), 'tokenlease_sidecar_cache_corrupt_entries_total'),
    ).toBeGreaterThanOrEqual(1);
    const replaced = await raw(A, body, {}, 2);
    expect(replaced.headers.get('x-tokenlease-cache')).toBe('hit');
    expect(replaced.text).toBe(afterDamage.text);
    expect(replaced.text).not.toBe(first.text);
    expect(stack.upstreamCalls() - calls).toBe(2);
  });
});
