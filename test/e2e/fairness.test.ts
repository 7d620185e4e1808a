/**
 * Weighted fairness across three quota-server replicas on one Redis. Budgets a, b and c (weights
 * 1:2:1) each run more clients than the provider's concurrency can serve, every client looping
 * acquire -> short simulated call -> settle on a replica of its own; d asks for a little now and
 * then; e is a batch budget that keeps asking. While a, b and c saturate: their grants split
 * 25/50/25 % (within 5 points), d gets every call it asks for, and e gets none. When they stop, e
 * gets the whole capacity.
 *
 * The same split holds when a requests window binds instead of concurrency, with demand skewed
 * the other way (c runs more than twice as many clients as b): a window gives back what it
 * granted one window later, all at once if it was granted at once, so the split depends on
 * handing that back a little at a time rather than to whoever happens to wait at that instant.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CapacityExhaustedError } from '../../common/errors/errors.ts';
import type { QuotaApi } from '../../common/quota-api.ts';
import { freePort } from '../support/free-ports.ts';
import { startQuotaCluster, sleep, type QuotaCluster } from './quota-cluster.ts';

const CONCURRENCY = 6;
const CALL_MS = 40;
const CLIENTS_PER_BUDGET = 12;
const WARMUP_MS = 1_000;
const SATURATED_MS = 7_000;
const ALONE_MS = 2_000;

const budget = (name: string, extra: string) => `---
apiVersion: tokenlease.io/v1alpha1
kind: LLMBudget
metadata: {name: ${name}, namespace: llm}
spec:
  providerRef: {name: shared}
${extra}
`;

const BUDGETS = `apiVersion: tokenlease.io/v1alpha1
kind: LLMProvider
metadata: {name: shared, namespace: llm}
spec:
  api: openai
  baseURL: https://api.example.test/v1
  leaseTimeout: 10s
  limits:
    - {dimension: concurrency, amount: ${CONCURRENCY}}
    - {dimension: requests, amount: 100000, window: 1m}
${budget('a', '  weight: 1')}${budget('b', '  weight: 2')}${budget('c', '  weight: 1')}${budget('d', '  weight: 1')}${budget(
  'e',
  '  weight: 1\n  priority: batch',
)}`;

interface Tally {
  /** Grants by budget, with the time (performance.now()) of each. */
  grants: Map<string, number[]>;
  asked: Map<string, number>;
  rejected: Map<string, number>;
  inFlight: Map<string, number>;
  maxInFlight: Map<string, number>;
}

function bump(map: Map<string, number>, key: string, by = 1): number {
  const value = (map.get(key) ?? 0) + by;
  map.set(key, value);
  return value;
}

/** One call: acquire, hold the lease for a simulated call, settle. Resolves false when rejected. */
async function call(quota: QuotaApi, budget: string, tally: Tally, maxWaitMs: number): Promise<boolean> {
  bump(tally.asked, budget);
  let leaseId: string;
  try {
    ({ leaseId } = await quota.acquire({
      provider: 'llm/shared',
      budget,
      model: 'm',
      inputTokens: 10,
      maxOutputTokens: 10,
      maxWaitMs,
    }));
  } catch (error) {
    if (!(error instanceof CapacityExhaustedError)) throw error;
    bump(tally.rejected, budget);
    return false;
  }
  tally.grants.set(budget, [...(tally.grants.get(budget) ?? []), performance.now()]);
  const inFlight = bump(tally.inFlight, budget);
  if (inFlight > (tally.maxInFlight.get(budget) ?? 0)) tally.maxInFlight.set(budget, inFlight);
  await sleep(CALL_MS);
  bump(tally.inFlight, budget, -1);
  await quota.settle({ leaseId, usage: { inputTokens: 10, outputTokens: 10 }, outcome: 'ok' });
  return true;
}

const countIn = (times: number[] | undefined, from: number, to: number) =>
  (times ?? []).filter((t) => t >= from && t < to).length;

function emptyTally(): Tally {
  return {
    grants: new Map(),
    asked: new Map(),
    rejected: new Map(),
    inFlight: new Map(),
    maxInFlight: new Map(),
  };
}

/** Grants of a, b and c in [from, to) and their shares, with a message for failed expectations. */
function sharesOf(tally: Tally, from: number, to: number) {
  const counts = ['llm/a', 'llm/b', 'llm/c'].map((budget) => countIn(tally.grants.get(budget), from, to));
  const total = counts.reduce((sum, n) => sum + n, 0);
  const shares = counts.map((n) => (100 * n) / total);
  const measured = `grants a/b/c ${counts.join('/')}, shares ${shares.map((share) => share.toFixed(1)).join('/')} %`;
  return { total, shares, measured };
}

describe('weighted fairness across three quota-server replicas', () => {
  let cluster: QuotaCluster;
  let metricsPort: number;

  beforeAll(async () => {
    metricsPort = await freePort();
    // Replica 0 also serves its metrics, read at the end.
    cluster = await startQuotaCluster(BUDGETS, 3, (index) =>
      index === 0 ? ['--metrics-listen', `127.0.0.1:${metricsPort}`] : [],
    );
  }, 60_000);

  afterAll(async () => {
    await cluster?.stop();
  });

  it('splits 1:2:1 among saturating budgets, serves a light budget fully, and gives batch only what is left', async () => {
    const tally = emptyTally();
    const replica = (i: number) => cluster.clients[i % cluster.clients.length]!;
    const start = performance.now();
    let saturating = true;
    let batching = true;

    const heavy = ['llm/a', 'llm/b', 'llm/c'].flatMap((budget) =>
      Array.from({ length: CLIENTS_PER_BUDGET }, async (_, i) => {
        while (saturating) await call(replica(i), budget, tally, 5_000);
      }),
    );
    // d: one call every 250 ms, far below its share.
    const light = (async () => {
      let i = 0;
      while (saturating) {
        await Promise.all([call(replica(i++), 'llm/d', tally, 5_000), sleep(250)]);
      }
    })();
    // e (batch) starts once the queue has formed, and keeps asking until the end.
    await sleep(WARMUP_MS / 2);
    const batchStart = performance.now();
    const batch = Array.from({ length: CONCURRENCY * 2 }, async (_, i) => {
      while (batching) {
        if (!(await call(replica(i), 'llm/e', tally, 500))) await sleep(20);
      }
    });

    await sleep(WARMUP_MS / 2 + SATURATED_MS);
    const saturationEnd = performance.now();
    saturating = false;
    await Promise.all([...heavy, light]);
    const othersStopped = performance.now();
    await sleep(ALONE_MS);
    batching = false;
    await Promise.all(batch);

    // Shares among the saturating budgets while all three asked.
    const from = start + WARMUP_MS;
    const to = start + WARMUP_MS + SATURATED_MS;
    const { total, shares, measured } = sharesOf(tally, from, to);
    expect(total, measured).toBeGreaterThan(200);
    expect(Math.abs(shares[0]! - 25), measured).toBeLessThanOrEqual(5);
    expect(Math.abs(shares[1]! - 50), measured).toBeLessThanOrEqual(5);
    expect(Math.abs(shares[2]! - 25), measured).toBeLessThanOrEqual(5);

    // d got every call it asked for.
    expect(tally.asked.get('llm/d')).toBeGreaterThan(10);
    expect(tally.rejected.get('llm/d') ?? 0).toBe(0);
    expect(tally.grants.get('llm/d')?.length).toBe(tally.asked.get('llm/d'));

    // e got nothing while the others saturated, then the whole capacity.
    expect(countIn(tally.grants.get('llm/e'), batchStart, saturationEnd)).toBe(0);
    expect(countIn(tally.grants.get('llm/e'), othersStopped, performance.now())).toBeGreaterThan(
      CONCURRENCY * 5,
    );
    expect(tally.maxInFlight.get('llm/e')).toBe(CONCURRENCY);

    const usage = await cluster.clients[0]!.usage('llm/shared');
    const byBudget = new Map(usage.providers[0]!.budgets.map((entry) => [entry.budget, entry]));
    expect(byBudget.get('llm/e')!.granted).toBe(tally.grants.get('llm/e')!.length);

    // The same cluster-wide counts, as Prometheus scrapes them from a replica.
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const metric = (line: string) =>
      Number(
        metrics
          .split('\n')
          .find((row) => row.startsWith(`${line} `))
          ?.split(' ')[1],
      );
    for (const name of ['llm/a', 'llm/b', 'llm/c', 'llm/d', 'llm/e']) {
      expect(metric(`tokenlease_quota_grants_total{provider="llm/shared",budget="${name}"}`)).toBe(
        byBudget.get(name)!.granted,
      );
    }
    expect(
      metric(
        'tokenlease_quota_limit_declared{provider="llm/shared",scope="provider",dimension="concurrency",window="",model=""}',
      ),
    ).toBe(CONCURRENCY);
    expect(metric('tokenlease_quota_leases_in_flight{provider="llm/shared"}')).toBe(0);
  }, 60_000);
});

const WINDOW_AMOUNT = 40;
const WINDOW_MS = 2_000;
const WINDOW_CLIENTS = { 'llm/a': 3, 'llm/b': 3, 'llm/c': 8 };

const WINDOW_BUDGETS = `apiVersion: tokenlease.io/v1alpha1
kind: LLMProvider
metadata: {name: shared, namespace: llm}
spec:
  api: openai
  baseURL: https://api.example.test/v1
  leaseTimeout: 10s
  limits:
    - {dimension: requests, amount: ${WINDOW_AMOUNT}, window: ${WINDOW_MS / 1000}s}
${budget('a', '  weight: 1')}${budget('b', '  weight: 2')}${budget('c', '  weight: 1')}`;

describe('weighted fairness on a requests window across three quota-server replicas', () => {
  let cluster: QuotaCluster;

  beforeAll(async () => {
    cluster = await startQuotaCluster(WINDOW_BUDGETS, 3);
  }, 60_000);

  afterAll(async () => {
    await cluster?.stop();
  });

  it('splits 1:2:1 while budgets with 3, 3 and 8 clients saturate the window, and uses all of it', async () => {
    const tally = emptyTally();
    const start = performance.now();
    let saturating = true;
    const clients = Object.entries(WINDOW_CLIENTS).flatMap(([budget, count]) =>
      Array.from({ length: count }, async (_, i) => {
        while (saturating) await call(cluster.clients[i % cluster.clients.length]!, budget, tally, 10_000);
      }),
    );
    // The first window starts empty and every client bursts into it; then three whole windows.
    await sleep(WINDOW_MS + 3 * WINDOW_MS);
    saturating = false;
    await Promise.all(clients);

    const { total, shares, measured } = sharesOf(tally, start + WINDOW_MS, start + 4 * WINDOW_MS);
    // Three windows hold 3 x 40 requests (a little less: windows are counted with a margin).
    expect(total, measured).toBeGreaterThanOrEqual(3 * WINDOW_AMOUNT * 0.9);
    expect(total, measured).toBeLessThanOrEqual(3 * WINDOW_AMOUNT + 2);
    expect(Math.abs(shares[0]! - 25), measured).toBeLessThanOrEqual(5);
    expect(Math.abs(shares[1]! - 50), measured).toBeLessThanOrEqual(5);
    expect(Math.abs(shares[2]! - 25), measured).toBeLessThanOrEqual(5);
  }, 60_000);
});
