/**
 * The response-cache tests' set-up: the simulated provider, one lease engine, and sidecars of
 * several budgets (with cache settings) sharing one Redis cache store prefix, each through its own
 * Redis connection as separate pods would.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import OpenAI from 'openai';
import { buildBudgetSet, parseObject, type BudgetSet } from '../../common/budgets/load-budgets.ts';
import type { LLMBudget, LLMProvider } from '../../common/budgets/types.ts';
import { createMemoryEngine, type LeaseEngine } from '../../controller/quota/engine/index.ts';
import { RedisCacheStore } from '../../sidecar/cache/redis-cache-store.ts';
import { startSidecar, type RunningSidecar } from '../../sidecar/main.ts';
import { startSimProvider, type SimProvider, type SimProviderOptions } from '../../sim-provider/index.ts';
import { redisUrl } from '../support/redis.ts';

export const PROVIDER_ID = 'llm/sim';

export function budget(
  namespace: string,
  name: string,
  cache: Record<string, unknown> | undefined,
): LLMBudget {
  return parseObject(
    {
      apiVersion: 'tokenlease.io/v1alpha1',
      kind: 'LLMBudget',
      metadata: { name, namespace },
      spec: { providerRef: { name: 'sim', namespace: 'llm' }, ...(cache ? { cache } : {}) },
    },
    `budget ${namespace}/${name}`,
  ) as LLMBudget;
}

export function budgetSet(
  baseURL: string,
  budgets: LLMBudget[],
  api: 'openai' | 'anthropic' = 'openai',
): BudgetSet {
  const provider = parseObject(
    {
      apiVersion: 'tokenlease.io/v1alpha1',
      kind: 'LLMProvider',
      metadata: { name: 'sim', namespace: 'llm' },
      spec: {
        api,
        baseURL,
        allowedNamespaces: ['*'],
        limits: [
          { dimension: 'inputTokens', amount: 100_000_000, window: '1h' },
          { dimension: 'outputTokens', amount: 100_000_000, window: '1h' },
        ],
      },
    },
    'test provider',
  ) as LLMProvider;
  return buildBudgetSet([provider, ...budgets]);
}

export interface CacheStack {
  sim: SimProvider;
  engine: LeaseEngine;
  budgets: BudgetSet;
  /** Redis key prefix of the cache store. */
  prefix: string;
  redis: Redis;
  sidecar(budgetId: string, index?: number): RunningSidecar;
  client(budgetId: string, index?: number): OpenAI;
  /** Upstream calls the provider has seen. */
  upstreamCalls(): number;
  /** Leases the engine granted to a budget. */
  granted(budgetId: string): Promise<number>;
  close(): Promise<void>;
}

export async function startCacheStack(options: {
  budgets: LLMBudget[];
  /** Sidecars per budget. */
  sidecarsPerBudget?: number;
  sim?: SimProviderOptions;
}): Promise<CacheStack> {
  const sim = await startSimProvider({ models: [], outputTokens: 12, ...options.sim });
  const budgets = budgetSet(`${sim.url}/v1`, options.budgets);
  const engine = createMemoryEngine({ budgets });
  const prefix = `tltest-cache:${randomUUID().slice(0, 8)}:`;
  const redis = new Redis(redisUrl());
  const sidecars = new Map<string, RunningSidecar[]>();
  const stores: RedisCacheStore[] = [];
  for (const budgetId of budgets.budgets.keys()) {
    const list: RunningSidecar[] = [];
    for (let i = 0; i < (options.sidecarsPerBudget ?? 1); i++) {
      const store = new RedisCacheStore({ client: new Redis(redisUrl()), prefix, ownsClient: true });
      stores.push(store);
      list.push(
        await startSidecar({ budgets, budget: budgetId, quota: engine, cacheStore: store, maxRetries: 0 }),
      );
    }
    sidecars.set(budgetId, list);
  }
  const sidecar = (budgetId: string, index = 0) => {
    const found = sidecars.get(budgetId)?.[index];
    if (found === undefined) throw new Error(`no sidecar ${index} for ${budgetId}`);
    return found;
  };
  return {
    sim,
    engine,
    budgets,
    prefix,
    redis,
    sidecar,
    client: (budgetId, index) =>
      new OpenAI({ baseURL: `${sidecar(budgetId, index).url}/v1`, apiKey: 'sk-app', maxRetries: 0 }),
    upstreamCalls: () => sim.ledger.summary().total,
    async granted(budgetId) {
      const snapshot = await engine.usage(PROVIDER_ID);
      const provider = snapshot.providers.find((p) => p.provider === PROVIDER_ID);
      return provider?.budgets.find((b) => b.budget === budgetId)?.granted ?? 0;
    },
    async close() {
      await Promise.all([...sidecars.values()].flat().map((running) => running.close()));
      await Promise.all(stores.map((store) => store.close()));
      const keys = await redis.keys(`${prefix}*`);
      if (keys.length > 0) await redis.del(...keys);
      await redis.quit();
      await engine.close();
      await sim.close();
    },
  };
}

/** A counter's value in a sidecar's registry, for the given labels. */
export async function counter(
  sidecar: RunningSidecar,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const metric = await sidecar.metrics.registry.getSingleMetric(name)?.get();
  const values = metric?.values ?? [];
  return values
    .filter((value) => Object.entries(labels).every(([label, wanted]) => value.labels[label] === wanted))
    .reduce((sum, value) => sum + value.value, 0);
}
