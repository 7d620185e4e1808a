/**
 * The lease store on a real Redis Cluster (six local nodes): the whole conformance suite, plus
 * providers whose hash tags live on different masters, each working within its one slot.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BudgetSet } from '../../common/budgets/load-budgets.ts';
import { CapacityExhaustedError } from '../../common/errors/errors.ts';
import { budgetsFrom, describeEngineConformance } from '../../controller/quota/engine/engine-conformance.ts';
import { StoreLeaseEngine } from '../../controller/quota/engine/lease-engine.ts';
import { RedisLeaseStore } from '../../controller/quota/engine/redis-store.ts';
import { startLocalCluster, type LocalCluster } from '../support/redis-cluster.ts';

let cluster: LocalCluster;
let counter = 0;
const prefixes = new WeakMap<object, string>();

beforeAll(async () => {
  cluster = await startLocalCluster();
}, 60_000);

afterAll(async () => {
  await cluster?.stop();
});

async function clusterEngine(budgets: BudgetSet, prefix: string, clock?: () => number) {
  const store = new RedisLeaseStore({ redis: '', cluster: cluster.nodes, keyPrefix: prefix, clock });
  await store.ready();
  return new StoreLeaseEngine(store, budgets);
}

describeEngineConformance('redis cluster', {
  async create(budgets, clock) {
    const prefix = `tlc${counter++}:`;
    const engine = await clusterEngine(budgets, prefix, clock);
    prefixes.set(engine, prefix);
    return engine;
  },
  async replica(engine) {
    return clusterEngine((engine as StoreLeaseEngine).budgets(), prefixes.get(engine)!);
  },
});

describe('providers on different cluster slots', () => {
  it('keeps each provider on one slot and serves providers whose slots live on different masters', async () => {
    const providers = ['p1', 'p2', 'p3', 'p4', 'p5', 'p6'];
    const yaml = providers
      .map(
        (name) => `
apiVersion: tokenlease.io/v1alpha1
kind: LLMProvider
metadata: {name: ${name}, namespace: llm}
spec: {api: openai, baseURL: "https://x.test/v1", limits: [{dimension: concurrency, amount: 1}, {dimension: requests, amount: 5, window: 1m}]}
---
apiVersion: tokenlease.io/v1alpha1
kind: LLMBudget
metadata: {name: ${name}, namespace: t}
spec: {providerRef: {name: ${name}, namespace: llm}}`,
      )
      .join('\n---\n');
    const engine = await clusterEngine(budgetsFrom(yaml), 'tlslots:');
    const admin = new Redis(cluster.nodes[0]!.port, '127.0.0.1');
    try {
      const ranges = await admin.cluster('SLOTS');
      const masterOf = (slot: number) => {
        const [, , master] = ranges.find(([from, to]) => slot >= from && slot <= to)!;
        return `${master![0]}:${master![1]}`;
      };
      const masters = new Set<string>();
      for (const name of providers) {
        // Every key the script touches carries the provider's tag, so all share this slot.
        masters.add(masterOf(Number(await admin.cluster('KEYSLOT', `tlslots:{llm/${name}}:m`))));
        const call = {
          provider: `llm/${name}`,
          model: 'm',
          budget: `t/${name}`,
          inputTokens: 1,
          maxOutputTokens: 1,
          maxWaitMs: 0,
        };
        const grant = await engine.acquire(call);
        await expect(engine.acquire(call)).rejects.toBeInstanceOf(CapacityExhaustedError);
        await engine.settle({
          leaseId: grant.leaseId,
          usage: { inputTokens: 1, outputTokens: 1 },
          outcome: 'ok',
        });
        await expect(engine.acquire(call)).resolves.toBeDefined();
      }
      expect(masters.size).toBeGreaterThan(1);
    } finally {
      admin.disconnect();
      await engine.close();
    }
  });
});
