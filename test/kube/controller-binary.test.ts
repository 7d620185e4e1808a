// `tokenlease controller` as a process, as the chart runs it: the controller user's kubeconfig,
// deploy/rbac's rules, short leader-election timings by flag. It leads, reconciles into the store,
// and on SIGTERM releases the Lease and exits 0.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CoordinationV1Api } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redisUrl } from '../support/redis.ts';
import {
  admin,
  createNamespace,
  eventually,
  setUpHarness,
  uniqueName,
  type Harness,
} from './controller-harness.ts';
import { kubeConfigFor } from './kube-config.ts';
import { controlPlane } from './test-context.ts';

const CLI = fileURLToPath(new URL('../../bin/tokenlease.ts', import.meta.url));
let h: Harness;
let dir: string;
let child: ChildProcess | undefined;
const platform = uniqueName('llm');

beforeAll(async () => {
  h = await setUpHarness();
  await createNamespace(platform);
  dir = await mkdtemp(join(tmpdir(), 'tokenlease-controller-'));
});

afterAll(async () => {
  child?.kill('SIGKILL');
  await rm(dir, { recursive: true, force: true });
  await h?.close();
});

describe('tokenlease controller (the binary)', () => {
  it('leads, reconciles into the store, and releases the Lease on SIGTERM', async () => {
    const kubeconfig = join(dir, 'controller.kubeconfig');
    await writeFile(kubeconfig, kubeConfigFor(controlPlane(), 'controller').exportConfig(), { mode: 0o600 });
    let stderr = '';
    child = spawn(
      process.execPath,
      [
        CLI,
        'controller',
        '--kubeconfig',
        kubeconfig,
        '--namespace',
        h.namespace,
        '--identity',
        'binary-1',
        '--leader-elect-lease-duration',
        '3s',
        '--leader-elect-renew-deadline',
        '2s',
        '--leader-elect-retry-period',
        '250ms',
        '--resync',
        '500ms',
        '--webhook-listen',
        'off',
      ],
      {
        env: { ...process.env, TOKENLEASE_REDIS_URL: redisUrl(), TOKENLEASE_REDIS_KEY_PREFIX: h.keyPrefix },
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child!.once('exit', (code) => resolve(code)));

    const leases = admin().makeApiClient(CoordinationV1Api);
    const holder = async () =>
      (await leases.readNamespacedLease({ name: 'tokenlease-controller', namespace: h.namespace })).spec
        ?.holderIdentity;
    await eventually('the binary leads', async () => (await holder()) === 'binary-1', 20_000);

    await h.objects.createNamespacedCustomObject({
      group: 'tokenlease.io',
      version: 'v1alpha1',
      namespace: platform,
      plural: 'llmproviders',
      body: {
        apiVersion: 'tokenlease.io/v1alpha1',
        kind: 'LLMProvider',
        metadata: { name: 'deepseek' },
        spec: {
          api: 'openai',
          baseURL: 'https://api.deepseek.com',
          limits: [{ dimension: 'concurrency', amount: 3 }],
        },
      },
    });
    await eventually(
      'the provider reaches the store',
      async () => h.quota.budgets().providers.has(`${platform}/deepseek`),
      2_000,
    );

    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(await holder()).toBe('');
    expect(stderr).toContain('"msg":"started leading"');
    expect(stderr).toContain('"msg":"stopped"');
  });
});
