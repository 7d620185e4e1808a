// What a test in the kube project uses to find the control plane that global-setup.ts started.
import { inject } from 'vitest';
import type { ControlPlaneConnection } from './kube-config.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    kubeControlPlane: ControlPlaneConnection;
  }
}

/** The connection details of the run's control plane. */
export function controlPlane(): ControlPlaneConnection {
  return inject('kubeControlPlane');
}
