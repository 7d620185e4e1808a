// The generated CRDs on the real API server: the example objects are accepted (with defaults
// applied) and each invalid one is refused by the API server itself, naming the field.
import { CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { randomBytes } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { apiRefusal } from './api-error.ts';
import { INVALID_CASES, VALID_OBJECTS, type Obj } from './crd-examples.ts';
import { kubeConfigFor } from './kube-config.ts';
import { controlPlane } from './test-context.ts';
import { installCrds } from './tokenlease-crds.ts';

const admin = kubeConfigFor(controlPlane(), 'admin');
const objects = admin.makeApiClient(CustomObjectsApi);
const namespace = `crd-${randomBytes(4).toString('hex')}`;

function create(object: Obj) {
  const plural = object.kind === 'LLMProvider' ? 'llmproviders' : 'llmbudgets';
  const body = { ...object, metadata: { ...(object.metadata as Obj), namespace } };
  return objects.createNamespacedCustomObject({
    group: 'tokenlease.io',
    version: 'v1alpha1',
    namespace,
    plural,
    body,
  }) as Promise<Obj>;
}

beforeAll(async () => {
  await installCrds(admin);
  await admin.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: namespace } } });
});

describe('tokenlease CRDs on the API server', () => {
  it('accept the example objects and apply the schema defaults', async () => {
    for (const object of VALID_OBJECTS) await create(object);
    const stored = (await objects.getNamespacedCustomObject({
      group: 'tokenlease.io',
      version: 'v1alpha1',
      namespace,
      plural: 'llmbudgets',
      name: 'batch',
    })) as { spec: Record<string, unknown> };
    expect(stored.spec).toMatchObject({ caps: [], priority: 7, weight: 0.5 });
    const provider = (await objects.getNamespacedCustomObject({
      group: 'tokenlease.io',
      version: 'v1alpha1',
      namespace,
      plural: 'llmproviders',
      name: 'anthropic',
    })) as { spec: Record<string, unknown> };
    expect(provider.spec).toMatchObject({
      failureMode: 'closed',
      leaseTimeout: '2m',
      defaultMaxOutputTokens: 4096,
    });
  });

  it(`refuses ${INVALID_CASES.length} invalid objects itself, naming the field`, async () => {
    expect(INVALID_CASES.length).toBeGreaterThanOrEqual(10);
    const seen: string[] = [];
    for (const { what, object, field } of INVALID_CASES) {
      const refusal = await apiRefusal(create(object));
      expect(refusal.code, what).toBe(422);
      expect(refusal.status.message, what).toContain(field);
      seen.push(`${what}: ${refusal.status.message}`);
    }
    expect(seen).toHaveLength(INVALID_CASES.length);
  });
});
