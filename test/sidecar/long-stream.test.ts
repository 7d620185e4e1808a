/**
 * A stream that runs longer than the lease timeout keeps its lease alive with heartbeats: the
 * concurrency slot stays held until the stream ends, then is freed by the settle.
 */
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { engineState, eventually, startStack, type Stack } from './harness.ts';

describe('a stream longer than the lease timeout', () => {
  let stack: Stack;

  beforeAll(async () => {
    stack = await startStack({
      // 30 tokens at 100 ms each: a 3 s stream against a 1 s lease timeout.
      sim: { outputTokens: 30, perTokenMs: 100 },
      provider: { leaseTimeout: '1s', limits: [{ dimension: 'concurrency', amount: 1 }] },
    });
  });
  afterAll(async () => stack?.close());

  it('keeps its slot until it ends, then frees it', async () => {
    const response = await request(`${stack.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'm',
        stream: true,
        max_tokens: 100,
        messages: [{ role: 'user', content: 'long' }],
      }),
    });
    const body = response.body.text();
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    // Without heartbeats the lease would have expired a second ago and freed the slot.
    expect((await engineState(stack.engine)).inFlight).toBe(1);
    expect(await body).toContain('data: [DONE]');
    await eventually(async () => expect((await engineState(stack.engine)).inFlight).toBe(0));
  });
});
