/**
 * The storm: 40 concurrent clients through 4 sidecars sharing one quota engine, against a
 * GLM-flavoured provider that allows 5 requests in flight. The provider must never refuse with
 * 1302, and every call either completes or gets the sidecar's own 429 with retry-after.
 */
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { engineState, eventually, startStack, type Stack } from './harness.ts';

const CLIENTS = 40;
const CALLS_PER_CLIENT = 3;

describe('storm through 4 sidecars at a GLM provider with concurrency 5', () => {
  let stack: Stack;
  const agent = new Agent({ connections: 100 });

  beforeAll(async () => {
    const limits = [{ dimension: 'concurrency' as const, amount: 5 }];
    stack = await startStack({
      sim: { flavor: 'glm', limits, outputTokens: 8, perTokenMs: 2 },
      provider: { flavor: 'glm', limits },
      sidecars: 4,
    });
  });
  afterAll(async () => {
    await stack?.close();
    await agent.close();
  });

  it('the provider records no 1302 and every call completes or gets our 429', async () => {
    const results: Array<{ status: number; ours: boolean; retryAfter: string | undefined }> = [];
    await Promise.all(
      Array.from({ length: CLIENTS }, async (_, client) => {
        const sidecar = stack.sidecars[client % stack.sidecars.length]!;
        for (let call = 0; call < CALLS_PER_CLIENT; call++) {
          const stream = (client + call) % 2 === 0;
          const response = await request(`${sidecar.url}/v1/chat/completions`, {
            method: 'POST',
            dispatcher: agent,
            headers: {
              'content-type': 'application/json',
              'x-tokenlease-timeout-ms': client % 10 === 0 ? '50' : '20000',
            },
            body: JSON.stringify({
              model: 'glm-4.6',
              stream,
              max_tokens: 100,
              messages: [{ role: 'user', content: `client ${client} call ${call}` }],
            }),
          });
          await response.body.text();
          const header = (name: string) => response.headers[name] as string | undefined;
          results.push({
            status: response.statusCode,
            ours: header('x-tokenlease-error') !== undefined,
            retryAfter: header('retry-after'),
          });
        }
      }),
    );

    const summary = stack.sim.ledger.summary();
    expect(summary.refusedByCode['1302'] ?? 0).toBe(0);
    expect(summary.refused).toBe(0);
    expect(summary.maxInFlight).toBeLessThanOrEqual(5);
    expect(results).toHaveLength(CLIENTS * CALLS_PER_CLIENT);
    for (const result of results) {
      if (result.status === 200) continue;
      expect(result).toMatchObject({ status: 429, ours: true });
      expect(Number(result.retryAfter)).toBeGreaterThanOrEqual(1);
    }
    // The short-deadline clients show the sidecar's own refusals; the rest all complete.
    expect(results.filter((r) => r.status === 200).length).toBeGreaterThanOrEqual(
      CLIENTS * CALLS_PER_CLIENT * 0.9,
    );
    expect(summary.ok).toBe(results.filter((r) => r.status === 200).length);
    await eventually(async () => expect((await engineState(stack.engine)).inFlight).toBe(0));
  });
});
