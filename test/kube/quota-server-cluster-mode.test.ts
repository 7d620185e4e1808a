// The quota-server binary as it runs in a cluster: budgets published by the controller (from
// custom resources on the real API server) through Redis, and each Acquire checked against the
// caller's ServiceAccount token (TokenReview, as the `controller` user under deploy/rbac's rules).
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startQuotaServerProcess, type QuotaServerProcess } from '../../bench/lib/quota-server-process.ts';
import { CapacityExhaustedError, NotFoundError, PermissionDeniedError } from '../../common/errors/errors.ts';
import { createQuotaClient, type QuotaClient } from '../../common/grpc/quota-client.ts';
import type { AcquireInput } from '../../common/quota-api.ts';
import { redisUrl } from '../support/redis.ts';
import { createNamespace, eventually, setUpHarness, uniqueName, type Harness } from './controller-harness.ts';
import { kubeConfigFor } from './kube-config.ts';
import { controlPlane } from './test-context.ts';

const group = 'tokenlease.io';
const version = 'v1alpha1';
const platform = uniqueName('llm');
const tenant = uniqueName('team');
let h: Harness;
let server: QuotaServerProcess;
const clients: QuotaClient[] = [];

async function tokenFor(serviceAccount: string, audience = 'tokenlease'): Promise<string> {
  const answer = await h.core.createNamespacedServiceAccountToken({
    name: serviceAccount,
    namespace: tenant,
    body: { spec: { audiences: [audience], expirationSeconds: 600 } },
  });
  return answer.status!.token!;
}

function clientWith(token: string | undefined, transport: 'session' | 'unary' = 'session'): QuotaClient {
  const client = createQuotaClient({ target: server.target, transport, identityToken: () => token });
  clients.push(client);
  return client;
}

const call = (overrides: Partial<AcquireInput> = {}): AcquireInput => ({
  provider: `${platform}/glm`,
  model: 'glm-4.6',
  budget: `${tenant}/search`,
  inputTokens: 10,
  maxOutputTokens: 10,
  maxWaitMs: 0,
  ...overrides,
});

beforeAll(async () => {
  h = await setUpHarness();
  await createNamespace(platform);
  await createNamespace(tenant);
  for (const name of ['search-api', 'intruder']) {
    await h.core.createNamespacedServiceAccount({ namespace: tenant, body: { metadata: { name } } });
  }
  h.startController();
  const dir = mkdtempSync(join(tmpdir(), 'tokenlease-quota-kube-'));
  const kubeconfig = join(dir, 'kubeconfig');
  writeFileSync(kubeconfig, kubeConfigFor(controlPlane(), 'controller').exportConfig());
  server = await startQuotaServerProcess([
    '--budgets',
    'redis',
    '--store',
    'redis',
    '--redis-url',
    redisUrl(),
    '--redis-key-prefix',
    h.keyPrefix,
    '--identity',
    'kubernetes',
    '--kubeconfig',
    kubeconfig,
  ]);
  await h.objects.createNamespacedCustomObject({
    group,
    version,
    namespace: platform,
    plural: 'llmproviders',
    body: {
      apiVersion: `${group}/${version}`,
      kind: 'LLMProvider',
      metadata: { name: 'glm', namespace: platform },
      spec: {
        api: 'openai',
        flavor: 'glm',
        baseURL: 'https://open.bigmodel.cn/api/coding/paas/v4',
        allowedNamespaces: [tenant],
        limits: [{ dimension: 'concurrency', amount: 1 }],
      },
    },
  });
}, 120_000);

afterAll(async () => {
  clients.forEach((client) => client.close());
  await server?.stop();
  await h?.close();
});

describe('quota-server with --budgets redis and --identity kubernetes', () => {
  it('grants within 2 s of an LLMBudget being applied, only to the ServiceAccount it selects', async () => {
    const search = clientWith(await tokenFor('search-api'));
    await h.objects.createNamespacedCustomObject({
      group,
      version,
      namespace: tenant,
      plural: 'llmbudgets',
      body: {
        apiVersion: `${group}/${version}`,
        kind: 'LLMBudget',
        metadata: { name: 'search', namespace: tenant },
        spec: {
          providerRef: { name: 'glm', namespace: platform },
          workloads: { serviceAccounts: ['search-api'] },
        },
      },
    });
    const applied = Date.now();
    const grant = await eventually('a grant for the new budget', () => search.acquire(call()), 2_000);
    expect(Date.now() - applied).toBeLessThan(2_000);
    // The provider's concurrency of 1 is in force.
    await expect(search.acquire(call())).rejects.toBeInstanceOf(CapacityExhaustedError);
    await search.settle({
      leaseId: grant.leaseId,
      usage: { inputTokens: 10, outputTokens: 3 },
      outcome: 'ok',
    });

    // Another ServiceAccount of the same namespace, a token for another audience, and no token.
    const intruder = clientWith(await tokenFor('intruder'));
    await expect(intruder.acquire(call())).rejects.toBeInstanceOf(PermissionDeniedError);
    const wrongAudience = clientWith(await tokenFor('search-api', 'https://kubernetes.default.svc'), 'unary');
    await expect(wrongAudience.acquire(call())).rejects.toBeInstanceOf(PermissionDeniedError);
    await expect(clientWith(undefined).acquire(call())).rejects.toThrow(/no ServiceAccount token/);
  });

  it('enforces an edited limit within 2 s, and forgets a deleted budget', async () => {
    const search = clientWith(await tokenFor('search-api'), 'unary');
    const held = await eventually('a grant', () => search.acquire(call()), 2_000);
    await h.objects.patchNamespacedCustomObject({
      group,
      version,
      namespace: platform,
      plural: 'llmproviders',
      name: 'glm',
      body: [{ op: 'replace', path: '/spec/limits/0/amount', value: 2 }],
    });
    const edited = Date.now();
    const second = await eventually('a second slot after the edit', () => search.acquire(call()), 2_000);
    expect(Date.now() - edited).toBeLessThan(2_000);
    for (const lease of [held, second]) {
      await search.settle({
        leaseId: lease.leaseId,
        usage: { inputTokens: 1, outputTokens: 1 },
        outcome: 'ok',
      });
    }
    await h.objects.deleteNamespacedCustomObject({
      group,
      version,
      namespace: tenant,
      plural: 'llmbudgets',
      name: 'search',
    });
    await eventually(
      'the deleted budget to be unknown',
      async () => {
        const error = await search.acquire(call()).then(
          async (grant) => {
            await search.settle({
              leaseId: grant.leaseId,
              usage: { inputTokens: 0, outputTokens: 0 },
              outcome: 'ok',
            });
            return undefined;
          },
          (e: unknown) => e,
        );
        return error instanceof NotFoundError;
      },
      2_000,
    );
  });
});
