/**
 * bench:script — what the Redis lease script costs Redis per acquire+settle pair, in instructions.
 *
 * Redis runs the script on its one command thread, so the script's cost per pair bounds what a
 * Redis gives the quota service and sets its share of every call's latency. Timing it on a shared
 * machine measures the neighbours as much as the script (see bench:quota's steal column); an
 * instruction count does not. So this runs a Redis server of its own under valgrind's callgrind
 * (on a free port, nothing kept), drives it with the lease engine in process, and reads how many
 * instructions the server executed for a known number of pairs (callgrind_control zeroes the
 * counts before and dumps them after each run; the count covers the whole server: the script,
 * the commands it calls, parsing and replies).
 *
 * Runs at concurrency 1 (each script call carries one operation) and 8 (the store batches about
 * eight operations per call), with the store's default function library. Prints a table, then as
 * the last line one JSON object: {"instructions_per_pair_c1", "instructions_per_pair_c8"}, each the
 * median of its runs. `-- --quick` takes about a minute; a full run about three.
 * Needs valgrind (Debian's `valgrind` package) and redis-server on PATH.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { buildBudgetSet, parseBudgetsYaml } from '../common/budgets/load-budgets.ts';
import { createRedisEngine, type LeaseEngine } from '../controller/quota/engine/index.ts';
import { BENCH_ACQUIRE, BENCH_USAGE, QUOTA_BENCH_BUDGETS_YAML } from './lib/bench-budgets.ts';
import { median, round, table } from './lib/stats.ts';
import { freePort } from '../test/support/free-ports.ts';

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    'redis-server': { type: 'string', default: 'redis-server' },
  },
});
const RUNS = flags.quick ? 1 : 3;
// Pairs per measured run: under callgrind Redis runs ~50x slower, a few thousand pairs a minute.
const PAIRS = flags.quick ? 600 : 2000;
const WARM_PAIRS = 500;

function requireTool(command: string, args: string[]): void {
  try {
    execFileSync(command, args, { stdio: 'ignore' });
  } catch {
    throw new Error(`bench:script needs ${command} on PATH (apt-get install valgrind redis-server)`);
  }
}

/** A Redis server under callgrind, answering on `port` once PING does. */
async function startProfiledRedis(dir: string, port: number): Promise<ChildProcess> {
  const child = spawn(
    'valgrind',
    [
      '--tool=callgrind',
      `--callgrind-out-file=${join(dir, 'callgrind.out')}`,
      flags['redis-server']!,
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
    ],
    { stdio: 'ignore' },
  );
  const probe = new Redis({ port, lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
  probe.on('error', () => {}); // refused until valgrind has the server up: retried below
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      if (probe.status !== 'ready') await probe.connect();
      await probe.ping();
      probe.disconnect();
      return child;
    } catch (error) {
      if (Date.now() > deadline || child.exitCode !== null) {
        probe.disconnect();
        child.kill();
        throw new Error(`redis-server under valgrind did not answer: ${(error as Error).message}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}

async function pairs(engine: LeaseEngine, concurrency: number, count: number): Promise<void> {
  let left = count;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (left-- > 0) {
        const grant = await engine.acquire(BENCH_ACQUIRE);
        await engine.settle({ leaseId: grant.leaseId, usage: BENCH_USAGE, outcome: 'ok' });
      }
    }),
  );
}

/** Instructions the server ran for `count` pairs: counts zeroed, pairs run, counts dumped. */
async function measure(
  engine: LeaseEngine,
  pid: number,
  dir: string,
  concurrency: number,
  count: number,
): Promise<number> {
  execFileSync('callgrind_control', ['--zero', String(pid)], { stdio: 'ignore' });
  await pairs(engine, concurrency, count);
  const before = new Set(readdirSync(dir));
  execFileSync('callgrind_control', ['--dump', String(pid)], { stdio: 'ignore' });
  const dump = readdirSync(dir).find((file) => !before.has(file));
  if (!dump) throw new Error('callgrind_control --dump wrote no profile');
  const summary = /^summary:\s+(\d+)/m.exec(readFileSync(join(dir, dump), 'utf8'));
  if (!summary) throw new Error(`no summary line in ${dump}`);
  return Number(summary[1]) / count;
}

async function main(): Promise<void> {
  requireTool('valgrind', ['--version']);
  requireTool(flags['redis-server']!, ['--version']);
  const dir = mkdtempSync(join(tmpdir(), 'tokenlease-bench-script-'));
  const port = await freePort();
  const redis = await startProfiledRedis(dir, port);
  const budgets = buildBudgetSet(parseBudgetsYaml(QUOTA_BENCH_BUDGETS_YAML, 'bench'));
  const engine = createRedisEngine({ budgets, redis: `redis://127.0.0.1:${port}`, keyPrefix: 'tlbench:' });
  console.error(
    `bench:script (${flags.quick ? 'quick' : 'full'}: ${RUNS} run(s) of ${PAIRS} pairs per point)`,
  );
  const rows: Array<Record<string, string | number>> = [];
  const headline: Record<string, number> = {};
  try {
    await engine.ready();
    await pairs(engine, 8, WARM_PAIRS); // the library loaded, the main hash grown to its steady size
    for (const concurrency of [1, 8]) {
      const perPair: number[] = [];
      for (let run = 0; run < RUNS; run++) {
        perPair.push(await measure(engine, redis.pid!, dir, concurrency, PAIRS));
        console.error(
          `  c=${concurrency} run ${run + 1}: ${round(perPair.at(-1)! / 1000, 1)} k instructions per pair`,
        );
      }
      const value = Math.round(median(perPair));
      rows.push({
        concurrency,
        'pairs per run': PAIRS,
        'k instructions per pair (median)': round(value / 1000, 1),
        'runs (k)': perPair.map((v) => round(v / 1000, 1)).join(' '),
      });
      headline[`instructions_per_pair_c${concurrency}`] = value;
    }
  } finally {
    await engine.close();
    redis.kill();
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(table(rows));
  console.log(JSON.stringify(headline));
}

await main();
