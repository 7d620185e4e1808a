/**
 * Cluster mode: sidecars lease through the real gRPC quota service on Redis; the same proxy
 * behaviour as with the in-process engine, and the budget failure mode when the service goes.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import OpenAI from 'openai';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createQuotaClient, type QuotaClient } from '../../common/grpc/quota-client.ts';
import { createRedisEngine, type LeaseEngine } from '../../controller/quota/engine/index.ts';
import { startQuotaServer, type QuotaServer } from '../../controller/quota/server/index.ts';
import { startSidecar, type RunningSidecar } from '../../sidecar/main.ts';
import { startSimProvider, type SimProvider } from '../../sim-provider/index.ts';
import { redisUrl } from '../support/redis.ts';
import { BUDGET_ID, budgetsFor, eventually, expectChargedAsLedger } from './harness.ts';

describe('sidecars through the gRPC quota service on Redis', () => {
  const prefix = `tltest-sidecar:${randomUUID().slice(0, 8)}:`;
  const limits = [
    { dimension: 'concurrency', amount: 3 },
    { dimension: 'inputTokens', amount: 10_000_000, window: '1h' },
    { dimension: 'outputTokens', amount: 10_000_000, window: '1h' },
  ] as const;
  let sim: SimProvider;
  let engine: LeaseEngine;
  let server: QuotaServer;
  let client: QuotaClient;
  let sidecars: RunningSidecar[];

  beforeAll(async () => {
    sim = await startSimProvider({ flavor: 'glm', limits: [limits[0]], outputTokens: 6, perTokenMs: 2 });
    const budgets = budgetsFor(`${sim.url}/v1`, {
      flavor: 'glm',
      limits: [...limits],
      failureMode: 'closed',
    });
    engine = createRedisEngine({ budgets, redis: redisUrl(), keyPrefix: prefix });
    server = await startQuotaServer({ engine, listen: '127.0.0.1:0' });
    await server.serving;
    client = createQuotaClient({ target: `127.0.0.1:${server.port}` });
    sidecars = [];
    for (let i = 0; i < 2; i++)
      sidecars.push(await startSidecar({ budgets, budget: BUDGET_ID, quota: client, probeIntervalMs: 50 }));
  });

  afterAll(async () => {
    for (const sidecar of sidecars ?? []) await sidecar.close();
    client?.close();
    await server?.shutdown(0);
    await engine?.close();
    await sim?.close();
    const admin = new Redis(redisUrl());
    const keys = await admin.keys(`${prefix}*`);
    if (keys.length > 0) await admin.del(...keys);
    admin.disconnect();
  });

  it('SDK calls and a burst through two sidecars: no provider refusal, usage settled exactly', async () => {
    const sdk = new OpenAI({ baseURL: `${sidecars[0]!.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const completion = await sdk.chat.completions.create({
      model: 'glm-4.6',
      max_tokens: 30,
      messages: [{ role: 'user', content: 'hi' }],
    });
    expect(completion.usage?.completion_tokens).toBe(6);

    await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const stream = await new OpenAI({
          baseURL: `${sidecars[i % 2]!.url}/v1`,
          apiKey: 'unused',
          maxRetries: 0,
        }).chat.completions.create({
          model: 'glm-4.6',
          max_tokens: 30,
          stream: true,
          messages: [{ role: 'user', content: `burst ${i}` }],
        });
        for await (const chunk of stream) expect(chunk.usage ?? undefined).toBeUndefined();
      }),
    );

    const ledger = sim.ledger.summary();
    expect(ledger.refused).toBe(0);
    expect(ledger.ok).toBe(21);
    expect(ledger.maxInFlight).toBeLessThanOrEqual(3);
    await eventually(() => expectChargedAsLedger(client, ledger.usage));
  });

  it('fails closed in the provider format when the quota service goes away', async () => {
    await server.shutdown(0);
    const response = await request(`${sidecars[0]!.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-tokenlease-timeout-ms': '500' },
      body: JSON.stringify({ model: 'glm-4.6', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] }),
    });
    const body = JSON.parse(await response.body.text()) as { error: { code: string } };
    expect(response.statusCode).toBe(503);
    expect(body.error.code).toBe('quota_service_unavailable');
    await eventually(async () => expect((await request(`${sidecars[0]!.url}/readyz`)).statusCode).toBe(503));
  });
});
