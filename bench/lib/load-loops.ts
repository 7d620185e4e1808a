/** The load shapes bench:quota drives, and what it measures of them. */
import type { QuotaApi } from '../../common/quota-api.ts';
import { BENCH_ACQUIRE, BENCH_USAGE } from './bench-budgets.ts';
import { percentile } from './stats.ts';

export interface Measure {
  pairsPerS: number;
  p50Ms: number;
  p99Ms: number;
}

/** One acquire+settle pair; resolves with its latency in ms. */
export async function pair(api: QuotaApi): Promise<number> {
  const started = performance.now();
  const grant = await api.acquire(BENCH_ACQUIRE);
  await api.settle({ leaseId: grant.leaseId, usage: BENCH_USAGE, outcome: 'ok' });
  return performance.now() - started;
}

/** Two calls one after the other, timed together: a "pair" of a service other than ours. */
export function twoCalls(call: () => Promise<unknown>): () => Promise<number> {
  return async () => {
    const started = performance.now();
    await call();
    await call();
    return performance.now() - started;
  };
}

/** What a loop runs: a quota API's pair, or a timed call of the caller's own. */
export type Runnable = QuotaApi | (() => Promise<number>);

function runnerOf(api: Runnable): () => Promise<number> {
  return typeof api === 'function' ? api : () => pair(api);
}

function measureOf(latencies: number[], elapsedS: number): Measure {
  latencies.sort((a, b) => a - b);
  return {
    pairsPerS: latencies.length / elapsedS,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
  };
}

/** Closed loop: `concurrency` workers each run pairs back to back for `seconds`. */
export async function closedLoop(api: Runnable, concurrency: number, seconds: number): Promise<Measure> {
  const run = runnerOf(api);
  const latencies: number[] = [];
  const until = performance.now() + seconds * 1000;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < until) latencies.push(await run());
    }),
  );
  return measureOf(latencies, (performance.now() - started) / 1000);
}

/**
 * Open loop: pairs started at a fixed rate whatever the latency, so queueing shows in p99.
 * Completions are counted, not kept as promises: thousands of settled promises held to the end
 * would be promoted and bring this process's major collections into the measurement.
 */
export async function openLoop(api: Runnable, rate: number, seconds: number): Promise<Measure> {
  const run = runnerOf(api);
  const total = Math.floor(rate * seconds);
  const latencies: number[] = [];
  const started = performance.now();
  await new Promise<void>((allDone, failed) => {
    let issued = 0;
    const record = (ms: number) => {
      latencies.push(ms);
      if (latencies.length === total) allDone();
    };
    const issueDue = () => {
      const now = performance.now();
      while (issued < total && started + (issued * 1000) / rate <= now) {
        issued++;
        run().then(record, failed);
      }
      if (issued < total) {
        setTimeout(issueDue, Math.max(0, started + (issued * 1000) / rate - performance.now()));
      }
    };
    if (total === 0) allDone();
    else issueDue();
  });
  return measureOf(latencies, (performance.now() - started) / 1000);
}
