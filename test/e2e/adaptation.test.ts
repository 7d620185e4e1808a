/**
 * Adaptive limits against a provider whose real limits are lower than declared, driven by
 * sidecar-like clients (acquire -> call the simulated provider -> classify the answer with the
 * sidecar's classifier -> settle with the outcome, retry hints and rate-limit headers) through
 * two quota-server replicas on Redis. Every figure comes from the provider's ledger.
 *
 * The providers set adaptation.probeInterval to 1m: after learning a lower limit the engine
 * probes one step up only after that long without a refusal, and each probe the provider refuses
 * costs one more refusal (then twice as long a wait). A minute is longer than each test, so what
 * is measured is the learning alone: refusals stop, and the learned limit keeps the real one busy.
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  createDispatcher,
  leasedCall,
  type LeasedCallResult,
  type LeasedCallTarget,
} from '../../bench/fidelity/leased-call.ts';
import { concurrencyUtilizationPct, windowUtilizationPct } from '../../bench/fidelity/ledger-measures.ts';
import type { LimitUsage } from '../../common/quota-api.ts';
import { startSimProvider, type LedgerEntry, type SimProvider } from '../../sim-provider/index.ts';
import { sleep, startQuotaCluster, type QuotaCluster } from './quota-cluster.ts';

function providerYaml(limits: string): string {
  return `apiVersion: tokenlease.io/v1alpha1
kind: LLMProvider
metadata: {name: glm, namespace: llm}
spec:
  api: openai
  flavor: glm
  baseURL: https://open.bigmodel.example/api/paas/v4
  defaultMaxOutputTokens: 64
  leaseTimeout: 30s
  adaptation: {probeInterval: 1m}
  limits:
${limits}
---
apiVersion: tokenlease.io/v1alpha1
kind: LLMBudget
metadata: {name: app, namespace: llm}
spec:
  providerRef: {name: glm}
`;
}

interface Sent {
  callId: number;
  result: LeasedCallResult;
}

/** `clients` closed loops of leased calls until `until` (performance.now()); every result kept. */
async function drive(options: {
  cluster: QuotaCluster;
  sim: SimProvider;
  clients: number;
  until: number;
  maxWaitMs: number;
  /** Each call reaches the provider up to this long after its grant, as from pods on different nodes. */
  sendJitterMs?: number;
}): Promise<Sent[]> {
  const dispatcher = createDispatcher(64);
  const sent: Sent[] = [];
  let seq = 0;
  await Promise.all(
    Array.from({ length: options.clients }, async (_, i) => {
      while (performance.now() < options.until) {
        const callId = ++seq;
        const target: LeasedCallTarget = {
          quota: options.cluster.clients[i % options.cluster.clients.length]!,
          provider: 'llm/glm',
          budget: 'llm/app',
          flavor: 'glm',
          baseUrl: `${options.sim.url}/c/${callId}/api/paas/v4`,
          dispatcher,
          defaultMaxOutputTokens: 64,
        };
        const result = await leasedCall(
          target,
          { model: 'glm-4.6', messages: [{ role: 'user', content: `call ${callId}` }], max_tokens: 16 },
          {
            maxWaitMs: options.maxWaitMs,
            sendDelayMs: Math.random() * (options.sendJitterMs ?? 0),
          },
        );
        sent.push({ callId, result });
        // A closed provider rejects at once when its reset is beyond maxWaitMs: do not spin.
        if (result.kind === 'rejected') await sleep(200);
      }
    }),
  );
  await dispatcher.close();
  return sent;
}

const callIdOf = (entry: LedgerEntry) => Number(/\/c\/(\d+)\//.exec(entry.path)?.[1]);
const refusals = (entries: LedgerEntry[]) => entries.filter((entry) => entry.outcome === 'refused');

async function effectiveLimits(cluster: QuotaCluster): Promise<LimitUsage[]> {
  return (await cluster.clients[0]!.usage('llm/glm')).providers[0]!.limits;
}

describe('adaptive limits learned from upstream refusals', () => {
  let cluster: QuotaCluster | undefined;
  let sim: SimProvider | undefined;

  afterEach(async () => {
    await cluster?.stop();
    await sim?.close();
    cluster = undefined;
    sim = undefined;
  });

  it('learns a concurrency of 5 declared as 8: refusals stop, and the real limit stays busy', async () => {
    sim = await startSimProvider({
      flavor: 'glm',
      limits: [{ dimension: 'concurrency', amount: 5 }],
      latencyMs: 400,
      outputTokens: 16,
    });
    cluster = await startQuotaCluster(providerYaml('    - {dimension: concurrency, amount: 8}'), 2);
    const start = Date.now();
    const sent = await drive({
      cluster,
      sim,
      clients: 12,
      until: performance.now() + 10_000,
      maxWaitMs: 10_000,
      sendJitterMs: 20,
    });
    const entries = sim.ledger.entries();
    const refused = refusals(entries);
    expect(refused.length).toBeGreaterThan(0);
    expect(refused.every((entry) => entry.refusal?.code === '1302')).toBe(true);
    const first = refused[0]!.arrivalMs;
    const last = refused.at(-1)!.arrivalMs;
    // Refusals stop within a few seconds of the first one.
    expect(last - first).toBeLessThan(3_000);
    const steady = { fromMs: Math.max(last, start + 2_000) + 500, toMs: Date.now() - 500 };
    expect(steady.toMs - steady.fromMs).toBeGreaterThan(5_000);
    const concurrency = (await effectiveLimits(cluster)).find((limit) => limit.dimension === 'concurrency')!;
    expect(concurrency.limit).toBe(8);
    // The order in which the refused calls had been granted (1 = first grant of the run), for
    // the message: calls reach the provider in another order than they were granted.
    const grantOrder = sent
      .flatMap(({ callId, result }) => (result.kind === 'sent' ? [{ callId, at: result.grantedAtMs }] : []))
      .sort((a, b) => a.at - b.at)
      .map(({ callId }) => callId);
    const refusedRanks = refused.map((entry) => grantOrder.indexOf(callIdOf(entry)) + 1);
    expect(concurrency.effectiveLimit, `refused calls were grants number ${refusedRanks.join(', ')}`).toBe(5);
    const utilization = concurrencyUtilizationPct(entries, steady, 5);
    expect(
      utilization,
      `real concurrency busy ${utilization.toFixed(1)} % of the time`,
    ).toBeGreaterThanOrEqual(90);
  }, 60_000);

  it('learns a requests rate 30 % below the declared one: refusals stop, and use stays within 10 % of the real rate', async () => {
    // Declared 100 requests per 5 s, real 70.
    sim = await startSimProvider({
      flavor: 'glm',
      limits: [
        { dimension: 'requests', amount: 70, window: '5s' },
        { dimension: 'concurrency', amount: 20 },
      ],
      latencyMs: 30,
      outputTokens: 16,
    });
    cluster = await startQuotaCluster(
      providerYaml(
        '    - {dimension: requests, amount: 100, window: 5s}\n    - {dimension: concurrency, amount: 20}',
      ),
      2,
    );
    const start = Date.now();
    await drive({ cluster, sim, clients: 10, until: performance.now() + 17_000, maxWaitMs: 10_000 });
    const entries = sim.ledger.entries();
    const refused = refusals(entries);
    expect(refused.length).toBeGreaterThan(0);
    expect(refused.every((entry) => entry.refusal?.code === '1303')).toBe(true);
    const last = refused.at(-1)!.arrivalMs;
    expect(last - refused[0]!.arrivalMs).toBeLessThan(3_000);
    // Two whole windows after the refusals stopped.
    const fromMs = Math.max(last, start + 5_000) + 1_000;
    const steady = { fromMs, toMs: fromMs + 10_000 };
    expect(steady.toMs).toBeLessThanOrEqual(Date.now());
    const utilization = windowUtilizationPct(entries, steady, { amount: 70, windowMs: 5_000 });
    expect(utilization, `real rate used ${utilization.toFixed(1)} %`).toBeGreaterThanOrEqual(90);
    const requests = (await effectiveLimits(cluster)).find((limit) => limit.dimension === 'requests')!;
    expect(requests.effectiveLimit).toBeLessThanOrEqual(70);
    expect(requests.effectiveLimit).toBeGreaterThanOrEqual(63);
  }, 60_000);

  it('closes the provider on a 1308 window refusal until its reset: no call is sent meanwhile, calls resume after', async () => {
    // The account's plan window (61 s, so the provider refuses it as a window, code 1308) was used
    // up by someone else 56 s ago: the simulated provider's clock is set back while that use is
    // recorded, so the window resets about 5 s from now instead of a minute.
    let skewMs = -56_000;
    sim = await startSimProvider({
      flavor: 'glm',
      limits: [
        { dimension: 'requests', amount: 20, window: '61s' },
        { dimension: 'concurrency', amount: 5 },
      ],
      latencyMs: 100,
      outputTokens: 16,
      clock: () => Date.now() + skewMs,
    });
    cluster = await startQuotaCluster(providerYaml('    - {dimension: concurrency, amount: 5}'), 2);
    for (let batch = 0; batch < 4; batch++) {
      const statuses = await Promise.all(
        Array.from({ length: 5 }, () =>
          fetch(`${sim!.url}/outside/api/paas/v4/chat/completions`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({
              model: 'glm-4.6',
              messages: [{ role: 'user', content: 'outside' }],
              max_tokens: 16,
            }),
          }).then(async (response) => (await response.text(), response.status)),
        ),
      );
      expect(statuses).toEqual([200, 200, 200, 200, 200]);
    }
    skewMs = 0;

    const sent = await drive({
      cluster,
      sim,
      clients: 8,
      until: performance.now() + 9_000,
      maxWaitMs: 15_000,
    });
    const grantedAt = new Map<number, number>();
    for (const { callId, result } of sent)
      if (result.kind === 'sent') grantedAt.set(callId, result.grantedAtMs);
    const entries = sim.ledger.entries().filter((entry) => !entry.path.startsWith('/outside/'));
    // Each 1308 closes the provider from its settle until its stated reset.
    const closures = sent
      .flatMap(({ result }) => (result.kind === 'sent' && result.outcome === 'refusedWindow' ? [result] : []))
      .map((result) => ({ from: result.settledAtMs, until: result.resetAtMs! }))
      .sort((a, b) => a.from - b.from);
    expect(closures.length).toBeGreaterThan(0);
    const first = closures[0]!;
    expect(first.until - first.from).toBeGreaterThan(2_000);
    for (const closure of closures) {
      // No lease was granted while closed... (one granted in the very millisecond of the closing
      // settle may have come before it: the store runs operations of one batch at one time)
      expect([...grantedAt.values()].filter((at) => at > closure.from && at < closure.until)).toEqual([]);
      // ...so every call the provider saw meanwhile had been granted before the closure.
      const arrived = entries.filter(
        (entry) => entry.arrivalMs >= closure.from && entry.arrivalMs < closure.until,
      );
      expect(arrived.filter((entry) => grantedAt.get(callIdOf(entry))! > closure.from).map(callIdOf)).toEqual(
        [],
      );
      expect(arrived.length).toBeLessThanOrEqual(5);
    }
    // Calls resume after the first reset and succeed, until they use the plan window up again
    // (20 requests) and the next 1308 closes the provider for most of a minute.
    const next = closures.find((closure) => closure.from >= first.until);
    const resumed = entries.filter(
      (entry) => entry.arrivalMs >= first.until && entry.arrivalMs < (next?.from ?? Infinity),
    );
    expect(resumed.filter((entry) => entry.outcome === 'ok').length).toBeGreaterThanOrEqual(15);
  }, 60_000);
});
