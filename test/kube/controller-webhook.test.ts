// The sidecar injector on the real API server: the controller's own serving certificate and CA
// bundle (written under deploy/rbac's rules), a Pod created through the API with the annotation
// comes back with the sidecar and the key mounted in the sidecar only, one without is untouched,
// and a webhook that is down blocks nobody.
import {
  AdmissionregistrationV1Api,
  CoreV1Api,
  loadYaml,
  type V1MutatingWebhookConfiguration,
  type V1Pod,
} from '@kubernetes/client-node';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../controller/quota/server/logger.ts';
import { ensureCaBundle } from '../../controller/k8s/webhook/ca-bundle.ts';
import { ensureServingCert } from '../../controller/k8s/webhook/serving-cert.ts';
import {
  MUTATE_PATH,
  startWebhookServer,
  type WebhookServer,
} from '../../controller/k8s/webhook/webhook-server.ts';
import { apiRefusal } from './api-error.ts';
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

const WEBHOOK_YAML = fileURLToPath(
  new URL('../../deploy/webhook/mutating-webhook-configuration.yaml', import.meta.url),
);
let h: Harness;
let server: WebhookServer;
const team = uniqueName('search');
const outsider = uniqueName('plain');
const configName = 'tokenlease-sidecar-injector';

function pod(name: string, annotations: Record<string, string>, serviceAccountName = 'search-api'): V1Pod {
  return {
    metadata: { name, annotations },
    spec: {
      serviceAccountName,
      containers: [
        {
          name: 'app',
          image: 'registry.example/app:1',
          env: [{ name: 'OPENAI_BASE_URL', value: 'https://api.openai.com/v1' }],
        },
      ],
    },
  };
}

beforeAll(async () => {
  h = await setUpHarness();
  await createNamespace(team, { 'tokenlease.io/injection': 'enabled' });
  await createNamespace(outsider);
  const core = admin().makeApiClient(CoreV1Api);
  await core.createNamespacedSecret({
    namespace: team,
    body: { metadata: { name: 'openai-key' }, stringData: { apiKey: 'sk-test' } },
  });
  for (const body of [
    {
      kind: 'LLMProvider',
      plural: 'llmproviders',
      name: 'openai',
      spec: {
        api: 'openai',
        baseURL: 'https://api.openai.com/v1',
        credentials: { secretRef: { name: 'openai-key', key: 'apiKey' } },
        limits: [{ dimension: 'concurrency', amount: 4 }],
      },
    },
    {
      kind: 'LLMBudget',
      plural: 'llmbudgets',
      name: 'search',
      spec: { providerRef: { name: 'openai' }, workloads: { serviceAccounts: ['search-api'] } },
    },
  ]) {
    await h.objects.createNamespacedCustomObject({
      group: 'tokenlease.io',
      version: 'v1alpha1',
      namespace: team,
      plural: body.plural,
      body: {
        apiVersion: 'tokenlease.io/v1alpha1',
        kind: body.kind,
        metadata: { name: body.name },
        spec: body.spec,
      },
    });
  }
  h.startController();
  await eventually('the budget is in the store', async () => h.quota.budgets().budgets.has(`${team}/search`));

  // As the controller does at start: its certificate in its namespace, then the CA bundle.
  const controller = kubeConfigFor(controlPlane(), 'controller');
  const cert = await ensureServingCert({
    core: controller.makeApiClient(CoreV1Api),
    namespace: h.namespace,
    secretName: 'tokenlease-webhook-cert',
    names: ['tokenlease-controller.tokenlease-system.svc', '127.0.0.1'],
  });
  server = await startWebhookServer({
    listen: { host: '127.0.0.1', port: 0 },
    cert,
    budgets: () => h.quota.budgets(),
    injection: {
      image: 'registry.example/tokenlease:test',
      port: 8089,
      quotaAddress: 'tokenlease-quota.tokenlease-system:7070',
      audience: 'tokenlease',
      tokenExpirationSeconds: 3600,
    },
    logger: silentLogger,
  });
  // The shipped configuration, reached by URL here (there is no Service routing without kube-proxy).
  const shipped = loadYaml<V1MutatingWebhookConfiguration>(await readFile(WEBHOOK_YAML, 'utf8'));
  const webhooks = shipped.webhooks!.map((w) => ({
    ...w,
    clientConfig: { url: `https://127.0.0.1:${server.port}${MUTATE_PATH}` },
  }));
  await admin()
    .makeApiClient(AdmissionregistrationV1Api)
    .createMutatingWebhookConfiguration({ body: { ...shipped, webhooks } });
  expect(
    await ensureCaBundle(controller.makeApiClient(AdmissionregistrationV1Api), configName, cert.caPem),
  ).toBe(1);
  expect(
    await ensureCaBundle(controller.makeApiClient(AdmissionregistrationV1Api), configName, cert.caPem),
  ).toBe(0);
  // The second replica reads the same certificate instead of issuing another.
  const again = await ensureServingCert({
    core: controller.makeApiClient(CoreV1Api),
    namespace: h.namespace,
    secretName: 'tokenlease-webhook-cert',
    names: ['tokenlease-controller.tokenlease-system.svc', '127.0.0.1'],
  });
  expect(again.caPem).toBe(cert.caPem);
});

afterAll(async () => {
  await server?.close();
  await admin()
    .makeApiClient(AdmissionregistrationV1Api)
    .deleteMutatingWebhookConfiguration({ name: configName })
    .catch(() => {});
  await h?.close();
});

describe('sidecar injection', () => {
  it('injects the sidecar into an annotated pod, with the key mounted into the sidecar only', async () => {
    const core = admin().makeApiClient(CoreV1Api);
    const created = await eventually('the webhook answers (the CA bundle is in place)', async () =>
      core.createNamespacedPod({
        namespace: team,
        body: pod(uniqueName('app'), { 'tokenlease.io/inject': 'true' }),
      }),
    );
    const sidecar = created.spec?.initContainers?.find((c) => c.name === 'tokenlease-sidecar');
    expect(sidecar).toBeDefined();
    expect(sidecar?.restartPolicy).toBe('Always');
    expect(sidecar?.env).toEqual(
      expect.arrayContaining([
        { name: 'TOKENLEASE_BUDGET', value: `${team}/search` },
        { name: 'TOKENLEASE_QUOTA', value: 'tokenlease-quota.tokenlease-system:7070' },
      ]),
    );
    expect(sidecar?.volumeMounts?.map((m) => m.name)).toEqual([
      'tokenlease-keys',
      'tokenlease-token',
      'tokenlease-config',
    ]);
    const keys = created.spec?.volumes?.find((v) => v.name === 'tokenlease-keys');
    expect(keys?.projected?.sources?.[0]?.secret).toEqual({
      name: 'openai-key',
      items: [{ key: 'apiKey', path: 'openai-key/apiKey' }],
    });
    const token = created.spec?.volumes?.find((v) => v.name === 'tokenlease-token');
    expect(token?.projected?.sources?.[0]?.serviceAccountToken).toMatchObject({
      audience: 'tokenlease',
      path: 'token',
    });

    const app = created.spec?.containers.find((c) => c.name === 'app');
    // The app never sees the key or the token, and its clients point at the sidecar.
    expect(app?.volumeMounts ?? []).toEqual([]);
    expect(app?.env).toEqual(
      expect.arrayContaining([
        { name: 'OPENAI_BASE_URL', value: 'http://127.0.0.1:8089/v1' },
        { name: 'ANTHROPIC_BASE_URL', value: 'http://127.0.0.1:8089' },
      ]),
    );
    expect(app?.env?.filter((e) => e.name === 'OPENAI_BASE_URL')).toHaveLength(1);
    expect(created.metadata?.annotations?.['tokenlease.io/budgets']).toContain(
      'baseURL: https://api.openai.com/v1',
    );
  });

  it('leaves a pod without the annotation untouched', async () => {
    const body = pod(uniqueName('plain'), {});
    const created = await admin().makeApiClient(CoreV1Api).createNamespacedPod({ namespace: team, body });
    expect(created.spec?.initContainers ?? []).toEqual([]);
    expect(created.spec?.containers[0]?.env).toEqual(body.spec!.containers[0]!.env);
    expect(created.metadata?.annotations ?? {}).toEqual({});
  });

  it('refuses an annotated pod whose ServiceAccount no budget selects, saying why', async () => {
    const refusal = await apiRefusal(
      admin()
        .makeApiClient(CoreV1Api)
        .createNamespacedPod({
          namespace: team,
          body: pod(uniqueName('rogue'), { 'tokenlease.io/inject': 'true' }, 'rogue'),
        }),
    );
    expect(refusal.code).toBe(403);
    expect(refusal.status.message).toContain('no Ready LLMBudget in namespace');
    expect(refusal.status.message).toContain('selects ServiceAccount rogue');
  });

  it('a webhook that is down blocks no pod: failurePolicy Ignore, and other namespaces never call it', async () => {
    await server.close();
    const core = admin().makeApiClient(CoreV1Api);
    const annotated = await core.createNamespacedPod({
      namespace: team,
      body: pod(uniqueName('during-outage'), { 'tokenlease.io/inject': 'true' }),
    });
    expect(annotated.spec?.initContainers ?? []).toEqual([]);
    const elsewhere = await core.createNamespacedPod({
      namespace: outsider,
      body: pod(uniqueName('unrelated'), { 'tokenlease.io/inject': 'true' }),
    });
    expect(elsewhere.metadata?.name).toBeDefined();
    expect(elsewhere.spec?.initContainers ?? []).toEqual([]);
  });
});
