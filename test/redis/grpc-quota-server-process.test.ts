/**
 * `tokenlease quota-server` as a user runs it: a child process, configured by flags and
 * environment, serving health and leases, reloading budgets, stopping on SIGTERM.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { CapacityExhaustedError } from '../../common/errors/errors.ts';
import { checkHealth } from '../../common/grpc/health-client.ts';
import { createQuotaClient, type QuotaClient } from '../../common/grpc/quota-client.ts';
import type { AcquireInput } from '../../common/quota-api.ts';
import { redisUrl } from '../support/redis.ts';

const CLI = fileURLToPath(new URL('../../bin/tokenlease.ts', import.meta.url));
const RUN_PREFIX = `tlproc:${randomUUID().slice(0, 8)}:`;

function budgetsYaml(concurrency: number): string {
  return `apiVersion: tokenlease.io/v1alpha1
kind: LLMProvider
metadata: {name: acme, namespace: llm}
spec:
  api: openai
  baseURL: https://api.example.test/v1
  limits:
    - {dimension: concurrency, amount: ${concurrency}}
---
apiVersion: tokenlease.io/v1alpha1
kind: LLMBudget
metadata: {name: search, namespace: llm}
spec:
  providerRef: {name: acme}
`;
}

const acquireInput: AcquireInput = {
  provider: 'llm/acme',
  model: 'gpt-test',
  budget: 'llm/search',
  inputTokens: 10,
  maxOutputTokens: 10,
  maxWaitMs: 0,
};

/** The environment without any TOKENLEASE_ setting of the machine running the tests. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([key]) => !key.startsWith('TOKENLEASE_')),
  );
  return { ...env, ...extra };
}

interface Child {
  process: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
}

function start(args: string[], env: Record<string, string> = {}): Child {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: cleanEnv(env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  return { process: child, stdout: () => stdout, stderr: () => stderr, exited };
}

/** Log lines (JSON) the server wrote to stderr. */
function logLines(child: Child): Array<Record<string, unknown>> {
  return child
    .stderr()
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

describe('tokenlease CLI', () => {
  const children: Child[] = [];
  const clients: QuotaClient[] = [];
  let dir: string;
  let budgetsFile: string;
  const admin = new Redis(redisUrl());

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tokenlease-proc-'));
    budgetsFile = join(dir, 'budgets.yaml');
  });
  afterEach(async () => {
    clients.splice(0).forEach((client) => client.close());
    for (const child of children.splice(0)) {
      if (child.process.exitCode === null) child.process.kill('SIGKILL');
      await child.exited;
    }
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
    const keys = await admin.keys(`${RUN_PREFIX}*`);
    if (keys.length > 0) await admin.del(...keys);
    admin.disconnect();
  });

  async function run(args: string[], env: Record<string, string> = {}) {
    const child = start(args, env);
    children.push(child);
    return { code: await child.exited, stdout: child.stdout(), stderr: child.stderr() };
  }

  it('exits 2 naming the flag or variable of a bad value', async () => {
    await writeFile(budgetsFile, budgetsYaml(1));
    const cases: Array<[string[], Record<string, string>, string]> = [
      [
        ['--listen', 'nope', '--budgets', budgetsFile],
        {},
        'tokenlease quota-server: --listen: must be host:port\n',
      ],
      [
        ['--budgets', budgetsFile, '--store', 'etcd'],
        {},
        'tokenlease quota-server: --store: must be memory or redis\n',
      ],
      [
        ['--budgets', budgetsFile],
        { TOKENLEASE_REDIS_URL: 'http://x' },
        'tokenlease quota-server: TOKENLEASE_REDIS_URL: must be a redis:// or rediss:// URL\n',
      ],
      [
        ['--budgets', budgetsFile, '--bogus'],
        {},
        'tokenlease quota-server: --bogus: unknown flag (see --help)\n',
      ],
      [[], {}, 'tokenlease quota-server: --budgets: is required (or set TOKENLEASE_BUDGETS)\n'],
    ];
    for (const [args, env, message] of cases) {
      const result = await run(['quota-server', ...args], env);
      expect(result.code, args.join(' ')).toBe(2);
      expect(result.stderr).toBe(message);
    }
  });

  it('exits 2 when the budgets cannot be loaded, naming the flag and the bad field', async () => {
    const bad = join(dir, 'bad.yaml');
    await writeFile(bad, budgetsYaml(1).replace('amount: 1', 'amount: -1'));
    const result = await run(['quota-server', '--budgets', bad, '--listen', '127.0.0.1:0']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^tokenlease quota-server: --budgets: cannot load .*limits\[0\]\.amount/);
    const missing = await run(['quota-server', '--listen', '127.0.0.1:0'], {
      TOKENLEASE_BUDGETS: join(dir, 'nope'),
    });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^tokenlease quota-server: TOKENLEASE_BUDGETS: cannot load/);
  });

  it('prints usage and exits 2 on an unknown command or none; --help exits 0', async () => {
    const unknown = await run(['frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown command "frobnicate"');
    expect(unknown.stderr).toContain('quota-server');
    expect((await run([])).code).toBe(2);
    const help = await run(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/Usage: tokenlease <command>/);
    const commandHelp = await run(['quota-server', '--help']);
    expect(commandHelp.code).toBe(0);
    expect(commandHelp.stdout).toContain('--redis-url');
  });

  async function startServer(args: string[]): Promise<{ child: Child; client: QuotaClient; target: string }> {
    const child = start(['quota-server', '--listen', '127.0.0.1:0', '--reload-debounce', '50ms', ...args]);
    children.push(child);
    const port = await vi.waitFor(
      () => {
        if (child.process.exitCode !== null) throw new Error(`quota-server exited: ${child.stderr()}`);
        const line = logLines(child).find((entry) => entry.msg === 'listening');
        if (!line) throw new Error('not listening yet');
        return line.port as number;
      },
      { timeout: 15_000, interval: 50 },
    );
    const target = `127.0.0.1:${port}`;
    await vi.waitFor(async () => expect(await checkHealth(target)).toBe('SERVING'), {
      timeout: 10_000,
      interval: 50,
    });
    const client = createQuotaClient({ target });
    clients.push(client);
    return { child, client, target };
  }

  it('serves leases on the memory store, reloads budgets (keeping the last good ones), and exits 0 on SIGTERM', async () => {
    await writeFile(budgetsFile, budgetsYaml(1));
    const { child, client } = await startServer(['--budgets', budgetsFile]);
    await client.acquire(acquireInput);
    await expect(client.acquire(acquireInput)).rejects.toBeInstanceOf(CapacityExhaustedError);

    await writeFile(budgetsFile, budgetsYaml(2));
    // The second slot appears once the change is reloaded.
    await vi.waitFor(() => client.acquire(acquireInput), { timeout: 5_000, interval: 50 });
    expect(logLines(child).some((entry) => entry.msg === 'budgets reloaded')).toBe(true);

    await writeFile(budgetsFile, 'kind: LLMProvider\nspec: [');
    await vi.waitFor(() => expect(logLines(child).some((entry) => entry.level === 'error')).toBe(true));
    // Still the last good budgets: two slots, both taken.
    await expect(client.acquire(acquireInput)).rejects.toBeInstanceOf(CapacityExhaustedError);
    expect((await client.usage('llm/acme')).providers[0]!.inFlight).toBe(2);

    child.process.kill('SIGTERM');
    expect(await child.exited).toBe(0);
    expect(logLines(child).map((entry) => entry.msg)).toEqual(
      expect.arrayContaining(['shutting down', 'stopped']),
    );
  });

  it('serves leases on Redis and exits 0 on SIGINT', async () => {
    await writeFile(budgetsFile, budgetsYaml(1));
    const { child, client } = await startServer([
      '--budgets',
      budgetsFile,
      '--store',
      'redis',
      '--redis-url',
      redisUrl(),
      '--redis-key-prefix',
      RUN_PREFIX,
    ]);
    const grant = await client.acquire(acquireInput);
    expect(grant.leaseId).toContain('llm/acme');
    expect((await admin.keys(`${RUN_PREFIX}*`)).length).toBeGreaterThan(0);
    const settled = await client.settle({
      leaseId: grant.leaseId,
      usage: { inputTokens: 5, outputTokens: 5 },
      outcome: 'ok',
    });
    expect(settled.status).toBe('settled');
    child.process.kill('SIGINT');
    expect(await child.exited).toBe(0);
  });
});
