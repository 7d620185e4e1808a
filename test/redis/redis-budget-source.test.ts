// Budgets in the store, against the real Redis: what the controller writes reaches every reader.
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { buildBudgetSet, type BudgetSet } from '../../common/budgets/load-budgets.ts';
import {
  budgetKeys,
  createRedisBudgetWriter,
  startRedisBudgetSource,
  type BudgetSource,
} from '../../common/budgets/redis-budget-source.ts';
import { budgetSchema, providerSchema } from '../../common/budgets/types.ts';
import { startHoldingProxy } from '../support/holding-proxy.ts';
import { redisUrl } from '../support/redis.ts';

const prefix = `test:budgets:${randomBytes(4).toString('hex')}:`;
const redis = new Redis(redisUrl());
const writer = createRedisBudgetWriter({ redis: redisUrl(), keyPrefix: prefix });
const sources: BudgetSource[] = [];

afterAll(async () => {
  await Promise.all(sources.map((s) => s.close()));
  await writer.close();
  const keys = budgetKeys(prefix);
  await redis.del(keys.key, keys.version);
  redis.disconnect();
});

function budgetsWith(requestsPerMinute: number): BudgetSet {
  const provider = providerSchema.parse({
    apiVersion: 'tokenlease.io/v1alpha1',
    kind: 'LLMProvider',
    metadata: { name: 'openai', namespace: 'llm' },
    spec: {
      api: 'openai',
      baseURL: 'https://api.openai.com/v1',
      limits: [{ dimension: 'requests', amount: requestsPerMinute, window: '1m' }],
    },
  });
  const budget = budgetSchema.parse({
    apiVersion: 'tokenlease.io/v1alpha1',
    kind: 'LLMBudget',
    metadata: { name: 'team-a', namespace: 'team-a' },
    spec: { providerRef: { name: 'openai', namespace: 'llm' }, weight: 2 },
  });
  return buildBudgetSet([provider, budget]);
}

/** Starts a source that records every update into `updates`. */
async function source(
  updates: Array<{ version: number; budgets: BudgetSet }>,
  errors: unknown[] = [],
  url = redisUrl(),
) {
  const started = await startRedisBudgetSource({
    redis: url,
    keyPrefix: prefix,
    onUpdate: (budgets, version) => updates.push({ version, budgets }),
    onError: (error) => errors.push(error),
  });
  sources.push(started);
  return started;
}

async function until(probe: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !probe(); i++) await new Promise((r) => setTimeout(r, 10));
  expect(probe()).toBe(true);
}

const limitOf = (set: BudgetSet) => set.providers.get('llm/openai')?.spec.limits[0]?.amount;

describe('budgets in Redis', () => {
  it('starts empty before anything was written, then follows every write', async () => {
    const updates: Array<{ version: number; budgets: BudgetSet }> = [];
    const reader = await source(updates);
    expect(reader.initial.providers.size).toBe(0);

    const v1 = await writer.write(budgetsWith(100));
    await until(() => updates.length === 1);
    expect(updates[0]!.version).toBe(v1);
    expect(limitOf(updates[0]!.budgets)).toBe(100);
    expect(updates[0]!.budgets.budgets.get('team-a/team-a')?.spec.weight).toBe(2);

    const v2 = await writer.write(budgetsWith(7));
    expect(v2).toBeGreaterThan(v1);
    await until(() => updates.length === 2);
    expect(limitOf(updates[1]!.budgets)).toBe(7);
    expect(reader.version).toBe(v2);
  });

  it('a reader started later loads the current budgets at once', async () => {
    const reader = await source([]);
    expect(limitOf(reader.initial)).toBe(7);
  });

  it('keeps the last good budgets when the stored text does not validate, and says so', async () => {
    const updates: Array<{ version: number; budgets: BudgetSet }> = [];
    const errors: unknown[] = [];
    await source(updates, errors);
    const keys = budgetKeys(prefix);
    const version = await redis.incr(keys.version);
    await redis.set(keys.key, `${version}\n[{"kind":"LLMProvider","spec":{}}]`);
    await redis.publish(keys.channel, String(version));
    await until(() => errors.length === 1);
    expect(String(errors[0])).toMatch(/LLMProvider/);
    expect(updates).toHaveLength(0);

    await writer.write(budgetsWith(9));
    await until(() => updates.length === 1);
    expect(limitOf(updates[0]!.budgets)).toBe(9);
  });

  it('ignores an announcement of a version it already has', async () => {
    const updates: Array<{ version: number; budgets: BudgetSet }> = [];
    const reader = await source(updates);
    await redis.publish(budgetKeys(prefix).channel, String(reader.version));
    await writer.write(budgetsWith(11));
    await until(() => updates.length === 1);
    expect(limitOf(updates[0]!.budgets)).toBe(11);
  });

  it('subscribes again after a reconnect, and closes cleanly while it does', async () => {
    const proxy = await startHoldingProxy();
    const updates: Array<{ version: number; budgets: BudgetSet }> = [];
    const reader = await source(updates, [], proxy.url);
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      proxy.dropAll();
      await writer.write(budgetsWith(13)); // announced while away, or after: reloaded either way
      await until(() => updates.length > 0 && limitOf(updates.at(-1)!.budgets) === 13);
      await writer.write(budgetsWith(14)); // announced on the channel subscribed again
      await until(() => limitOf(updates.at(-1)!.budgets) === 14);

      const held = proxy.holdNextSubscribe();
      proxy.dropAll();
      await held; // its SUBSCRIBE is sent, and never answered...
      await reader.close(); // ...when it is closed
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
      proxy.close();
    }
  });
});
