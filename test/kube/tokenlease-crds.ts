// Installs deploy/crds/*.yaml (the generated CRDs) on the test control plane, once per run
// whichever test file asks first, and waits until the API server serves them.
import {
  ApiextensionsV1Api,
  ApiException,
  CustomObjectsApi,
  loadYaml,
  type KubeConfig,
  type V1CustomResourceDefinition,
} from '@kubernetes/client-node';
import { readdir, readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

const CRD_DIR = fileURLToPath(new URL('../../deploy/crds/', import.meta.url));

export async function eventually<T>(
  what: string,
  probe: () => Promise<T | undefined | false>,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
    } catch (err) {
      last = err;
    }
    await sleep(50);
  }
  throw new Error(`timed out waiting until ${what}${last ? `: ${String(last)}` : ''}`);
}

export async function installCrds(kc: KubeConfig): Promise<void> {
  const api = kc.makeApiClient(ApiextensionsV1Api);
  for (const file of (await readdir(CRD_DIR)).filter((f) => f.endsWith('.yaml'))) {
    // loadYaml maps wire names (x-kubernetes-validations) to the typed model's; the API client
    // would silently drop them from a plain object.
    const crd = loadYaml<V1CustomResourceDefinition>(await readFile(CRD_DIR + file, 'utf8'));
    const name = crd.metadata!.name!;
    try {
      const current = await api.readCustomResourceDefinition({ name });
      await api.replaceCustomResourceDefinition({
        name,
        body: { ...crd, metadata: { ...crd.metadata, resourceVersion: current.metadata?.resourceVersion } },
      });
    } catch (err) {
      if (!(err instanceof ApiException) || err.code !== 404) throw err;
      await api.createCustomResourceDefinition({ body: crd });
    }
    await eventually(`${name} is established`, async () => {
      const got = await api.readCustomResourceDefinition({ name });
      return got.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True');
    });
  }
  // Established can precede the resource being routed by a moment.
  const objects = kc.makeApiClient(CustomObjectsApi);
  for (const plural of ['llmproviders', 'llmbudgets']) {
    await eventually(`${plural} are served`, async () => {
      await objects.listClusterCustomObject({ group: 'tokenlease.io', version: 'v1alpha1', plural });
      return true;
    });
  }
}
