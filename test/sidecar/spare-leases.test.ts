/**
 * Spare leases through the real gRPC quota service on Redis: calls start on leases taken ahead of
 * them while the account is roomy, the ledger stays exact (spares given back charge nothing), and
 * where a limit is tight no spare is ever taken.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import OpenAI from 'openai';
import { afterEach, describe, expect, it } from 'vitest';
import { createQuotaClient, type QuotaClient } from '../../common/grpc/quota-client.ts';
import { createRedisEngine, type LeaseEngine } from '../../controller/quota/engine/index.ts';
import { startQuotaServer, type QuotaServer } from '../../controller/quota/server/index.ts';
import { startSidecar, type RunningSidecar } from '../../sidecar/main.ts';
import { startSimProvider, type SimProvider, type SimSettingsInput } from '../../sim-provider/index.ts';
import { redisUrl } from '../support/redis.ts';
import {
  BUDGET_ID,
  budgetsFor,
  engineState,
  eventually,
  expectChargedAsLedger,
  type ProviderFields,
} from './harness.ts';

interface Setup {
  sim: SimProvider;
  engine: LeaseEngine;
  server: QuotaServer;
  client: QuotaClient;
  sidecars: RunningSidecar[];
  prefix: string;
}

let setup: Setup | undefined;

async function start(
  limits: NonNullable<ProviderFields['limits']>,
  simLimits: SimSettingsInput['limits'],
): Promise<Setup> {
  const prefix = `tltest-spares:${randomUUID().slice(0, 8)}:`;
  const sim = await startSimProvider({ flavor: 'glm', limits: simLimits, outputTokens: 6 });
  const budgets = budgetsFor(`${sim.url}/v1`, { flavor: 'glm', limits: [...limits] });
  const engine = createRedisEngine({ budgets, redis: redisUrl(), keyPrefix: prefix });
  const server = await startQuotaServer({ engine, listen: '127.0.0.1:0' });
  await server.serving;
  const client = createQuotaClient({ target: `127.0.0.1:${server.port}` });
  const sidecars: RunningSidecar[] = [];
  for (let i = 0; i < 2; i++) {
    sidecars.push(
      await startSidecar({ budgets, budget: BUDGET_ID, quota: client, spareLeases: 2, spareIdleMs: 300 }),
    );
  }
  setup = { sim, engine, server, client, sidecars, prefix };
  return setup;
}

afterEach(async () => {
  if (!setup) return;
  const { sim, engine, server, client, sidecars, prefix } = setup;
  setup = undefined;
  for (const sidecar of sidecars) await sidecar.close();
  client.close();
  await server.shutdown(0);
  await engine.close();
  await sim.close();
  const admin = new Redis(redisUrl());
  const keys = await admin.keys(`${prefix}*`);
  if (keys.length > 0) await admin.del(...keys);
  admin.disconnect();
});

async function spareEvents(sidecar: RunningSidecar): Promise<Record<string, number>> {
  const metric = await sidecar.metrics.registry
    .getSingleMetric('tokenlease_sidecar_spare_leases_total')!
    .get();
  return Object.fromEntries(metric.values.map((value) => [String(value.labels.event), value.value]));
}

async function calls(sidecars: RunningSidecar[], count: number, parallel: number): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < count) {
        const i = next++;
        const sdk = new OpenAI({ baseURL: `${sidecars[i % 2]!.url}/v1`, apiKey: 'unused', maxRetries: 0 });
        const completion = await sdk.chat.completions.create({
          model: 'glm-4.6',
          max_tokens: 20,
          messages: [{ role: 'user', content: `call ${i % 3}` }],
        });
        expect(completion.usage?.completion_tokens).toBe(6);
      }
    }),
  );
}

describe('spare leases through the gRPC quota service on Redis', () => {
  it('calls start on spare leases while the account is roomy, and the ledger stays exact', async () => {
    const { sim, client, sidecars } = await start(
      [
        { dimension: 'concurrency', amount: 1000 },
        { dimension: 'requests', amount: 100_000, window: '1h' },
        { dimension: 'inputTokens', amount: 10_000_000, window: '1h' },
        { dimension: 'outputTokens', amount: 10_000_000, window: '1h' },
      ],
      [{ dimension: 'concurrency', amount: 1000 }],
    );
    await calls(sidecars, 40, 4);
    const taken = (await spareEvents(sidecars[0]!)).taken ?? 0;
    expect(taken + ((await spareEvents(sidecars[1]!)).taken ?? 0)).toBeGreaterThan(20);

    // Spares not taken go back after their idle time: then only the calls are charged.
    const ledger = sim.ledger.summary();
    expect(ledger.ok).toBe(40);
    await eventually(async () => {
      await expectChargedAsLedger(client, ledger.usage);
      const usage = (await client.usage('llm/sim')).providers[0]!;
      expect(usage.limits.find((limit) => limit.dimension === 'requests')?.used).toBe(40);
      // Every spare is a grant: one per call, plus those given back unused.
      const returned =
        ((await spareEvents(sidecars[0]!)).returned ?? 0) + ((await spareEvents(sidecars[1]!)).returned ?? 0);
      expect(returned).toBeGreaterThan(0);
      expect(usage.budgets[0]!.granted).toBe(40 + returned);
    });
  });

  it('takes no spare where a limit is tight', async () => {
    const { sim, client, sidecars } = await start(
      [
        { dimension: 'concurrency', amount: 3 },
        { dimension: 'inputTokens', amount: 10_000_000, window: '1h' },
      ],
      [{ dimension: 'concurrency', amount: 3 }],
    );
    await calls(sidecars, 12, 6);
    for (const sidecar of sidecars) expect(await spareEvents(sidecar)).toEqual({});
    const ledger = sim.ledger.summary();
    expect(ledger.refused).toBe(0);
    expect(ledger.maxInFlight).toBeLessThanOrEqual(3);
    await eventually(async () => expect((await engineState(client)).inFlight).toBe(0));
  });
});
