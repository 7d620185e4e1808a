// Two controller replicas on one coordination.k8s.io Lease: one leads and reconciles; when it
// stops the other takes over within the lease duration, and after a leader that vanished without
// releasing the Lease, once the lease duration has passed.
import { CoordinationV1Api, V1MicroTime } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kubeConfigFor } from './kube-config.ts';
import { controlPlane } from './test-context.ts';
import { createNamespace, eventually, setUpHarness, uniqueName, type Harness } from './controller-harness.ts';

let h: Harness;
const platform = uniqueName('llm');
const LEASE_MS = 3_000;

const leases = () => kubeConfigFor(controlPlane(), 'admin').makeApiClient(CoordinationV1Api);
const holder = async () =>
  (await leases().readNamespacedLease({ name: 'tokenlease-controller', namespace: h.namespace })).spec
    ?.holderIdentity;

function provider(name: string) {
  return {
    apiVersion: 'tokenlease.io/v1alpha1',
    kind: 'LLMProvider',
    metadata: { name, namespace: platform },
    spec: {
      api: 'openai',
      baseURL: 'https://api.openai.com/v1',
      limits: [{ dimension: 'concurrency', amount: 1 }],
    },
  };
}

beforeAll(async () => {
  h = await setUpHarness();
  await createNamespace(platform);
});

afterAll(async () => {
  await h?.close();
});

describe('leader election', () => {
  it('one of two replicas leads and reconciles; stopping it hands over within the lease duration', async () => {
    const a = h.startController('replica-a');
    await eventually('replica-a leads', async () => a.isLeader);
    const b = h.startController('replica-b');
    expect(await holder()).toBe('replica-a');

    await h.objects.createNamespacedCustomObject({
      group: 'tokenlease.io',
      version: 'v1alpha1',
      namespace: platform,
      plural: 'llmproviders',
      body: provider('first'),
    });
    await eventually('the leader publishes it', async () =>
      h.quota.budgets().providers.has(`${platform}/first`),
    );
    expect(a.published?.providers.has(`${platform}/first`)).toBe(true);
    // The follower campaigns only: it never reconciled, so it has published nothing.
    expect(b.isLeader).toBe(false);
    expect(b.published).toBeUndefined();

    const stoppedAt = Date.now();
    await a.stop();
    await eventually('replica-b leads', async () => b.isLeader, LEASE_MS);
    const takeoverMs = Date.now() - stoppedAt;
    expect(takeoverMs).toBeLessThan(LEASE_MS);
    expect(await holder()).toBe('replica-b');

    await h.objects.createNamespacedCustomObject({
      group: 'tokenlease.io',
      version: 'v1alpha1',
      namespace: platform,
      plural: 'llmproviders',
      body: provider('second'),
    });
    await eventually('the new leader reconciles', async () =>
      h.quota.budgets().providers.has(`${platform}/second`),
    );
    await b.stop();
  });

  it('takes over from a leader that vanished without releasing, once its lease has run out', async () => {
    // A holder that will never renew: as if its pod were killed.
    const current = await leases().readNamespacedLease({
      name: 'tokenlease-controller',
      namespace: h.namespace,
    });
    await leases().replaceNamespacedLease({
      name: 'tokenlease-controller',
      namespace: h.namespace,
      body: {
        ...current,
        spec: {
          ...current.spec,
          holderIdentity: 'crashed',
          leaseDurationSeconds: LEASE_MS / 1000,
          renewTime: new V1MicroTime(),
        },
      },
    });
    const c = h.startController('replica-c');
    const startedAt = Date.now();
    await eventually('replica-c leads', async () => c.isLeader, LEASE_MS * 2);
    // It waited for the lease to run out on its own clock, and not much longer.
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(LEASE_MS);
    expect(await holder()).toBe('replica-c');
  });
});
