/**
 * bench:sidecar — what the sidecar and the quota service add to a call. The simulated provider
 * runs in this process; the quota service (quota-server on Redis, or in memory when Redis is not
 * reachable) and the sidecar run as child processes, so the sidecar's memory is its own.
 *
 * 1. added latency: an open-loop load (requests sent at fixed times, whatever the earlier ones
 *    are doing) at 100 and 500 calls/s, once straight to the provider and once through the
 *    sidecar; added = through - straight, per percentile;
 * 2. maximum calls/s through the sidecar, closed loop at concurrency 64;
 * 3. the sidecar's resident memory idle and under load;
 * 4. CPU per call: the CPU seconds the sidecar process (and the quota-server process) used during
 *    a phase, over the calls of that phase. On a shared 2-core machine the latencies above move
 *    with whatever else runs; this figure much less, so it is the one to compare changes by (at
 *    500 calls/s: at 100 calls/s each call wakes an idle process, which about doubles it, for a
 *    bare node:http + undici proxy too).
 *
 * The sidecar runs as it ships: `node dist/bin/tokenlease.js sidecar` with the NODE_OPTIONS the
 * webhook injects (SIDECAR_NODE_OPTIONS in controller/k8s/webhook/inject.ts); dist/ is rebuilt
 * first when a source is newer. `-- --source` runs bin/tokenlease.ts instead (Node strips the
 * types: ~18 MB more RSS), `-- --node-options='...'` tries other flags (with `=`: the value starts with --).
 *
 * Prints a table, then as the last line one JSON object (added latency and CPU per call at 500
 * calls/s). Medians over runs; `-- --quick` finishes in under a minute.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { Agent, request } from 'undici';
import { SIDECAR_NODE_OPTIONS } from '../controller/k8s/webhook/inject.ts';
import { startSimProvider, type SimProvider } from '../sim-provider/index.ts';
import { ensureBuilt } from './lib/build.ts';
import { startCliProcess, type CliProcess } from './lib/cli-process.ts';
import { cpuSeconds, rssMb } from './lib/process-stats.ts';
import { startQuotaServerProcess, type QuotaServerProcess } from './lib/quota-server-process.ts';
import { median, percentile, round, table } from './lib/stats.ts';
import { roomyBudgetsYaml } from './lib/bench-budgets.ts';

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    /** Run the sidecar from source (bin/tokenlease.ts) instead of dist/. */
    source: { type: 'boolean', default: false },
    /** The sidecar's NODE_OPTIONS; the webhook's by default. */
    'node-options': { type: 'string', default: SIDECAR_NODE_OPTIONS },
    /** `grpc`: the quota-server process (the cluster set-up); `embedded`: the engine inside the sidecar. */
    quota: { type: 'string', default: 'grpc' },
    'redis-url': {
      type: 'string',
      default: process.env.TOKENLEASE_BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379',
    },
  },
});
const QUICK = flags.quick;
const RUNS = QUICK ? 1 : 3;
const SECONDS = QUICK ? 2 : 5;
const RATES = [100, 500];
const MAX_CONCURRENCY = 64;
const CLI = fileURLToPath(
  new URL(flags.source ? '../bin/tokenlease.ts' : '../dist/bin/tokenlease.js', import.meta.url),
);
const NODE_OPTIONS = flags['node-options']!;
const PREFIX = `tlbench-sidecar:${process.pid}:`;

const BODY = JSON.stringify({
  model: 'sim-model',
  max_tokens: 32,
  messages: [{ role: 'user', content: 'What does a quota controller do? Answer briefly.' }],
});

async function startSidecarProcess(args: string[]): Promise<CliProcess & { url: string }> {
  const sidecar = await startCliProcess(CLI, 'sidecar', args, { NODE_OPTIONS });
  return { ...sidecar, url: sidecar.listening.url! };
}

const agent = new Agent({ connections: 256, keepAliveTimeout: 30_000, pipelining: 1 });

async function call(base: string): Promise<void> {
  const response = await request(`${base}/v1/chat/completions`, {
    method: 'POST',
    dispatcher: agent,
    headers: { 'content-type': 'application/json' },
    body: BODY,
  });
  await response.body.dump();
  if (response.statusCode !== 200) throw new Error(`status ${response.statusCode}`);
}

interface Latency {
  calls: number;
  p50: number;
  p99: number;
  errors: number;
}

/**
 * Open loop: call i is sent at start + i/rate whatever the earlier calls are doing, so a slow
 * sidecar cannot slow the load down and hide its own latency; each latency counts from the send.
 */
async function openLoop(base: string, rate: number, seconds: number, onTick?: () => void): Promise<Latency> {
  const total = Math.round(rate * seconds);
  const latencies: number[] = [];
  let errors = 0;
  const pending: Array<Promise<void>> = [];
  const start = performance.now();
  for (let i = 0; i < total; i++) {
    const wait = start + (i * 1000) / rate - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    if (i % rate === 0) onTick?.();
    const sent = performance.now();
    pending.push(
      call(base).then(
        () => void latencies.push(performance.now() - sent),
        () => void errors++,
      ),
    );
  }
  await Promise.all(pending);
  latencies.sort((a, b) => a - b);
  return { calls: total, p50: percentile(latencies, 50), p99: percentile(latencies, 99), errors };
}

/** Closed loop at `concurrency`: calls completed, and per second. */
async function maxRate(
  base: string,
  seconds: number,
  onTick: () => void,
): Promise<{ calls: number; rps: number }> {
  let done = 0;
  const end = performance.now() + seconds * 1000;
  const ticker = setInterval(onTick, 250);
  await Promise.all(
    Array.from({ length: MAX_CONCURRENCY }, async () => {
      while (performance.now() < end) {
        await call(base);
        done++;
      }
    }),
  );
  clearInterval(ticker);
  return { calls: done, rps: done / seconds };
}

/** CPU milliseconds per call that each process spent while `phase` ran. */
async function cpuPerCall<T extends { calls: number }>(
  pids: { sidecar: number; quota: number | undefined },
  phase: () => Promise<T>,
): Promise<T & { sidecarCpuMs: number; quotaCpuMs: number }> {
  const sidecarBefore = cpuSeconds(pids.sidecar);
  const quotaBefore = pids.quota === undefined ? 0 : cpuSeconds(pids.quota);
  const result = await phase();
  const sidecarCpu = cpuSeconds(pids.sidecar) - sidecarBefore;
  const quotaCpu = pids.quota === undefined ? NaN : cpuSeconds(pids.quota) - quotaBefore;
  return {
    ...result,
    sidecarCpuMs: (sidecarCpu * 1000) / result.calls,
    quotaCpuMs: (quotaCpu * 1000) / result.calls,
  };
}

async function redisReachable(url: string): Promise<boolean> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, connectTimeout: 1000 });
  try {
    await redis.connect();
    await redis.ping();
    return true;
  } catch {
    return false;
  } finally {
    redis.disconnect();
  }
}

async function main(): Promise<void> {
  if (!flags.source) ensureBuilt();
  const sim: SimProvider = await startSimProvider({ outputTokens: 16 });
  const dir = mkdtempSync(join(tmpdir(), 'tokenlease-bench-sidecar-'));
  const budgetsFile = join(dir, 'budgets.yaml');
  writeFileSync(budgetsFile, roomyBudgetsYaml('sim', `${sim.url}/v1`));
  const embedded = flags.quota === 'embedded';
  const useRedis = !embedded && (await redisReachable(flags['redis-url']!));
  const quota: QuotaServerProcess | undefined = embedded
    ? undefined
    : await startQuotaServerProcess(
        useRedis
          ? [
              '--budgets',
              budgetsFile,
              '--store',
              'redis',
              '--redis-url',
              flags['redis-url']!,
              '--redis-key-prefix',
              PREFIX,
            ]
          : ['--budgets', budgetsFile, '--store', 'memory'],
      );
  const sidecar = await startSidecarProcess([
    '--budgets',
    budgetsFile,
    '--budget',
    'bench/bench',
    '--quota',
    quota?.target ?? 'embedded',
  ]);

  const rows: Array<Record<string, string | number>> = [];
  const added: Record<number, { p50: number[]; p99: number[]; sidecarCpuMs: number[] }> = {};
  const maxRps: number[] = [];
  const rssIdle: number[] = [];
  const rssLoad: number[] = [];
  const pids = { sidecar: sidecar.pid, quota: quota?.pid };
  const cpuColumns = (phase: { sidecarCpuMs: number; quotaCpuMs: number }) => ({
    'sidecar CPU ms/call': round(phase.sidecarCpuMs, 3),
    'quota CPU ms/call': embedded ? '' : round(phase.quotaCpuMs, 3),
  });
  try {
    await new Promise((resolve) => setTimeout(resolve, 1000));
    rssIdle.push(rssMb(sidecar.pid));
    // Warm up both paths (connections, JIT) before measuring.
    await openLoop(sim.url, 200, 1);
    await openLoop(sidecar.url, 200, 2);

    for (let run = 0; run < RUNS; run++) {
      for (const rate of RATES) {
        // The same open-loop load, first straight to the provider, then through the sidecar.
        const direct = await openLoop(sim.url, rate, SECONDS);
        let peak = 0;
        const via = await cpuPerCall(pids, () =>
          openLoop(sidecar.url, rate, SECONDS, () => (peak = Math.max(peak, rssMb(sidecar.pid)))),
        );
        rssLoad.push(peak);
        const entry = (added[rate] ??= { p50: [], p99: [], sidecarCpuMs: [] });
        entry.p50.push(via.p50 - direct.p50);
        entry.p99.push(via.p99 - direct.p99);
        entry.sidecarCpuMs.push(via.sidecarCpuMs);
        rows.push({
          run: run + 1,
          'calls/s': rate,
          'direct p50 ms': round(direct.p50, 3),
          'direct p99 ms': round(direct.p99, 3),
          'sidecar p50 ms': round(via.p50, 3),
          'sidecar p99 ms': round(via.p99, 3),
          'added p50 ms': round(via.p50 - direct.p50, 3),
          'added p99 ms': round(via.p99 - direct.p99, 3),
          errors: direct.errors + via.errors,
          'max calls/s': '',
          ...cpuColumns(via),
          'sidecar RSS MB': round(peak, 1),
        });
      }
      let peak = 0;
      const max = await cpuPerCall(pids, () =>
        maxRate(sidecar.url, SECONDS, () => (peak = Math.max(peak, rssMb(sidecar.pid)))),
      );
      maxRps.push(max.rps);
      rssLoad.push(peak);
      rows.push({
        run: run + 1,
        'calls/s': `max (c=${MAX_CONCURRENCY})`,
        'direct p50 ms': '',
        'direct p99 ms': '',
        'sidecar p50 ms': '',
        'sidecar p99 ms': '',
        'added p50 ms': '',
        'added p99 ms': '',
        errors: '',
        'max calls/s': round(max.rps, 0),
        ...cpuColumns(max),
        'sidecar RSS MB': round(peak, 1),
      });
    }
  } finally {
    await sidecar.stop();
    await quota?.stop();
    await sim.close();
    await agent.close();
    if (useRedis) {
      const redis = new Redis(flags['redis-url']!);
      const keys = await redis.keys(`${PREFIX}*`);
      if (keys.length > 0) await redis.del(...keys);
      redis.disconnect();
    }
  }

  const setup = embedded
    ? 'lease engine inside the sidecar'
    : `quota-server over gRPC, ${useRedis ? 'Redis' : 'memory'} store`;
  console.log(`sidecar + quota service (${setup}), ${RUNS} run(s) of ${SECONDS}s per phase`);
  console.log(
    `sidecar: NODE_OPTIONS='${NODE_OPTIONS}' node ${flags.source ? 'bin/tokenlease.ts' : 'dist/bin/tokenlease.js'} sidecar`,
  );
  console.log(table(rows));
  console.log(`sidecar RSS idle ${round(median(rssIdle), 1)} MB`);
  const at500 = added[500]!;
  console.log(
    JSON.stringify({
      added_p50_ms: round(median(at500.p50), 3),
      added_p99_ms: round(median(at500.p99), 3),
      max_rps: round(median(maxRps), 0),
      rss_idle_mb: round(median(rssIdle), 1),
      rss_load_mb: round(Math.max(...rssLoad), 1),
      sidecar_cpu_ms_per_call: round(median(at500.sidecarCpuMs), 3),
    }),
  );
}

await main();
