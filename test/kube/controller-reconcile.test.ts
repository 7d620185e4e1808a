// The controller on the real API server, as the `controller` user under deploy/rbac's rules:
// custom resources reach what the quota service grants within 2 s, edits and deletions follow,
// a missing Secret shows as a condition and an Event, and status reports use after traffic.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CapacityExhaustedError } from '../../common/errors/errors.ts';
import type { Grant } from '../../common/quota-api.ts';
import { budgetKeys } from '../../common/budgets/redis-budget-source.ts';
import { findKubeTools } from './test-tools.ts';
import { controlPlane } from './test-context.ts';
import { createNamespace, eventually, setUpHarness, uniqueName, type Harness } from './controller-harness.ts';

const group = 'tokenlease.io';
const version = 'v1alpha1';
let h: Harness;
const platform = uniqueName('llm');
const tenant = uniqueName('team');

type Obj = {
  metadata: { generation?: number; finalizers?: string[]; resourceVersion?: string };
  status?: Record<string, unknown>;
};

const get = (plural: string, namespace: string, name: string) =>
  h.objects.getNamespacedCustomObject({ group, version, namespace, plural, name }) as Promise<Obj>;
const create = (plural: string, namespace: string, body: object) =>
  h.objects.createNamespacedCustomObject({ group, version, namespace, plural, body });
const patchSpec = (plural: string, namespace: string, name: string, patch: object[]) =>
  h.objects.patchNamespacedCustomObject({ group, version, namespace, plural, name, body: patch });

function provider(name: string, spec: Record<string, unknown>) {
  return {
    apiVersion: `${group}/${version}`,
    kind: 'LLMProvider',
    metadata: { name, namespace: platform },
    spec,
  };
}
function budget(name: string, namespace: string, spec: Record<string, unknown>) {
  return { apiVersion: `${group}/${version}`, kind: 'LLMBudget', metadata: { name, namespace }, spec };
}
function condition(object: Obj, type: string) {
  return (
    object.status?.conditions as
      Array<{ type: string; status: string; reason: string; observedGeneration?: number }> | undefined
  )?.find((c) => c.type === type);
}

async function acquire(providerName: string, budgetId: string): Promise<Grant | 'refused'> {
  try {
    return await h.quota.engine.acquire({
      provider: `${platform}/${providerName}`,
      budget: budgetId,
      model: 'm',
      inputTokens: 10,
      maxOutputTokens: 10,
      maxWaitMs: 0,
    });
  } catch (error) {
    if (error instanceof CapacityExhaustedError) return 'refused';
    throw error;
  }
}

beforeAll(async () => {
  h = await setUpHarness();
  await createNamespace(platform);
  await createNamespace(tenant);
  await h.core.createNamespacedSecret({
    namespace: platform,
    body: { metadata: { name: 'openai-key' }, stringData: { apiKey: 'sk-test' } },
  });
  h.startController();
});

afterAll(async () => {
  await h?.close();
});

describe('controller', () => {
  it('puts applied CRs into what the quota service grants within 2 s, and follows an edited limit', async () => {
    await create(
      'llmproviders',
      platform,
      provider('openai', {
        api: 'openai',
        baseURL: 'https://api.openai.com/v1',
        credentials: { secretRef: { name: 'openai-key', key: 'apiKey' } },
        limits: [{ dimension: 'requests', amount: 3, window: '1m' }],
        allowedNamespaces: [tenant],
      }),
    );
    await create(
      'llmbudgets',
      tenant,
      budget('search', tenant, { providerRef: { name: 'openai', namespace: platform } }),
    );
    const budgetId = `${tenant}/search`;

    await eventually(
      'the budget reaches the quota service',
      async () => h.quota.budgets().budgets.has(budgetId),
      2_000,
    );
    expect(h.quota.budgets().providers.get(`${platform}/openai`)?.spec.limits[0]?.amount).toBe(3);
    const grants = [
      await acquire('openai', budgetId),
      await acquire('openai', budgetId),
      await acquire('openai', budgetId),
    ];
    expect(grants.every((g) => g !== 'refused')).toBe(true);
    expect(await acquire('openai', budgetId)).toBe('refused');

    // The finalizer is there: it was added before the budget first reached the store.
    expect((await get('llmbudgets', tenant, 'search')).metadata.finalizers).toContain(
      'tokenlease.io/cleanup',
    );

    await patchSpec('llmproviders', platform, 'openai', [
      { op: 'replace', path: '/spec/limits/0/amount', value: 5 },
    ]);
    await eventually(
      'the raised limit reaches the quota service',
      async () => h.quota.budgets().providers.get(`${platform}/openai`)?.spec.limits[0]?.amount === 5,
      2_000,
    );
    expect(await acquire('openai', budgetId)).not.toBe('refused');
    expect(await acquire('openai', budgetId)).not.toBe('refused');
    expect(await acquire('openai', budgetId)).toBe('refused');
  });

  it('reports use, in-flight leases and Ready in status and in kubectl get; observedGeneration follows the spec', async () => {
    const budgetId = `${tenant}/search`;
    const status = await eventually('status shows the burst', async () => {
      const object = await get('llmproviders', platform, 'openai');
      const limits = object.status?.limits as Array<{ used: number; limit: number }> | undefined;
      return limits?.[0]?.used === 5 && object.status?.inFlight === 5 ? object : undefined;
    });
    expect(status.status?.summary).toEqual({ limits: '5 requests/1m', use: '100% requests/1m' });
    expect(condition(status, 'Ready')).toMatchObject({
      status: 'True',
      observedGeneration: status.metadata.generation,
    });
    expect(status.status?.observedGeneration).toBe(status.metadata.generation);

    const budgetStatus = await eventually('the budget shows it is exhausted', async () => {
      const object = await get('llmbudgets', tenant, 'search');
      return condition(object, 'Exhausted')?.status === 'True' && object.status?.inFlight === 5
        ? object
        : undefined;
    });
    expect(budgetStatus.status).toMatchObject({ provider: `${platform}/openai`, granted: 5 });
    const events = await h.core.listNamespacedEvent({ namespace: tenant });
    expect(events.items.map((e) => e.reason)).toContain('BudgetExhausted');

    const tools = await findKubeTools();
    if (!tools.kubectl) throw new Error('kubectl was not built');
    const { stdout } = await promisify(execFile)(tools.kubectl, [
      '--kubeconfig',
      controlPlane().kubeconfigPath,
      'get',
      'llmproviders,llmbudgets',
      '-A',
    ]);
    const providerLine = stdout.split('\n').find((l) => l.includes(platform) && l.includes('openai'));
    expect(providerLine).toMatch(/openai\s+5 requests\/1m\s+100% requests\/1m\s+5\s+0\s+True/);
    const budgetLine = stdout
      .split('\n')
      .find((l) => l.includes(budgetId.split('/')[0]!) && l.includes('search'));
    expect(budgetLine).toMatch(
      new RegExp(`${platform}/openai\\s+1\\s+5 requests/1m\\s+100% requests/1m\\s+5\\s+0\\s+True`),
    );
    expect(stdout.split('\n')[0]).toMatch(/API\s+LIMITS\s+USE\s+IN-FLIGHT\s+REFUSALS\s+READY/);

    const before = await get('llmbudgets', tenant, 'search');
    await patchSpec('llmbudgets', tenant, 'search', [{ op: 'add', path: '/spec/weight', value: 3 }]);
    const after = await eventually('observedGeneration follows', async () => {
      const object = await get('llmbudgets', tenant, 'search');
      return object.status?.observedGeneration === before.metadata.generation! + 1 ? object : undefined;
    });
    expect(condition(after, 'Ready')?.observedGeneration).toBe(after.metadata.generation);
    expect(h.quota.budgets().budgets.get(budgetId)?.spec.weight).toBe(3);
  });

  it('a missing Secret: condition and Event, not in the store; creating it makes the provider Ready', async () => {
    await create(
      'llmproviders',
      platform,
      provider('anthropic', {
        api: 'anthropic',
        baseURL: 'https://api.anthropic.com',
        credentials: { secretRef: { name: 'anthropic-key', key: 'apiKey' } },
        limits: [{ dimension: 'concurrency', amount: 2 }],
      }),
    );
    const object = await eventually('the provider reports the missing Secret', async () => {
      const o = await get('llmproviders', platform, 'anthropic');
      return condition(o, 'CredentialsResolved')?.reason === 'SecretMissing' ? o : undefined;
    });
    expect(condition(object, 'Ready')).toMatchObject({ status: 'False', reason: 'SecretMissing' });
    expect(h.quota.budgets().providers.has(`${platform}/anthropic`)).toBe(false);
    const events = await eventually('a SecretMissing Event', async () => {
      const list = await h.core.listNamespacedEvent({ namespace: platform });
      return list.items.find((e) => e.reason === 'SecretMissing' && e.involvedObject.name === 'anthropic');
    });
    expect(events.type).toBe('Warning');
    expect(events.message).toContain(`Secret ${platform}/anthropic-key does not exist`);

    await h.core.createNamespacedSecret({
      namespace: platform,
      body: { metadata: { name: 'anthropic-key' }, stringData: { apiKey: 'k' } },
    });
    await eventually(
      'the provider becomes Ready',
      async () => condition(await get('llmproviders', platform, 'anthropic'), 'Ready')?.status === 'True',
    );
    await eventually('it reaches the store', async () =>
      h.quota.budgets().providers.has(`${platform}/anthropic`),
    );
  });

  it('refuses a cross-namespace reference the provider does not allow', async () => {
    const other = uniqueName('other');
    await createNamespace(other);
    await create(
      'llmbudgets',
      other,
      budget('sneaky', other, { providerRef: { name: 'openai', namespace: platform } }),
    );
    const object = await eventually('the reference is refused', async () => {
      const o = await get('llmbudgets', other, 'sneaky');
      return condition(o, 'ResolvedRefs')?.reason === 'RefNotPermitted' ? o : undefined;
    });
    expect(condition(object, 'Ready')?.status).toBe('False');
    expect(object.metadata.finalizers ?? []).not.toContain('tokenlease.io/cleanup');
    expect(h.quota.budgets().budgets.has(`${other}/sneaky`)).toBe(false);
  });

  it('deleting a budget removes it from the store and its counters, then the finalizer', async () => {
    await create(
      'llmbudgets',
      tenant,
      budget('capped', tenant, {
        providerRef: { name: 'anthropic', namespace: platform },
        caps: [{ dimension: 'requests', amount: 100, window: '1h' }],
      }),
    );
    // anthropic does not allow the tenant's namespace yet.
    await patchSpec('llmproviders', platform, 'anthropic', [
      { op: 'add', path: '/spec/allowedNamespaces', value: [tenant] },
    ]);
    await eventually(
      'the budget reaches the store',
      async () => h.quota.budgets().budgets.has(`${tenant}/capped`),
      5_000,
    );
    const grant = await h.quota.engine.acquire({
      provider: `${platform}/anthropic`,
      budget: `${tenant}/capped`,
      model: 'm',
      inputTokens: 1,
      maxOutputTokens: 1,
      maxWaitMs: 0,
    });
    await h.quota.engine.settle({
      leaseId: grant.leaseId,
      usage: { inputTokens: 1, outputTokens: 1 },
      outcome: 'ok',
    });

    const redis = new (await import('ioredis')).Redis((await import('../support/redis.ts')).redisUrl());
    // The cap's window lives in the provider's main hash as w|b|<budget>|… fields.
    const capKeys = async () =>
      (await redis.hkeys(`${h.keyPrefix}{${platform}/anthropic}:m`)).filter((field) =>
        field.startsWith(`w|b|${tenant}/capped|`),
      ).length;
    expect(await capKeys()).toBeGreaterThan(0);

    await h.objects.deleteNamespacedCustomObject({
      group,
      version,
      namespace: tenant,
      plural: 'llmbudgets',
      name: 'capped',
    });
    await eventually('the budget object is gone (finalizer removed)', async () => {
      try {
        await get('llmbudgets', tenant, 'capped');
        return false;
      } catch (error) {
        return (error as { code?: number }).code === 404;
      }
    });
    expect(h.quota.budgets().budgets.has(`${tenant}/capped`)).toBe(false);
    expect(await capKeys()).toBe(0);
    expect(await redis.exists(budgetKeys(h.keyPrefix).key)).toBe(1);
    redis.disconnect();
  });
});
