// Runs the controller in a test the way the chart does: as the `controller` user of the test
// control plane, holding only the rules of deploy/rbac/ (bound here), against the shared Redis
// with a key prefix of its own. Also a "quota service" side: the budgets it would enforce.
import {
  CoreV1Api,
  CustomObjectsApi,
  loadYaml,
  RbacAuthorizationV1Api,
  type KubeConfig,
  type V1ClusterRole,
  type V1Role,
} from '@kubernetes/client-node';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import type { BudgetSet } from '../../common/budgets/load-budgets.ts';
import { startRedisBudgetSource, type BudgetSource } from '../../common/budgets/redis-budget-source.ts';
import { silentLogger, type Logger } from '../../controller/quota/server/logger.ts';
import {
  startController,
  type ControllerOptions,
  type RunningController,
} from '../../controller/k8s/controller.ts';
import { createRedisEngine, type LeaseEngine } from '../../controller/quota/engine/index.ts';
import { redisUrl } from '../support/redis.ts';
import { kubeConfigFor } from './kube-config.ts';
import { controlPlane } from './test-context.ts';
import { eventually, installCrds } from './tokenlease-crds.ts';

const RBAC_DIR = fileURLToPath(new URL('../../deploy/rbac/', import.meta.url));

export const admin = (): KubeConfig => kubeConfigFor(controlPlane(), 'admin');

export function uniqueName(prefix: string): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

export async function createNamespace(name: string, labels?: Record<string, string>): Promise<void> {
  await admin()
    .makeApiClient(CoreV1Api)
    .createNamespace({ body: { metadata: { name, ...(labels ? { labels } : {}) } } });
}

/** Binds deploy/rbac's ClusterRole (cluster-wide) and Role (in `namespace`) to the `controller` user. */
export async function grantControllerRbac(namespace: string): Promise<void> {
  const rbac = admin().makeApiClient(RbacAuthorizationV1Api);
  const clusterRole = loadYaml<V1ClusterRole>(
    await readFile(`${RBAC_DIR}controller-cluster-role.yaml`, 'utf8'),
  );
  const role = loadYaml<V1Role>(await readFile(`${RBAC_DIR}controller-role.yaml`, 'utf8'));
  const subjects = [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: 'controller' }];
  try {
    await rbac.createClusterRole({ body: clusterRole });
    await rbac.createClusterRoleBinding({
      body: {
        metadata: { name: 'tokenlease-controller' },
        roleRef: {
          apiGroup: 'rbac.authorization.k8s.io',
          kind: 'ClusterRole',
          name: clusterRole.metadata!.name!,
        },
        subjects,
      },
    });
  } catch (error) {
    // Another test file of the run bound it already (one control plane per run).
    if ((error as { code?: number }).code !== 409) throw error;
  }
  await rbac.createNamespacedRole({
    namespace,
    body: { ...role, metadata: { ...role.metadata, namespace } },
  });
  await rbac.createNamespacedRoleBinding({
    namespace,
    body: {
      metadata: { name: 'tokenlease-controller', namespace },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: role.metadata!.name! },
      subjects,
    },
  });
}

export interface Harness {
  namespace: string;
  keyPrefix: string;
  objects: CustomObjectsApi;
  core: CoreV1Api;
  /** The quota service's view: budgets as read from the store, and an engine enforcing them. */
  quota: { source: BudgetSource; engine: LeaseEngine; budgets(): BudgetSet };
  startController(identity?: string, overrides?: Partial<ControllerOptions>): RunningController;
  close(): Promise<void>;
}

export async function setUpHarness(options: { logger?: Logger } = {}): Promise<Harness> {
  const kc = admin();
  await installCrds(kc);
  const namespace = uniqueName('tl-system');
  await createNamespace(namespace);
  await grantControllerRbac(namespace);
  const keyPrefix = `test:k8s:${randomBytes(4).toString('hex')}:`;

  let current: BudgetSet = { providers: new Map(), budgets: new Map() };
  const engine = createRedisEngine({ budgets: current, redis: redisUrl(), keyPrefix });
  await engine.ready();
  const source = await startRedisBudgetSource({
    redis: redisUrl(),
    keyPrefix,
    onUpdate(budgets) {
      current = budgets;
      engine.setBudgets(budgets);
    },
    onError() {},
  });
  current = source.initial;
  engine.setBudgets(current);

  const controllers: RunningController[] = [];
  const controllerKc = kubeConfigFor(controlPlane(), 'controller');
  return {
    namespace,
    keyPrefix,
    objects: kc.makeApiClient(CustomObjectsApi),
    core: kc.makeApiClient(CoreV1Api),
    quota: { source, engine, budgets: () => current },
    startController(identity = uniqueName('controller'), overrides = {}) {
      const running = startController({
        kubeConfig: controllerKc,
        identity,
        redisUrl: redisUrl(),
        keyPrefix,
        leaderElection: {
          namespace,
          name: 'tokenlease-controller',
          leaseDurationMs: 3_000,
          renewDeadlineMs: 2_000,
          retryPeriodMs: 250,
        },
        statusIntervalMs: 200,
        resyncMs: 300,
        workers: 2,
        backoff: { baseDelayMs: 50, maxDelayMs: 2_000 },
        logger: options.logger ?? silentLogger,
        ...overrides,
      });
      controllers.push(running);
      return running;
    },
    async close() {
      // A controller that does not stop within 20 s fails the file with its name, once the
      // store's keys are removed, instead of holding the hook until its 120 s timeout.
      const hung: string[] = [];
      await Promise.all(
        controllers.map(async (c, i) => {
          const stopped = await Promise.race([
            c.stop().then(() => true),
            new Promise<false>((resolve) => setTimeout(resolve, 20_000, false).unref()),
          ]);
          if (!stopped) hung.push(`controller ${i}`);
        }),
      );
      await source.close();
      await engine.close();
      const redis = new Redis(redisUrl());
      let cursor = '0';
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', `${keyPrefix}*`, 'COUNT', 500);
        if (keys.length) await redis.del(...keys);
        cursor = next;
      } while (cursor !== '0');
      redis.disconnect();
      if (hung.length > 0) throw new Error(`${hung.join(', ')} did not stop within 20 s`);
    },
  };
}

export { eventually };
