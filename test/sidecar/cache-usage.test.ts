/**
 * The response cache's savings reach GetUsage and `tokenlease status`: a quota-server process on
 * Redis, a sidecar process with --cache-redis on the same Redis, the official openai client.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import OpenAI from 'openai';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startQuotaServerProcess, type QuotaServerProcess } from '../../bench/lib/quota-server-process.ts';
import { createQuotaClient, type QuotaClient } from '../../common/grpc/quota-client.ts';
import { startSimProvider, type SimProvider } from '../../sim-provider/index.ts';
import { redisUrl } from '../support/redis.ts';
import { eventually } from './harness.ts';

const CLI = fileURLToPath(new URL('../../bin/tokenlease.ts', import.meta.url));
const run = randomBytes(4).toString('hex');
/** Names unique to this run: the cache's keys (fixed prefix tl:cache:) carry them. */
const NAMESPACE = `cache-usage-${run}`;
const PROVIDER = `${NAMESPACE}/sim`;
const BUDGET = `${NAMESPACE}/app`;
const quotaPrefix = `tl-cache-usage-test:${run}:`;

let sim: SimProvider;
let server: QuotaServerProcess;
let sidecar: ChildProcess;
let sidecarUrl: string;
let client: QuotaClient;

function budgetsYaml(simUrl: string): string {
  return `
apiVersion: tokenlease.io/v1alpha1
kind: LLMProvider
metadata: {name: sim, namespace: ${NAMESPACE}}
spec:
  api: openai
  baseURL: ${simUrl}/v1
  limits:
    - {dimension: requests, amount: 1000, window: 1m}
---
apiVersion: tokenlease.io/v1alpha1
kind: LLMBudget
metadata: {name: app, namespace: ${NAMESPACE}}
spec:
  providerRef: {name: sim}
  cache: {enabled: true}
`;
}

function startSidecarProcess(args: string[]): Promise<string> {
  sidecar = spawn(process.execPath, [CLI, 'sidecar', '--listen', '127.0.0.1:0', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  return new Promise((resolve, reject) => {
    createInterface({ input: sidecar.stderr! }).on('line', (line) => {
      lines.push(line);
      if (line.includes('"listening"')) resolve((JSON.parse(line) as { url: string }).url);
    });
    sidecar.once('exit', (code) => reject(new Error(`sidecar exited with ${code}:\n${lines.join('\n')}`)));
  });
}

function status(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, 'status', ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    let stdout = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.once('error', reject);
    child.once('close', () => resolve(stdout));
  });
}

beforeAll(async () => {
  sim = await startSimProvider({ models: [], outputTokens: 9 });
  const file = join(mkdtempSync(join(tmpdir(), 'tokenlease-cache-usage-')), 'budgets.yaml');
  writeFileSync(file, budgetsYaml(sim.url));
  server = await startQuotaServerProcess([
    '--budgets',
    file,
    '--store',
    'redis',
    '--redis-url',
    redisUrl(),
    '--redis-key-prefix',
    quotaPrefix,
  ]);
  client = createQuotaClient({ target: server.target });
  sidecarUrl = await startSidecarProcess([
    '--budgets',
    file,
    '--budget',
    BUDGET,
    '--quota',
    server.target,
    // Spare leases are grants too (spare-leases.test.ts): without them, granted counts the calls.
    '--spare-leases',
    '0',
    '--cache-redis',
    redisUrl(),
  ]);
});

afterAll(async () => {
  if (sidecar && sidecar.exitCode === null) {
    const exited = new Promise((resolve) => sidecar.once('exit', resolve));
    sidecar.kill('SIGTERM');
    await exited;
  }
  client?.close();
  await server?.stop();
  await sim?.close();
  const redis = new Redis(redisUrl());
  const keys = [...(await redis.keys(`${quotaPrefix}*`)), ...(await redis.keys(`tl:cache:*${NAMESPACE}*`))];
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
});

it('GetUsage and tokenlease status show the calls and tokens the cache saved a budget', async () => {
  const openai = new OpenAI({ baseURL: `${sidecarUrl}/v1`, apiKey: 'k', maxRetries: 0 });
  const body = {
    model: 'sim-model',
    temperature: 0,
    messages: [{ role: 'user' as const, content: 'usage?' }],
  };
  const first = await openai.chat.completions.create(body);
  for (let i = 0; i < 2; i++) {
    const again = await openai.chat.completions.create(body).asResponse();
    expect(again.headers.get('x-tokenlease-cache')).toBe('hit');
  }
  expect(sim.ledger.summary().total).toBe(1);
  const usage = first.usage!;
  await eventually(async () => {
    const snapshot = await client.usage(PROVIDER);
    const budget = snapshot.providers[0]?.budgets.find((b) => b.budget === BUDGET);
    expect(budget?.granted).toBe(1);
    expect(budget?.cache).toEqual({
      hits: 2,
      inputTokens: 2 * usage.prompt_tokens,
      outputTokens: 2 * usage.completion_tokens,
    });
  });
  const table = await status(['--quota', server.target, '--provider', PROVIDER]);
  expect(table).toMatch(/CACHE HITS\s+TOKENS SAVED/);
  expect(table).toMatch(new RegExp(`${BUDGET}\\s+0\\s+0\\s+1\\s+0\\s+2\\s+${2 * usage.total_tokens}\\s`));
});
