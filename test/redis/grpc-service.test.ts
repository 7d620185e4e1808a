import { randomUUID } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { buildBudgetSet, parseBudgetsYaml } from '../../common/budgets/load-budgets.ts';
import { StoreUnavailableError } from '../../common/errors/errors.ts';
import { checkHealth } from '../../common/grpc/health-client.ts';
import { createQuotaClient } from '../../common/grpc/quota-client.ts';
import { createRedisEngine } from '../../controller/quota/engine/index.ts';
import { describeQuotaGrpcService } from '../../controller/quota/server/grpc-service-suite.ts';
import { startQuotaServer } from '../../controller/quota/server/index.ts';
import { redisUrl } from '../support/redis.ts';

const RUN_PREFIX = `tlgrpc:${randomUUID().slice(0, 8)}:`;
const admin = new Redis(redisUrl());

afterAll(async () => {
  const keys = await admin.keys(`${RUN_PREFIX}*`);
  if (keys.length > 0) await admin.del(...keys);
  admin.disconnect();
});

describeQuotaGrpcService('redis store', {
  async create(budgets) {
    const engine = createRedisEngine({
      budgets,
      redis: redisUrl(),
      keyPrefix: `${RUN_PREFIX}${randomUUID().slice(0, 8)}:`,
    });
    await engine.ready();
    return engine;
  },
});

describe('quota service over gRPC with its store down', () => {
  it('stays NOT_SERVING and answers UNAVAILABLE', async () => {
    const budgets = buildBudgetSet(
      parseBudgetsYaml(
        `apiVersion: tokenlease.io/v1alpha1
kind: LLMProvider
metadata: {name: acme, namespace: llm}
spec: {api: openai, baseURL: 'https://api.example.test/v1', limits: [{dimension: concurrency, amount: 1}]}
---
apiVersion: tokenlease.io/v1alpha1
kind: LLMBudget
metadata: {name: search, namespace: llm}
spec: {providerRef: {name: acme}}
`,
        'test',
      ),
    );
    // Port 1 on loopback: nothing listens, connections are refused at once.
    const engine = createRedisEngine({ budgets, redis: 'redis://127.0.0.1:1', keyPrefix: RUN_PREFIX });
    const server = await startQuotaServer({ engine, listen: '127.0.0.1:0' });
    const target = `127.0.0.1:${server.port}`;
    const client = createQuotaClient({ target, defaultDeadlineMs: 5_000 });
    try {
      expect(await checkHealth(target)).toBe('NOT_SERVING');
      const error = await client
        .acquire({
          provider: 'llm/acme',
          model: 'm',
          budget: 'llm/search',
          inputTokens: 1,
          maxOutputTokens: 1,
          maxWaitMs: 0,
        })
        .then(
          () => undefined,
          (e: unknown) => e as StoreUnavailableError,
        );
      expect(error).toBeInstanceOf(StoreUnavailableError);
      expect(((error as Error).cause as { code: number }).code).toBe(status.UNAVAILABLE);
      expect(String(error)).toMatch(/redis/);
    } finally {
      client.close();
      await server.shutdown(1_000);
      await engine.close();
    }
  });
});
