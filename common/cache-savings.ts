/**
 * What the shared response cache saved, per provider and budget: written by the sidecars (in the
 * cache's Redis, batched), read by the quota service into GetUsage. One hash per provider, hash
 * tag `{provider}` like the lease engine's keys:
 *   <prefix>savings:{<provider>}   <budget>|hits, <budget>|input, <budget>|output
 * Counters only grow; they are never expired (a few fields per budget).
 */
import type { Cluster, Redis } from 'ioredis';
import type { UsageSnapshot } from './quota-api.ts';

/** Key prefix of the response cache in Redis (sidecar/cache). */
export const CACHE_KEY_PREFIX = 'tl:cache:';

export interface CacheSavings {
  /** Calls answered from the cache (no lease, no provider call). */
  hits: number;
  /** Tokens the provider would have charged for them. */
  inputTokens: number;
  outputTokens: number;
}

export interface SavingsRecord {
  provider: string;
  budget: string;
  savings: CacheSavings;
}

/** provider -> budget -> savings */
export type SavingsByProvider = Map<string, Map<string, CacheSavings>>;

function savingsKey(prefix: string, provider: string): string {
  return `${prefix}savings:{${provider}}`;
}

export async function addCacheSavings(
  client: Redis | Cluster,
  prefix: string,
  records: readonly SavingsRecord[],
): Promise<void> {
  if (records.length === 0) return;
  const pipeline = client.pipeline();
  for (const { provider, budget, savings } of records) {
    const key = savingsKey(prefix, provider);
    pipeline.hincrby(key, `${budget}|hits`, savings.hits);
    pipeline.hincrby(key, `${budget}|input`, savings.inputTokens);
    pipeline.hincrby(key, `${budget}|output`, savings.outputTokens);
  }
  const results = (await pipeline.exec()) ?? [];
  const failed = results.find(([error]) => error !== null);
  if (failed) throw failed[0];
}

export async function readCacheSavings(
  client: Redis | Cluster,
  prefix: string,
  providers: readonly string[],
): Promise<SavingsByProvider> {
  const found: SavingsByProvider = new Map();
  const hashes = await Promise.all(providers.map((provider) => client.hgetall(savingsKey(prefix, provider))));
  providers.forEach((provider, i) => {
    const budgets = new Map<string, CacheSavings>();
    for (const [field, value] of Object.entries(hashes[i] ?? {})) {
      const bar = field.lastIndexOf('|');
      const budget = field.slice(0, bar);
      const savings = budgets.get(budget) ?? { hits: 0, inputTokens: 0, outputTokens: 0 };
      const amount = Number(value);
      const kind = field.slice(bar + 1);
      if (kind === 'hits') savings.hits = amount;
      else if (kind === 'input') savings.inputTokens = amount;
      else if (kind === 'output') savings.outputTokens = amount;
      else continue;
      budgets.set(budget, savings);
    }
    if (budgets.size > 0) found.set(provider, budgets);
  });
  return found;
}

/** The snapshot with each budget's savings filled in (budgets without any keep none). */
export function withCacheSavings(snapshot: UsageSnapshot, savings: SavingsByProvider): UsageSnapshot {
  return {
    ...snapshot,
    providers: snapshot.providers.map((provider) => {
      const budgets = savings.get(provider.provider);
      if (budgets === undefined) return provider;
      return {
        ...provider,
        budgets: provider.budgets.map((budget) => {
          const saved = budgets.get(budget.budget);
          return saved === undefined ? budget : { ...budget, cache: saved };
        }),
      };
    }),
  };
}
