// Global setup of the `kube` vitest project: one etcd + kube-apiserver for the whole run,
// handed to the tests through provide/inject (see test-context.ts).
import type { TestProject } from 'vitest/node';
import { startControlPlane } from './control-plane.ts';
import { findKubeTools } from './test-tools.ts';

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const tools = await findKubeTools();
  const plane = await startControlPlane({ etcdPath: tools.etcd, kubeApiserverPath: tools.kubeApiserver });
  project.provide('kubeControlPlane', {
    server: plane.server,
    caData: plane.caData,
    tokens: plane.tokens,
    kubeconfigPath: plane.kubeconfigPath,
    loopbackTls: plane.loopbackTls,
  });
  return () => plane.stop();
}
