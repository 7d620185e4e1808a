/**
 * `tokenlease status` against a running `tokenlease quota-server` (a child process, on Redis, with
 * the example budgets): the table and the JSON show what the service holds, --watch refreshes
 * until interrupted, and an unreachable service or a bad flag is reported.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startQuotaServerProcess, type QuotaServerProcess } from '../../bench/lib/quota-server-process.ts';
import { createQuotaClient, type QuotaClient } from '../../common/grpc/quota-client.ts';
import type { UsageSnapshot } from '../../common/quota-api.ts';
import { redisUrl } from '../support/redis.ts';

const CLI = fileURLToPath(new URL('../../bin/tokenlease.ts', import.meta.url));
const BUDGETS = fileURLToPath(new URL('../../examples/budgets/', import.meta.url));
const GLM = 'llm-platform/zhipu-coding-pro';

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function status(args: string[], options: { stopAfter?: (stdout: string) => boolean } = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, 'status', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      if (options.stopAfter?.(stdout)) child.kill('SIGINT');
    });
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('tokenlease status against a running quota service', () => {
  const prefix = `tl-status-test:${randomBytes(4).toString('hex')}:`;
  let server: QuotaServerProcess;
  let client: QuotaClient;
  const leases: string[] = [];

  beforeAll(async () => {
    server = await startQuotaServerProcess([
      '--budgets',
      BUDGETS,
      '--store',
      'redis',
      '--redis-url',
      redisUrl(),
      '--redis-key-prefix',
      prefix,
    ]);
    client = createQuotaClient({ target: server.target });
    // Two calls in flight for code-review, one for the IDE assistant.
    for (const budget of ['dev-tools/code-review', 'dev-tools/code-review', 'dev-tools/ide-assistant']) {
      const grant = await client.acquire({
        provider: GLM,
        model: 'glm-4.6',
        budget,
        inputTokens: 100,
        maxOutputTokens: 200,
        maxWaitMs: 1_000,
      });
      leases.push(grant.leaseId);
    }
  });

  afterAll(async () => {
    for (const leaseId of leases) {
      await client
        ?.settle({ leaseId, usage: { inputTokens: 100, outputTokens: 50 }, outcome: 'ok' })
        .catch(() => {});
    }
    client?.close();
    await server?.stop();
    const redis = new Redis(redisUrl());
    try {
      const keys = await redis.keys(`${prefix}*`);
      if (keys.length > 0) await redis.del(...keys);
    } finally {
      redis.disconnect();
    }
  });

  it('prints every provider with its limits, in flight per budget and use against the limit', async () => {
    const result = await status(['--quota', server.target]);
    expect(result.code, result.stderr).toBe(0);
    for (const provider of [
      'llm-platform/anthropic',
      'llm-platform/deepseek',
      'llm-platform/openai-prod',
      GLM,
    ]) {
      expect(result.stdout).toContain(`PROVIDER ${provider}`);
    }
    const glm = result.stdout.slice(result.stdout.indexOf(`PROVIDER ${GLM}`));
    expect(glm).toMatch(/^PROVIDER llm-platform\/zhipu-coding-pro\s+in flight 3\s+waiting 0\s+open/);
    expect(glm).toMatch(/concurrency\s+provider\s+3\s+5\s+5\s+60%/);
    expect(glm).toMatch(/requests\/5h\s+provider\s+3\s+600\s+600\s+1%/);
    // code-review's own cap, counted separately.
    expect(glm).toMatch(/requests\/5h\s+dev-tools\/code-review\s+2\s+200\s+200\s+1%/);
    expect(glm).toMatch(/dev-tools\/code-review\s+2\s+0\s+2\s+0\s+-/);
    expect(glm).toMatch(/dev-tools\/ide-assistant\s+1\s+0\s+1\s+0\s+-/);
  });

  it("--output json is the service's usage snapshot; --provider narrows it", async () => {
    const result = await status(['--quota', server.target, '--output', 'json', '--provider', GLM]);
    expect(result.code, result.stderr).toBe(0);
    const printed = JSON.parse(result.stdout) as UsageSnapshot;
    const direct = await client.usage(GLM);
    expect(printed.providers).toEqual(direct.providers);
    expect(printed.providers.map((provider) => provider.provider)).toEqual([GLM]);
    expect(printed.providers[0]!.inFlight).toBe(3);
  });

  it('--watch refreshes until interrupted, then exits 0', async () => {
    const result = await status(['--quota', server.target, '--watch', '--interval', '250ms', '-o', 'json'], {
      stopAfter: (stdout) => stdout.split('\n').filter((line) => line.startsWith('{')).length >= 3,
    });
    expect(result.code, result.stderr).toBe(0);
    const snapshots = result.stdout
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as UsageSnapshot);
    expect(snapshots.length).toBeGreaterThanOrEqual(3);
    // Each refresh is a new reading of the store's clock.
    expect(snapshots[1]!.nowMs).toBeGreaterThan(snapshots[0]!.nowMs);
  });

  it('a settled lease shows up at once: in flight goes down, the refusal class is counted', async () => {
    await client.settle({
      leaseId: leases.shift()!,
      usage: { inputTokens: 100, outputTokens: 0 },
      outcome: 'refusedConcurrency',
    });
    const result = await status(['--quota', server.target, '--provider', GLM]);
    expect(result.stdout).toMatch(/in flight 2/);
    expect(result.stdout).toMatch(/dev-tools\/code-review\s+1\s+0\s+2\s+0\s+refusedConcurrency=1/);
  });

  it('an unreachable service is exit 1 with the address; a bad flag is exit 2 naming it', async () => {
    const down = await status(['--quota', '127.0.0.1:1']);
    expect(down.code).toBe(1);
    expect(down.stderr).toContain('cannot read usage from the quota service at 127.0.0.1:1');
    const bad = await status(['--output', 'yaml']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('tokenlease status: --output: must be table or json');
  });
});
