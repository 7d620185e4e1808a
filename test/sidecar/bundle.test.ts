/**
 * The sidecar as `npm run build` ships it: sidecar/main.ts bundled with the packages it uses
 * (scripts/bundle-sidecar.ts), run as a process the way bin/tokenlease.ts runs a command. Calls go
 * through it over the gRPC quota service (grpc-js and protobufjs inside the bundle) and with the
 * embedded engine (loaded from its own files); the tokens it reserves are the ones the provider
 * counts; the Redis response cache (ioredis and its store loaded on demand) answers a repeated
 * call; a bad flag is still a ConfigError of the one error module (exit 2).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { isBuiltin } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadBudgetFiles } from '../../common/budgets/load-budgets.ts';
import { createMemoryEngine, type LeaseEngine } from '../../controller/quota/engine/index.ts';
import { silentLogger, startQuotaServer, type QuotaServer } from '../../controller/quota/server/index.ts';
import { SIDECAR_NODE_OPTIONS } from '../../controller/k8s/webhook/inject.ts';
import { bundleSidecar } from '../../scripts/bundle-sidecar.ts';
import { startSimProvider, type SimProvider } from '../../sim-provider/index.ts';
import { redisUrl } from '../support/redis.ts';
import { ACCOUNTING_LIMITS, BUDGET_ID, engineState, eventually } from './harness.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
// Inside the repository, so the bundle finds node_modules (ioredis, undici's files) as dist/ does.
const OUT = join(ROOT, 'node_modules', '.cache', `tokenlease-sidecar-bundle-${process.pid}`);

/** What bin/tokenlease.ts does with a command module, with the bundle as the module. */
const RUNNER = `
const { ConfigError } = await import(${JSON.stringify(pathToFileURL(join(ROOT, 'common/errors/errors.ts')).href)});
const { run } = await import(${JSON.stringify(pathToFileURL(join(OUT, 'main.js')).href)});
try {
  process.exitCode = await run(process.argv.slice(1), process.env);
} catch (error) {
  const config = error instanceof ConfigError;
  process.stderr.write((config ? 'config error: ' : 'failed: ') + error.message + '\\n');
  process.exitCode = config ? 2 : 1;
}
`;

interface Sidecar {
  child: ChildProcess;
  url: string;
  stderr: () => string;
}

function spawnSidecar(args: string[]): { child: ChildProcess; stderr: () => string } {
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([key]) => !key.startsWith('TOKENLEASE_')),
  );
  const child = spawn(process.execPath, ['--input-type=module', '-e', RUNNER, '--', ...args], {
    env: { ...env, NODE_OPTIONS: SIDECAR_NODE_OPTIONS },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  return { child, stderr: () => stderr };
}

async function startSidecarProcess(args: string[]): Promise<Sidecar> {
  const { child, stderr } = spawnSidecar(['--listen', '127.0.0.1:0', ...args]);
  for (;;) {
    const line = stderr()
      .split('\n')
      .find((l) => l.includes('"listening"'));
    if (line) return { child, url: (JSON.parse(line) as { url: string }).url, stderr };
    if (child.exitCode !== null) throw new Error(`sidecar exited ${child.exitCode}:\n${stderr()}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const chat = (stream: boolean, extra: Record<string, unknown> = {}) =>
  JSON.stringify({
    ...extra,
    model: 'sim-model',
    max_tokens: 16,
    stream,
    ...(stream ? { stream_options: { include_usage: true } } : {}),
    messages: [
      { role: 'system', content: 'You are terse.' },
      { role: 'user', content: 'What does a quota controller do? Answer in one line, please. 配额' },
    ],
  });

async function call(
  url: string,
  stream: boolean,
  extra: Record<string, unknown> = {},
): Promise<{ status: number; text: string; cache: unknown }> {
  const response = await request(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: chat(stream, extra),
  });
  const text = await response.body.text();
  return { status: response.statusCode, text, cache: response.headers['x-tokenlease-cache'] };
}

describe('the bundled sidecar', () => {
  let files: string[];
  let dir: string;
  let budgetsFile: string;
  let sim: SimProvider;
  let engine: LeaseEngine;
  let server: QuotaServer;
  const sidecars: ChildProcess[] = [];

  beforeAll(async () => {
    files = await bundleSidecar({ root: ROOT, extension: '.ts', outDir: OUT });
    sim = await startSimProvider({ outputTokens: 8 });
    dir = await mkdtemp(join(tmpdir(), 'tokenlease-bundle-'));
    budgetsFile = join(dir, 'budgets.yaml');
    await writeFile(
      budgetsFile,
      `apiVersion: tokenlease.io/v1alpha1
kind: LLMProvider
metadata: {name: sim, namespace: llm}
spec:
  api: openai
  baseURL: ${sim.url}/v1
  limits: ${JSON.stringify(ACCOUNTING_LIMITS)}
---
apiVersion: tokenlease.io/v1alpha1
kind: LLMBudget
metadata: {name: app, namespace: team}
spec:
  providerRef: {name: sim, namespace: llm}
`,
    );
    engine = createMemoryEngine({ budgets: await loadBudgetFiles(budgetsFile) });
    server = await startQuotaServer({ engine, listen: '127.0.0.1:0', logger: silentLogger });
    await server.serving;
  });

  afterAll(async () => {
    for (const child of sidecars) if (child.exitCode === null) child.kill('SIGKILL');
    await server?.shutdown(1_000);
    await engine?.close();
    await sim?.close();
    await rm(OUT, { recursive: true, force: true });
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('is one module and a few chunks that import no package but ioredis', async () => {
    expect(files).toContain('main.js');
    expect(files.length).toBeLessThan(20);
    for (const file of files) {
      const code = await readFile(join(OUT, file), 'utf8');
      const specifiers = [
        ...code.matchAll(/^(?:import|export)\b[^;\n]*?\bfrom\s*"([^"]+)";/gm),
        ...code.matchAll(/^import\s*"([^"]+)";/gm),
        ...code.matchAll(/\bimport\(\s*"([^"]+)"\s*\)/g),
      ].map((m) => m[1]!);
      const packages = specifiers.filter((s) => !s.startsWith('.') && !isBuiltin(s));
      expect(
        packages.filter((s) => s !== 'ioredis'),
        file,
      ).toEqual([]);
      if (file === 'main.js') expect(specifiers).toContain('../../../common/errors/errors.ts');
    }
  });

  it('serves calls over the gRPC quota service, reserving the tokens the provider counts', async () => {
    const sidecar = await startSidecarProcess([
      '--budgets',
      budgetsFile,
      '--budget',
      BUDGET_ID,
      '--quota',
      `127.0.0.1:${server.port}`,
    ]);
    sidecars.push(sidecar.child);
    const plain = await call(sidecar.url, false);
    expect(plain.status, plain.text).toBe(200);
    expect(JSON.parse(plain.text)).toMatchObject({ object: 'chat.completion' });
    const streamed = await call(sidecar.url, true);
    expect(streamed.status, streamed.text).toBe(200);
    expect(streamed.text.trim().endsWith('data: [DONE]')).toBe(true);

    const prompts = sim.ledger.entries().map((entry) => entry.promptTokens);
    expect(prompts).toHaveLength(2);
    await eventually(async () => {
      expect(await engineState(engine)).toEqual({
        inFlight: 0,
        input: prompts[0]! + prompts[1]!,
        output: 16,
      });
    });
    const metrics = await request(`${sidecar.url}/metrics`);
    expect(await metrics.body.text()).toMatch(/^tokenlease_sidecar_requests_total\{.*\} 2$/m);

    sidecar.child.kill('SIGTERM');
    const [code] = await once(sidecar.child, 'exit');
    expect(code, sidecar.stderr()).toBe(0);
  });

  it('serves calls with the embedded engine, loaded from its own files', async () => {
    const sidecar = await startSidecarProcess([
      '--budgets',
      budgetsFile,
      '--budget',
      BUDGET_ID,
      '--quota',
      'embedded',
    ]);
    sidecars.push(sidecar.child);
    const answer = await call(sidecar.url, false);
    expect(answer.status, answer.text).toBe(200);
    sidecar.child.kill('SIGTERM');
    expect((await once(sidecar.child, 'exit'))[0]).toBe(0);
  });

  it('answers a repeated call from the Redis response cache, loaded on demand', async () => {
    const cachedBudgets = join(dir, 'cached.yaml');
    await writeFile(
      cachedBudgets,
      `${await readFile(budgetsFile, 'utf8')}  cache: {enabled: true, ttl: 1m}\n`,
    );
    const sidecar = await startSidecarProcess([
      '--budgets',
      cachedBudgets,
      '--budget',
      BUDGET_ID,
      '--quota',
      'embedded',
      '--cache-redis',
      redisUrl(),
    ]);
    sidecars.push(sidecar.child);
    // A prompt of this run only: the shared Redis may hold other runs' answers (they expire in 1m).
    const unique = { temperature: 0, seed: process.pid * 1_000 + (Date.now() % 1_000) };
    const before = sim.ledger.summary().total;
    const first = await call(sidecar.url, false, unique);
    expect(first.status, first.text).toBe(200);
    expect(first.cache).toBe('miss');
    await eventually(async () => {
      const again = await call(sidecar.url, false, unique);
      expect(again.cache).toBe('hit');
      expect(JSON.parse(again.text)).toEqual(JSON.parse(first.text));
    });
    expect(sim.ledger.summary().total - before).toBe(1);
    sidecar.child.kill('SIGTERM');
    expect((await once(sidecar.child, 'exit'))[0]).toBe(0);
  });

  it('refuses a bad flag with a ConfigError naming it (exit 2)', async () => {
    const { child, stderr } = spawnSidecar([
      '--budgets',
      budgetsFile,
      '--budget',
      BUDGET_ID,
      '--quota',
      'embedded',
      '--max-retries',
      'many',
    ]);
    sidecars.push(child);
    const [code] = await once(child, 'exit');
    expect(stderr()).toMatch(/^config error: --max-retries/m);
    expect(code).toBe(2);
  });
});
