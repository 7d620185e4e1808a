// Smoke test of the test control plane: what issue 4's tests rely on works on the real
// kube-apiserver + etcd — CRDs with CEL validation, Leases, Events, RBAC with non-admin tokens.
import {
  AdmissionregistrationV1Api,
  ApiextensionsV1Api,
  AuthenticationV1Api,
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  EventsV1Api,
  RbacAuthorizationV1Api,
  V1MicroTime,
  VersionApi,
  type V1CustomResourceDefinition,
} from '@kubernetes/client-node';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { beforeAll, describe, expect, it } from 'vitest';
import { apiRefusal } from './api-error.ts';
import { kubeConfigFor } from './kube-config.ts';
import { controlPlane } from './test-context.ts';

const connection = controlPlane();
const admin = kubeConfigFor(connection, 'admin');
const namespace = `smoke-${randomBytes(4).toString('hex')}`;
const group = 'smoke.tokenlease.io';

/** Retries `probe` until it returns true; the API server applies CRDs and RBAC asynchronously. */
async function eventually(what: string, probe: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await probe()) return;
    await sleep(100);
  }
  throw new Error(`timed out waiting until ${what}`);
}

const widgetCrd: V1CustomResourceDefinition = {
  apiVersion: 'apiextensions.k8s.io/v1',
  kind: 'CustomResourceDefinition',
  metadata: { name: `widgets.${group}` },
  spec: {
    group,
    scope: 'Namespaced',
    names: { plural: 'widgets', singular: 'widget', kind: 'Widget', listKind: 'WidgetList' },
    versions: [
      {
        name: 'v1',
        served: true,
        storage: true,
        schema: {
          openAPIV3Schema: {
            type: 'object',
            properties: {
              spec: {
                type: 'object',
                required: ['min', 'max'],
                properties: { min: { type: 'integer' }, max: { type: 'integer' } },
                x_kubernetes_validations: [
                  { rule: 'self.min <= self.max', message: 'min must not exceed max', fieldPath: '.min' },
                ],
              },
            },
          },
        },
      },
    ],
  },
};

function widget(name: string, spec: Record<string, unknown>): object {
  return { apiVersion: `${group}/v1`, kind: 'Widget', metadata: { name, namespace }, spec };
}

beforeAll(async () => {
  await admin.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: namespace } } });
});

describe('test control plane', () => {
  it('serves Kubernetes v1.34 and knows who each token belongs to', async () => {
    const whoami = async (user: 'admin' | 'controller') =>
      (
        await kubeConfigFor(connection, user)
          .makeApiClient(AuthenticationV1Api)
          .createSelfSubjectReview({ body: {} })
      ).status?.userInfo;
    expect(await whoami('admin')).toMatchObject({
      username: 'admin',
      groups: expect.arrayContaining(['system:masters']),
    });
    const controller = await whoami('controller');
    expect(controller?.username).toBe('controller');
    expect(controller?.groups).not.toContain('system:masters');

    expect((await admin.makeApiClient(VersionApi).getCode()).gitVersion).toBe('v1.34.2');
  });

  it('installs a CRD whose CEL rule refuses an invalid object, naming the field', async () => {
    const crds = admin.makeApiClient(ApiextensionsV1Api);
    await crds.createCustomResourceDefinition({ body: widgetCrd });
    await eventually('the CRD is established', async () => {
      const crd = await crds.readCustomResourceDefinition({ name: `widgets.${group}` });
      return crd.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True') ?? false;
    });

    const objects = admin.makeApiClient(CustomObjectsApi);
    const create = (body: object) =>
      objects.createNamespacedCustomObject({ group, version: 'v1', namespace, plural: 'widgets', body });
    // Established can precede the first request being routed to the new resource by a moment.
    await eventually('the Widget resource is served', async () => {
      try {
        await create(widget('good', { min: 1, max: 5 }));
        return true;
      } catch (err) {
        if ((await apiRefusal(Promise.reject(err))).code === 404) return false;
        throw err;
      }
    });
    const stored = (await objects.getNamespacedCustomObject({
      group,
      version: 'v1',
      namespace,
      plural: 'widgets',
      name: 'good',
    })) as { spec: { min: number; max: number } };
    expect(stored.spec).toEqual({ min: 1, max: 5 });

    const cel = await apiRefusal(create(widget('inverted', { min: 9, max: 1 })));
    expect(cel.code).toBe(422);
    expect(cel.status.message).toContain('spec.min');
    expect(cel.status.message).toContain('min must not exceed max');
    expect(cel.status.details?.causes?.map((c) => c.field)).toContain('spec.min');

    const schema = await apiRefusal(create(widget('typed', { min: 1, max: 'lots' })));
    expect(schema.code).toBe(422);
    expect(schema.status.message).toContain('spec.max');
  });

  it('stores and updates a coordination.k8s.io Lease with microsecond times', async () => {
    const leases = admin.makeApiClient(CoordinationV1Api);
    // client-node's V1MicroTime is a Date with the microseconds padded as zeros when sent.
    const renewTime = new V1MicroTime('2030-01-02T03:04:05.123Z');
    const created = await leases.createNamespacedLease({
      namespace,
      body: {
        metadata: { name: 'smoke-leader' },
        spec: { holderIdentity: 'replica-a', leaseDurationSeconds: 15, renewTime, leaseTransitions: 0 },
      },
    });
    expect(created.spec?.holderIdentity).toBe('replica-a');
    // Read back, a MicroTime is NOT a Date despite its declared type: client-node 2 leaves it as
    // the server's string. Code that compares renew times (leader election) must parse it.
    expect(created.spec?.renewTime as unknown).toBe('2030-01-02T03:04:05.123000Z');

    const taken = await leases.replaceNamespacedLease({
      name: 'smoke-leader',
      namespace,
      body: { ...created, spec: { ...created.spec, holderIdentity: 'replica-b', leaseTransitions: 1 } },
    });
    expect(taken.spec?.holderIdentity).toBe('replica-b');

    // A write based on a stale resourceVersion loses: what leader election relies on.
    const stale = await apiRefusal(
      leases.replaceNamespacedLease({
        name: 'smoke-leader',
        namespace,
        body: { ...created, spec: { ...created.spec, holderIdentity: 'replica-c' } },
      }),
    );
    expect(stale.code).toBe(409);
  });

  it('records an events.k8s.io Event that the core API lists too', async () => {
    await admin.makeApiClient(EventsV1Api).createNamespacedEvent({
      namespace,
      body: {
        metadata: { name: 'smoke-event' },
        eventTime: new V1MicroTime(),
        reportingController: 'tokenlease.io/controller',
        reportingInstance: 'smoke-test',
        action: 'Reconcile',
        reason: 'BudgetExhausted',
        type: 'Warning',
        note: 'budget team-a used 100% of tokens per minute',
        regarding: { apiVersion: `${group}/v1`, kind: 'Widget', name: 'good', namespace },
      },
    });
    const events = await admin.makeApiClient(CoreV1Api).listNamespacedEvent({ namespace });
    expect(events.items.map((e) => [e.reason, e.message, e.involvedObject.name])).toContainEqual([
      'BudgetExhausted',
      'budget team-a used 100% of tokens per minute',
      'good',
    ]);
  });

  it('enforces RBAC on tokens outside system:masters', async () => {
    const nobody = kubeConfigFor(connection, 'nobody').makeApiClient(CoreV1Api);
    const forbidden = await apiRefusal(nobody.listNamespacedConfigMap({ namespace }));
    expect(forbidden.code).toBe(403);
    expect(forbidden.status.reason).toBe('Forbidden');
    expect(forbidden.status.message).toContain('User "nobody" cannot list resource "configmaps"');

    // A Role bound to `controller` grants it leases in this namespace, and nothing more.
    const rbac = admin.makeApiClient(RbacAuthorizationV1Api);
    await rbac.createNamespacedRole({
      namespace,
      body: {
        metadata: { name: 'lease-reader' },
        rules: [{ apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['get', 'list'] }],
      },
    });
    await rbac.createNamespacedRoleBinding({
      namespace,
      body: {
        metadata: { name: 'lease-reader' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'lease-reader' },
        subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: 'controller' }],
      },
    });
    const controller = kubeConfigFor(connection, 'controller');
    const leases = controller.makeApiClient(CoordinationV1Api);
    await eventually('the RoleBinding takes effect', async () => {
      try {
        await leases.listNamespacedLease({ namespace });
        return true;
      } catch (err) {
        if ((await apiRefusal(Promise.reject(err))).code === 403) return false;
        throw err;
      }
    });
    expect((await apiRefusal(leases.listNamespacedLease({ namespace: 'default' }))).code).toBe(403);
    expect(
      (await apiRefusal(controller.makeApiClient(CoreV1Api).listNamespacedSecret({ namespace }))).code,
    ).toBe(403);
    expect(
      (await apiRefusal(leases.deleteNamespacedLease({ name: 'smoke-leader', namespace }))).status.message,
    ).toContain('cannot delete resource "leases"');
  });

  it('calls a mutating admission webhook served on loopback, only for the namespaces it selects', async () => {
    const seen: string[] = [];
    const hook = createServer(connection.loopbackTls, (req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (chunk: string) => (body += chunk));
      req.on('end', () => {
        const review = JSON.parse(body) as {
          request: { uid: string; object: { metadata: { name: string } } };
        };
        seen.push(review.request.object.metadata.name);
        const patch = [
          { op: 'add', path: '/metadata/labels', value: { 'smoke.tokenlease.io/mutated': 'true' } },
        ];
        res.setHeader('content-type', 'application/json');
        res.end(
          JSON.stringify({
            apiVersion: 'admission.k8s.io/v1',
            kind: 'AdmissionReview',
            response: {
              uid: review.request.uid,
              allowed: true,
              patchType: 'JSONPatch',
              patch: Buffer.from(JSON.stringify(patch)).toString('base64'),
            },
          }),
        );
      });
    });
    await new Promise<void>((resolve) => hook.listen(0, '127.0.0.1', resolve));
    const { port } = hook.address() as AddressInfo;

    const registrations = admin.makeApiClient(AdmissionregistrationV1Api);
    const name = `smoke-${namespace}`;
    await registrations.createMutatingWebhookConfiguration({
      body: {
        metadata: { name },
        webhooks: [
          {
            name: 'label.smoke.tokenlease.io',
            admissionReviewVersions: ['v1'],
            sideEffects: 'None',
            failurePolicy: 'Fail',
            timeoutSeconds: 5,
            clientConfig: {
              url: `https://127.0.0.1:${port}/mutate`,
              caBundle: Buffer.from(connection.caData).toString('base64'),
            },
            namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': namespace } },
            rules: [
              { apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['configmaps'] },
            ],
          },
        ],
      },
    });
    try {
      const core = admin.makeApiClient(CoreV1Api);
      let created = 0;
      // The API server picks up a new webhook configuration from its informer, a moment later.
      await eventually('the webhook mutates a new ConfigMap', async () => {
        const cm = await core.createNamespacedConfigMap({
          namespace,
          body: { metadata: { name: `hooked-${created++}` } },
        });
        return cm.metadata?.labels?.['smoke.tokenlease.io/mutated'] === 'true';
      });
      expect(seen).toContain(`hooked-${created - 1}`);

      const elsewhere = await core.createNamespacedConfigMap({
        namespace: 'default',
        body: { metadata: { name: `not-hooked-${namespace}` } },
      });
      expect(elsewhere.metadata?.labels?.['smoke.tokenlease.io/mutated']).toBeUndefined();
      expect(seen).not.toContain(`not-hooked-${namespace}`);
    } finally {
      await registrations.deleteMutatingWebhookConfiguration({ name });
      hook.close();
    }
  });
});
