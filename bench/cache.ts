/**
 * bench:cache — what the shared response cache gives.
 *
 * 1. hit latency: one answer stored, then the same deterministic request sent again and again
 *    (one at a time, keep-alive) through a sidecar process; client-side latency p50/p99, for the
 *    Redis store (the cluster set-up) and the in-memory store (embedded mode). A hot answer is
 *    served from the sidecar's local copy (refreshed from the store every second); a second row
 *    measures hits on answers another sidecar stored, each read from Redis;
 * 2. saving on a replayed workload: a sequence of requests in which each one repeats an earlier
 *    prompt with probability --repeat-ratio, sent at --concurrency through two sidecars sharing
 *    the Redis store; upstream calls counted in the simulated provider's ledger.
 *
 * The sidecars run as they ship: `node dist/bin/tokenlease.js sidecar` with the webhook's
 * NODE_OPTIONS (dist/ rebuilt when stale; `--source` runs bin/tokenlease.ts instead).
 *
 * The simulated provider answers after --provider-latency. Prints a table, then as the last line
 * one JSON object: {"hit_p50_ms", "hit_p99_ms", "upstream_calls_saved_pct"} (Redis store).
 * `-- --quick` finishes in well under a minute.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { Agent, request } from 'undici';
import { mulberry32 } from '../sim-provider/generate.ts';
import { startSimProvider, type SimProvider } from '../sim-provider/index.ts';
import { SIDECAR_NODE_OPTIONS } from '../controller/k8s/webhook/inject.ts';
import { ensureBuilt } from './lib/build.ts';
import { startCliProcess, type CliProcess } from './lib/cli-process.ts';
import { percentile, round, table } from './lib/stats.ts';

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    'redis-url': {
      type: 'string',
      default: process.env.TOKENLEASE_BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379',
    },
    'repeat-ratio': { type: 'string', default: '0.4' },
    concurrency: { type: 'string', default: '16' },
    'provider-latency': { type: 'string', default: '20' },
    /** Run the sidecars from source (bin/tokenlease.ts) instead of dist/. */
    source: { type: 'boolean', default: false },
  },
});
const QUICK = flags.quick;
const HITS = QUICK ? 4_000 : 20_000;
const WARMUP = QUICK ? 1_500 : 2_000;
const WORKLOAD = QUICK ? 600 : 4_000;
const REPEAT_RATIO = Number(flags['repeat-ratio']);
const CONCURRENCY = Number(flags.concurrency);
const PROVIDER_LATENCY_MS = Number(flags['provider-latency']);
if (!(REPEAT_RATIO >= 0 && REPEAT_RATIO < 1)) throw new Error('--repeat-ratio must be in [0, 1)');
if (!(Number.isInteger(CONCURRENCY) && CONCURRENCY > 0))
  throw new Error('--concurrency must be a positive integer');
const CLI = fileURLToPath(
  new URL(flags.source ? '../bin/tokenlease.ts' : '../dist/bin/tokenlease.js', import.meta.url),
);
/** Budget names unique to this run: the cache's keys are scoped by budget, so they are too. */
const NAMESPACE = `bench-cache-${process.pid}`;

function budgetsYaml(simUrl: string): string {
  return `
apiVersion: tokenlease.io/v1alpha1
kind: LLMProvider
metadata: {name: sim, namespace: llm}
spec:
  api: openai
  baseURL: ${simUrl}/v1
  allowedNamespaces: ['*']
  limits:
    - {dimension: concurrency, amount: 100000}
    - {dimension: requests, amount: 1000000000, window: 1m}
---
apiVersion: tokenlease.io/v1alpha1
kind: LLMBudget
metadata: {name: bench, namespace: ${NAMESPACE}}
spec:
  providerRef: {name: sim, namespace: llm}
  cache: {enabled: true, ttl: 10m}
`;
}

async function startSidecarProcess(args: string[]): Promise<CliProcess & { url: string }> {
  const sidecar = await startCliProcess(CLI, 'sidecar', args, {
    NODE_OPTIONS: flags.source ? '' : SIDECAR_NODE_OPTIONS,
  });
  return { ...sidecar, url: sidecar.listening.url! };
}

const agent = new Agent({ connections: 256, keepAliveTimeout: 30_000, pipelining: 1 });

function body(prompt: number): string {
  return JSON.stringify({
    model: 'sim-model',
    temperature: 0,
    max_tokens: 64,
    messages: [
      { role: 'user', content: `Question number ${prompt} of the replayed workload: answer briefly.` },
    ],
  });
}

async function call(base: string, payload: string): Promise<string | undefined> {
  const response = await request(`${base}/v1/chat/completions`, {
    method: 'POST',
    dispatcher: agent,
    headers: { 'content-type': 'application/json' },
    body: payload,
  });
  await response.body.dump();
  if (response.statusCode !== 200) throw new Error(`status ${response.statusCode}`);
  const cache = response.headers['x-tokenlease-cache'];
  return typeof cache === 'string' ? cache : undefined;
}

interface HitLatency {
  p50: number;
  p99: number;
  max: number;
}

async function hitLatency(base: string): Promise<HitLatency> {
  const payload = body(-1);
  await call(base, payload);
  const samples: number[] = [];
  for (let i = 0; i < WARMUP + HITS; i++) {
    const start = performance.now();
    const cache = await call(base, payload);
    const elapsed = performance.now() - start;
    if (cache !== 'hit') throw new Error(`expected a cache hit, got ${cache}`);
    if (i >= WARMUP) samples.push(elapsed);
  }
  samples.sort((a, b) => a - b);
  return { p50: percentile(samples, 50), p99: percentile(samples, 99), max: samples.at(-1)! };
}

/**
 * Hits on answers another sidecar stored: the first hit of each key in this sidecar reads the
 * store (no local copy yet).
 */
async function storeHitLatency(storing: string, reading: string): Promise<HitLatency> {
  const keys = Math.min(HITS, QUICK ? 1_000 : 5_000);
  let stored = 0;
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (stored < keys) await call(storing, body(1_000_000 + stored++));
    }),
  );
  const samples: number[] = [];
  for (let i = 0; i < keys; i++) {
    const start = performance.now();
    const cache = await call(reading, body(1_000_000 + i));
    const elapsed = performance.now() - start;
    if (cache !== 'hit') throw new Error(`expected a cache hit, got ${cache}`);
    if (i >= keys / 10) samples.push(elapsed);
  }
  samples.sort((a, b) => a - b);
  return { p50: percentile(samples, 50), p99: percentile(samples, 99), max: samples.at(-1)! };
}

/** Prompt ids: each request repeats an earlier prompt with probability REPEAT_RATIO. */
function workload(): number[] {
  const random = mulberry32(7);
  const prompts: number[] = [];
  let distinct = 0;
  for (let i = 0; i < WORKLOAD; i++) {
    if (distinct > 0 && random() < REPEAT_RATIO) prompts.push(Math.floor(random() * distinct));
    else prompts.push(distinct++);
  }
  return prompts;
}

async function replay(sim: SimProvider, bases: string[]): Promise<{ upstream: number; repeats: number }> {
  const prompts = workload();
  const before = sim.ledger.summary().total;
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async (_, worker) => {
      while (next < prompts.length) {
        const prompt = prompts[next++]!;
        await call(bases[worker % bases.length]!, body(prompt));
      }
    }),
  );
  return { upstream: sim.ledger.summary().total - before, repeats: prompts.length - new Set(prompts).size };
}

async function redisReachable(url: string): Promise<boolean> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, connectTimeout: 1000 });
  redis.on('error', () => {});
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
  const started = performance.now();
  const sim = await startSimProvider({ models: [], outputTokens: 64, latencyMs: PROVIDER_LATENCY_MS });
  const dir = mkdtempSync(join(tmpdir(), 'tokenlease-bench-cache-'));
  const budgetsFile = join(dir, 'budgets.yaml');
  writeFileSync(budgetsFile, budgetsYaml(sim.url));
  const common = ['--budgets', budgetsFile, '--budget', `${NAMESPACE}/bench`];
  const redisUrl = flags['redis-url']!;
  const useRedis = await redisReachable(redisUrl);
  if (!useRedis) process.stderr.write(`Redis not reachable at ${redisUrl}: the in-memory store only\n`);
  const rows: Array<Record<string, string | number>> = [];
  let result = { hit_p50_ms: NaN, hit_p99_ms: NaN, upstream_calls_saved_pct: NaN };
  try {
    const memory = await startSidecarProcess(common);
    try {
      const latency = await hitLatency(memory.url);
      rows.push({
        store: 'memory',
        'hit p50 ms': round(latency.p50, 3),
        'hit p99 ms': round(latency.p99, 3),
        'hit max ms': round(latency.max, 2),
      });
      if (!useRedis)
        result = { ...result, hit_p50_ms: round(latency.p50, 3), hit_p99_ms: round(latency.p99, 3) };
    } finally {
      await memory.stop();
    }
    const stores = useRedis ? ['--cache-redis', redisUrl] : [];
    const sidecars = [
      await startSidecarProcess([...common, ...stores]),
      await startSidecarProcess([...common, ...stores]),
    ];
    try {
      if (useRedis) {
        const latency = await hitLatency(sidecars[0]!.url);
        rows.push({
          store: 'redis',
          'hit p50 ms': round(latency.p50, 3),
          'hit p99 ms': round(latency.p99, 3),
          'hit max ms': round(latency.max, 2),
        });
        result = { ...result, hit_p50_ms: round(latency.p50, 3), hit_p99_ms: round(latency.p99, 3) };
        const fromStore = await storeHitLatency(sidecars[1]!.url, sidecars[0]!.url);
        rows.push({
          store: 'redis, stored by another sidecar',
          'hit p50 ms': round(fromStore.p50, 3),
          'hit p99 ms': round(fromStore.p99, 3),
          'hit max ms': round(fromStore.max, 2),
        });
      }
      const replayed = await replay(
        sim,
        sidecars.map((sidecar) => sidecar.url),
      );
      const saved = (1 - replayed.upstream / WORKLOAD) * 100;
      result.upstream_calls_saved_pct = round(saved, 1);
      process.stdout.write(`${table(rows)}\n\n`);
      process.stdout.write(
        `${table([
          {
            store: useRedis ? 'redis, 2 sidecars' : 'memory, 2 sidecars',
            requests: WORKLOAD,
            'repeat ratio': REPEAT_RATIO,
            'repeats in sequence': replayed.repeats,
            concurrency: CONCURRENCY,
            'upstream calls': replayed.upstream,
            'saved %': round(saved, 1),
            'ideal saved %': round((replayed.repeats / WORKLOAD) * 100, 1),
          },
        ])}\n\n`,
      );
    } finally {
      await Promise.all(sidecars.map((sidecar) => sidecar.stop()));
    }
  } finally {
    await sim.close();
    await agent.close();
    if (useRedis) {
      const redis = new Redis(redisUrl);
      const keys = await redis.keys(`tl:cache:{*${NAMESPACE}/*`);
      if (keys.length > 0) await redis.del(...keys);
      redis.disconnect();
    }
  }
  process.stderr.write(`bench:cache took ${round((performance.now() - started) / 1000, 1)} s\n`);
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

await main();
