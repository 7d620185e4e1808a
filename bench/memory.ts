/**
 * bench:memory — resident memory of the sidecar and the quota service, and of the token counter
 * they carry.
 *
 * 1. The o200k_base counter: RSS and heap right after loading, and tokens/s counting chat prompts,
 *    ours (common/tokens, from dist/) against gpt-tokenizer's o200k module, each in a fresh process
 *    beside a bare one.
 * 2. quota-server + sidecar as child processes, run from source (Node strips the types) and from
 *    dist/ (`npm run build`: compiled, the sidecar bundled by scripts/bundle-sidecar.ts), with and
 *    without V8 flags (through NODE_OPTIONS): RSS idle, peak during a burst of calls through the
 *    sidecar, and after it. The configuration that counts is the sidecar as it ships:
 *    `node dist/bin/tokenlease.js sidecar` (the image's entry point, the webhook's
 *    `args: [sidecar]`) with the NODE_OPTIONS the webhook injects (SIDECAR_NODE_OPTIONS in
 *    controller/k8s/webhook/inject.ts); it is measured `--runs` times (default 3) and its figures
 *    are the medians. The quota-server runs with the same options as the sidecar.
 *
 * The simulated provider runs in this process. Prints tables, then as the last line one JSON object
 * for the shipped configuration. dist/ is rebuilt first when any of its sources is newer; quick by
 * default (about a minute), `-- --full` makes the burst and the speed runs longer.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { Agent, request } from 'undici';
import { SIDECAR_NODE_OPTIONS } from '../controller/k8s/webhook/inject.ts';
import { startSimProvider, type SimProvider } from '../sim-provider/index.ts';
import { ensureBuilt } from './lib/build.ts';
import { startCliProcess, type CliProcess } from './lib/cli-process.ts';
import { rssMb } from './lib/process-stats.ts';
import { median, round, table } from './lib/stats.ts';
import { roomyBudgetsYaml } from './lib/bench-budgets.ts';

const { values: flags } = parseArgs({
  options: {
    full: { type: 'boolean', default: false },
    /** Measurements of the shipped configuration; its figures are their medians. */
    runs: { type: 'string', default: '3' },
    'redis-url': {
      type: 'string',
      default: process.env.TOKENLEASE_BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379',
    },
  },
});
const FULL = flags.full;
const RUNS = Number(flags.runs);
if (!Number.isInteger(RUNS) || RUNS < 1)
  throw new Error(`--runs must be a positive integer, not ${flags.runs}`);
const BURST_CALLS = FULL ? 20_000 : 2_000;
const BURST_CONCURRENCY = 32;
const IDLE_SETTLE_MS = 1_200;
const SPEED_SECONDS = FULL ? 3 : 1;
const PREFIX = `tlbench-memory:${process.pid}:`;
const ROOT = fileURLToPath(new URL('../', import.meta.url));
const ENTRY = {
  source: join(ROOT, 'bin/tokenlease.ts'),
  dist: join(ROOT, 'dist/bin/tokenlease.js'),
};

interface Variant {
  name: string;
  entry: keyof typeof ENTRY;
  nodeOptions: string;
}

const SEMI_SPACE = '--max-semi-space-size=2';
/** The sidecar as the webhook injects it: compiled JS, and the webhook's NODE_OPTIONS. */
const SHIPPED = `dist, as injected (NODE_OPTIONS=${SIDECAR_NODE_OPTIONS})`;
const VARIANTS: Variant[] = [
  { name: 'source', entry: 'source', nodeOptions: '' },
  { name: 'source + semi-space 2 MB', entry: 'source', nodeOptions: SEMI_SPACE },
  { name: 'dist', entry: 'dist', nodeOptions: '' },
  { name: SHIPPED, entry: 'dist', nodeOptions: SIDECAR_NODE_OPTIONS },
  {
    name: 'dist + semi-space 2 MB + old space 96 MB',
    entry: 'dist',
    nodeOptions: `${SEMI_SPACE} --max-old-space-size=96`,
  },
];
/*
 * Why these: compiled JS and a 1 MB young generation lower RSS idle and under load in every run. A
 * cap on the old space bounds the garbage a burst leaves (V8 otherwise collects it late) but must be
 * sized to the container's limit and the largest bodies, so it is shown, not shipped. lite-mode /
 * jitless would save more but remove WebAssembly, which undici's HTTP parser needs;
 * --optimize-for-size changed nothing measurable.
 */

// ---------------------------------------------------------------------------------------------
// 1. The token counter alone.

const CHAT_PARAGRAPHS = [
  'You are a helpful assistant for a platform team. Answer briefly and cite the relevant config.',
  'Our pods call three LLM providers through a sidecar; the quota service leases tokens per budget.',
  'Why did request 4821 wait 2.4 seconds before it was sent upstream at 14:03:27 UTC yesterday?',
  'function lease(budget: string, tokens: number): Promise<Lease> {\n  return client.acquire({ budget, tokens });\n}',
  '{"model":"gpt-4o","max_tokens":512,"messages":[{"role":"user","content":"hello"}],"n":1}',
  'Die Anfrage wurde abgelehnt, weil das Budget für diese Minute aufgebraucht war.',
  '配额控制器为每个命名空间分配令牌预算，并在调用之前预留。',
  'Kubernetes-native quota controller — sidecar, leases, fairness & back-pressure 🚦',
];

/** Chat prompts of ~300-600 tokens, varied (numbers, order) so no two are the same string. */
function chatPrompts(count: number): string[] {
  const prompts: string[] = [];
  for (let i = 0; i < count; i++) {
    const parts: string[] = [];
    for (let p = 0; p < 6 + (i % 5); p++) {
      const paragraph = CHAT_PARAGRAPHS[(i * 7 + p * 3) % CHAT_PARAGRAPHS.length]!;
      parts.push(paragraph.replace(/\d+/g, (digits) => String((Number(digits) * (i + 1)) % 99_991)));
    }
    prompts.push(parts.join('\n\n'));
  }
  return prompts;
}

interface CounterFigures {
  load_ms: number;
  rss_mb: number;
  heap_mb: number;
  tokens_per_s: number;
}

/** Source of a child process that loads one counter and reports its figures as JSON. */
function counterProbe(moduleUrl: string | undefined, exportName: string, promptsFile: string): string {
  return `
import { readFileSync } from 'node:fs';
const prompts = JSON.parse(readFileSync(${JSON.stringify(promptsFile)}, 'utf8'));
const started = performance.now();
const count = ${moduleUrl ? `(await import(${JSON.stringify(moduleUrl)})).${exportName}` : '(text) => text.length'};
const plain = { disallowedSpecial: new Set() };
count(prompts[0], plain);
const loadMs = performance.now() - started;
globalThis.gc();
const { rss, heapUsed } = process.memoryUsage();
let tokens = 0;
let calls = 0;
const speedStart = performance.now();
while (performance.now() - speedStart < ${SPEED_SECONDS * 1000}) {
  tokens += count(prompts[calls++ % prompts.length], plain);
}
const seconds = (performance.now() - speedStart) / 1000;
console.log(JSON.stringify({ load_ms: loadMs, rss_mb: rss / 2 ** 20, heap_mb: heapUsed / 2 ** 20, tokens_per_s: tokens / seconds }));
`;
}

function runCounterProbe(
  moduleUrl: string | undefined,
  exportName: string,
  promptsFile: string,
): CounterFigures {
  const result = spawnSync(
    process.execPath,
    ['--expose-gc', '--input-type=module', '-e', counterProbe(moduleUrl, exportName, promptsFile)],
    { cwd: ROOT, encoding: 'utf8' },
  );
  if (result.status !== 0) throw new Error(`counter probe failed:\n${result.stderr}`);
  return JSON.parse(result.stdout.trim().split('\n').at(-1)!) as CounterFigures;
}

function measureCounters(dir: string): Array<Record<string, string | number>> {
  const promptsFile = join(dir, 'prompts.json');
  writeFileSync(promptsFile, JSON.stringify(chatPrompts(500)));
  const ours = pathToFileURL(join(ROOT, 'dist/common/tokens/o200k-base.js')).href;
  const bare = runCounterProbe(undefined, '', promptsFile);
  const rows: Array<Record<string, string | number>> = [
    {
      counter: 'bare node (baseline)',
      'load ms': '',
      'RSS MB': round(bare.rss_mb, 1),
      'heap MB': round(bare.heap_mb, 1),
      'RSS over bare MB': 0,
      'tokens/s': '',
    },
  ];
  for (const [name, url, exportName] of [
    ['common/tokens (dist)', ours, 'countO200kTokens'],
    ['gpt-tokenizer o200k_base', 'gpt-tokenizer/encoding/o200k_base', 'countTokens'],
  ] as const) {
    const figures = runCounterProbe(url, exportName, promptsFile);
    rows.push({
      counter: name,
      'load ms': round(figures.load_ms, 0),
      'RSS MB': round(figures.rss_mb, 1),
      'heap MB': round(figures.heap_mb, 1),
      'RSS over bare MB': round(figures.rss_mb - bare.rss_mb, 1),
      'tokens/s': Math.round(figures.tokens_per_s),
    });
  }
  return rows;
}

// ---------------------------------------------------------------------------------------------
// 2. The processes.

/** `tokenlease <command>` as bench/sidecar.ts and bench/lib/quota-server-process.ts start it. */
function startCli(variant: Variant, command: string, args: string[]): Promise<CliProcess> {
  return startCliProcess(ENTRY[variant.entry], command, args, { NODE_OPTIONS: variant.nodeOptions });
}

const BODY = JSON.stringify({
  model: 'sim-model',
  max_tokens: 32,
  messages: [
    { role: 'system', content: CHAT_PARAGRAPHS[0] },
    { role: 'user', content: CHAT_PARAGRAPHS.slice(1).join('\n\n') },
  ],
});

async function burst(agent: Agent, base: string, calls: number, onTick: () => void): Promise<number> {
  let next = 0;
  let errors = 0;
  const ticker = setInterval(onTick, 50);
  await Promise.all(
    Array.from({ length: BURST_CONCURRENCY }, async () => {
      while (next++ < calls) {
        const response = await request(`${base}/v1/chat/completions`, {
          method: 'POST',
          dispatcher: agent,
          headers: { 'content-type': 'application/json' },
          body: BODY,
        });
        await response.body.dump();
        if (response.statusCode !== 200) errors++;
      }
    }),
  );
  clearInterval(ticker);
  return errors;
}

interface ProcessFigures {
  variant: string;
  sidecarIdle: number;
  sidecarPeak: number;
  sidecarAfter: number;
  quotaIdle: number;
  quotaPeak: number;
  quotaAfter: number;
  errors: number;
}

/** Each figure's median over the runs of one configuration (errors summed). */
function medianFigures(samples: ProcessFigures[]): ProcessFigures {
  const of = (pick: (f: ProcessFigures) => number) => median(samples.map(pick));
  return {
    variant: samples[0]!.variant,
    sidecarIdle: of((f) => f.sidecarIdle),
    sidecarPeak: of((f) => f.sidecarPeak),
    sidecarAfter: of((f) => f.sidecarAfter),
    quotaIdle: of((f) => f.quotaIdle),
    quotaPeak: of((f) => f.quotaPeak),
    quotaAfter: of((f) => f.quotaAfter),
    errors: samples.reduce((sum, f) => sum + f.errors, 0),
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function measureVariant(
  variant: Variant,
  budgetsFile: string,
  storeArgs: string[],
): Promise<ProcessFigures> {
  const quota = await startCli(variant, 'quota-server', ['--budgets', budgetsFile, ...storeArgs]);
  const agent = new Agent({ connections: BURST_CONCURRENCY, keepAliveTimeout: 30_000 });
  let sidecar: CliProcess | undefined;
  try {
    sidecar = await startCli(variant, 'sidecar', [
      '--budgets',
      budgetsFile,
      '--budget',
      'bench/bench',
      '--quota',
      `127.0.0.1:${quota.listening.port}`,
    ]);
    const sidecarPid = sidecar.pid;
    await sleep(IDLE_SETTLE_MS);
    const figures: ProcessFigures = {
      variant: variant.name,
      sidecarIdle: rssMb(sidecarPid),
      quotaIdle: rssMb(quota.pid),
      sidecarPeak: 0,
      quotaPeak: 0,
      sidecarAfter: 0,
      quotaAfter: 0,
      errors: 0,
    };
    figures.errors = await burst(agent, sidecar.listening.url!, BURST_CALLS, () => {
      figures.sidecarPeak = Math.max(figures.sidecarPeak, rssMb(sidecarPid));
      figures.quotaPeak = Math.max(figures.quotaPeak, rssMb(quota.pid));
    });
    figures.sidecarPeak = Math.max(figures.sidecarPeak, rssMb(sidecarPid));
    figures.quotaPeak = Math.max(figures.quotaPeak, rssMb(quota.pid));
    await sleep(IDLE_SETTLE_MS);
    figures.sidecarAfter = rssMb(sidecarPid);
    figures.quotaAfter = rssMb(quota.pid);
    return figures;
  } finally {
    await agent.close();
    await sidecar?.stop();
    await quota.stop();
  }
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
  ensureBuilt();
  const dir = mkdtempSync(join(tmpdir(), 'tokenlease-bench-memory-'));
  const sim: SimProvider = await startSimProvider({ outputTokens: 16 });
  const redisUrl = flags['redis-url']!;
  const useRedis = await redisReachable(redisUrl);
  const storeArgs = useRedis
    ? ['--store', 'redis', '--redis-url', redisUrl, '--redis-key-prefix', PREFIX]
    : ['--store', 'memory'];
  const results: ProcessFigures[] = [];
  const shippedIdle: number[] = [];
  let counterRows: Array<Record<string, string | number>>;
  try {
    counterRows = measureCounters(dir);
    const budgetsFile = join(dir, 'budgets.yaml');
    writeFileSync(budgetsFile, roomyBudgetsYaml('sim', `${sim.url}/v1`));
    for (const variant of VARIANTS) {
      const samples: ProcessFigures[] = [];
      for (let run = 0; run < (variant.name === SHIPPED ? RUNS : 1); run++) {
        samples.push(await measureVariant(variant, budgetsFile, storeArgs));
      }
      results.push(medianFigures(samples));
      if (variant.name === SHIPPED) shippedIdle.push(...samples.map((sample) => sample.sidecarIdle));
    }
  } finally {
    await sim.close();
    rmSync(dir, { recursive: true, force: true });
    if (useRedis) {
      const redis = new Redis(redisUrl);
      const keys = await redis.keys(`${PREFIX}*`);
      if (keys.length > 0) await redis.del(...keys);
      redis.disconnect();
    }
  }

  console.log(`o200k_base counters, one fresh process each (speed over ${SPEED_SECONDS}s of chat prompts)`);
  console.log(table(counterRows));
  console.log();
  console.log(
    `quota-server (${useRedis ? 'Redis' : 'memory'} store) + sidecar, RSS MB: idle, peak during ` +
      `${BURST_CALLS} calls at concurrency ${BURST_CONCURRENCY}, ${IDLE_SETTLE_MS / 1000}s after`,
  );
  console.log(
    table(
      results.map((r) => ({
        configuration: r.variant === SHIPPED && RUNS > 1 ? `${r.variant}, median of ${RUNS}` : r.variant,
        'sidecar idle': round(r.sidecarIdle, 1),
        'sidecar peak': round(r.sidecarPeak, 1),
        'sidecar after': round(r.sidecarAfter, 1),
        'quota idle': round(r.quotaIdle, 1),
        'quota peak': round(r.quotaPeak, 1),
        'quota after': round(r.quotaAfter, 1),
        errors: r.errors,
      })),
    ),
  );
  const shipped = results.find((r) => r.variant === SHIPPED)!;
  console.log(
    `shipped: NODE_OPTIONS='${SIDECAR_NODE_OPTIONS}' node dist/bin/tokenlease.js sidecar ` +
      `(controller/k8s/webhook/inject.ts); sidecar idle RSS of ${RUNS} run(s): ` +
      `${shippedIdle.map((mb) => round(mb, 1)).join(', ')} MB, median ${round(shipped.sidecarIdle, 1)} MB`,
  );
  console.log(
    JSON.stringify({
      sidecar_rss_idle_mb: round(shipped.sidecarIdle, 1),
      sidecar_rss_load_mb: round(shipped.sidecarPeak, 1),
      sidecar_rss_after_mb: round(shipped.sidecarAfter, 1),
      quota_rss_idle_mb: round(shipped.quotaIdle, 1),
      quota_rss_load_mb: round(shipped.quotaPeak, 1),
    }),
  );
}

await main();
