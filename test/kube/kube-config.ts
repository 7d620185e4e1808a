// Connection details of a test control plane: plain, serialisable data (vitest's provide/inject
// carries them from the global setup to the test workers), and a KubeConfig built from them for
// any of the API server's token users.
import { KubeConfig } from '@kubernetes/client-node';

/** Users of the API server's static token file: the name is the Kubernetes user name. */
export const KUBE_USERS = {
  /** In system:masters: bypasses RBAC. For test setup only, never for the code under test. */
  admin: ['system:masters'],
  /** No groups: gets exactly what the RBAC objects a test applies grant it (the chart's controller role). */
  controller: [],
  /** No groups and no bindings: a request from it must be forbidden. */
  nobody: [],
  /** In group tokenlease:tenants, for tests that grant a group rather than a user. */
  tenant: ['tokenlease:tenants'],
} as const satisfies Record<string, readonly string[]>;

export type KubeUser = keyof typeof KUBE_USERS;

export interface ControlPlaneConnection {
  /** https://127.0.0.1:PORT */
  server: string;
  /** PEM of the CA that signed the API server's serving certificate. */
  caData: string;
  /** Bearer token of each user in KUBE_USERS. */
  tokens: Record<KubeUser, string>;
  /** A kubeconfig file for the admin user, for kubectl and helm. */
  kubeconfigPath: string;
  /**
   * PEM certificate (with chain) and key valid for 127.0.0.1, signed by caData: a test can serve an
   * admission webhook on loopback with them and give the API server caData as its caBundle.
   */
  loopbackTls: { cert: string; key: string };
}

/** A KubeConfig that talks to the control plane as the given user (admin unless told). */
export function kubeConfigFor(connection: ControlPlaneConnection, user: KubeUser = 'admin'): KubeConfig {
  return kubeConfigWithToken(connection, user, connection.tokens[user]);
}

/** A KubeConfig with an arbitrary bearer token, e.g. a ServiceAccount token from a TokenRequest. */
export function kubeConfigWithToken(
  connection: ControlPlaneConnection,
  name: string,
  token: string,
): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [
      {
        name: 'tokenlease-test',
        server: connection.server,
        caData: Buffer.from(connection.caData).toString('base64'),
      },
    ],
    users: [{ name, token }],
    contexts: [{ name, cluster: 'tokenlease-test', user: name }],
    currentContext: name,
  });
  return kc;
}
