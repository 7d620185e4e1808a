/**
 * The demo's other paths: on Redis with its own simulated-provider process (the keys it wrote are
 * gone afterwards), and bad flags refused with exit 2 naming the flag.
 */
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redisUrl } from '../support/redis.ts';
import { runDemo } from './demo-run.ts';

describe('tokenlease demo options', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tokenlease-demo-opts-'));
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('--redis: the same demo on Redis, two tenants, leaving no keys behind', async () => {
    const run = await runDemo(['--duration', '3', '--tenants', '2', '--redis', redisUrl()], dir);
    expect(run.code, run.stderr).toBe(0);
    expect(run.summary).toMatchObject({ store: 'redis', embeddedProvider: true, flavour: 'glm' });
    const { tokenlease, direct } = run.summary!.phases;
    expect(tokenlease.tenants.map((tenant) => tenant.name)).toEqual(['search', 'chat']);
    expect(tokenlease.ledger.refused).toBe(0);
    expect(tokenlease.ledger.ok).toBe(tokenlease.calls.ok);
    expect(direct.ledger.ok).toBe(direct.calls.ok);
    // The default picture: tokenlease-demo.svg in the working directory.
    expect(run.summary!.picture).toBe(join(dir, 'tokenlease-demo.svg'));
    expect((await stat(run.summary!.picture)).size).toBeGreaterThan(1000);
    const redis = new Redis(redisUrl());
    try {
      expect(await redis.keys('tokenlease-demo:*')).toEqual([]);
    } finally {
      redis.disconnect();
    }
  }, 90_000);

  it('--provider-flavour openai: refusals of the OpenAI kind without tokenlease, none with it', async () => {
    const run = await runDemo(
      ['--duration', '3', '--provider-flavour', 'openai', '--picture', join(dir, 'openai.svg')],
      dir,
    );
    expect(run.code, run.stderr).toBe(0);
    const { tokenlease, direct } = run.summary!.phases;
    expect(run.summary!.binding).toMatch(/^(requests|totalTokens)\//);
    expect(tokenlease.ledger.refused).toBe(0);
    expect(Object.keys(direct.ledger.refusedByCode)).toEqual(['rate_limit_exceeded']);
  }, 90_000);

  it.each([
    [['--tenants', '0'], '--tenants'],
    [['--duration', 'forever'], '--duration'],
    [['--provider-flavour', 'gemini'], '--provider-flavour'],
    [['--redis', 'localhost'], '--redis'],
    [['--picture', 'x.png'], '--picture'],
  ])('%j: exit 2 naming %s', async (args, flag) => {
    const run = await runDemo(args, dir);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(`tokenlease demo: ${flag}:`);
  });

  it('--help describes every flag and exits 0', async () => {
    const run = await runDemo(['--help'], dir);
    expect(run.code).toBe(0);
    for (const flag of [
      '--duration',
      '--tenants',
      '--provider-flavour',
      '--redis',
      '--picture',
      '--provider-url',
    ]) {
      expect(run.stdout).toContain(flag);
    }
  });
});
