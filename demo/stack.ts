/**
 * The tokenlease side of the demo, wired as in a cluster: the gRPC quota service (lease engine on
 * the in-memory store, or on Redis), and one sidecar per tenant reaching it through the gRPC
 * client, each holding the provider key from a Secret-style mounted file.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import type { BudgetSet } from '../common/budgets/load-budgets.ts';
import { createQuotaClient, type QuotaClient } from '../common/grpc/quota-client.ts';
import { createMemoryEngine, createRedisEngine, type LeaseEngine } from '../controller/quota/engine/index.ts';
import { silentLogger, startQuotaServer, type QuotaServer } from '../controller/quota/server/index.ts';
import { startSidecar, type RunningSidecar } from '../sidecar/main.ts';
import type { Tenant } from './scenario.ts';

/** The key the sidecars inject upstream; the apps never see it. */
export const DEMO_PROVIDER_KEY = 'sk-demo-held-by-the-sidecar';

export interface TokenleaseStack {
  /** `127.0.0.1:PORT` of the quota service, for `tokenlease status --quota`. */
  quotaTarget: string;
  /** The client the demo itself reads usage through. */
  quota: QuotaClient;
  sidecars: Map<string, RunningSidecar>;
  close(): Promise<void>;
}

async function deletePrefix(url: string, prefix: string): Promise<void> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
      cursor = next;
      if (keys.length > 0) await redis.del(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}

/** Secrets mounted as `<dir>/<secret>/<key>`, as a kubelet mounts them. */
async function mountSecrets(budgets: BudgetSet): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tokenlease-demo-secrets-'));
  for (const provider of budgets.providers.values()) {
    const ref = provider.spec.credentials?.secretRef;
    if (!ref) continue;
    await mkdir(join(dir, ref.name), { recursive: true });
    await writeFile(join(dir, ref.name, ref.key), DEMO_PROVIDER_KEY, { mode: 0o600 });
  }
  return dir;
}

export async function startTokenleaseStack(
  budgets: BudgetSet,
  tenants: Tenant[],
  redisUrl: string | undefined,
): Promise<TokenleaseStack> {
  const keyPrefix = `tokenlease-demo:${randomBytes(4).toString('hex')}:`;
  const engine: LeaseEngine = redisUrl
    ? createRedisEngine({ budgets, redis: redisUrl, keyPrefix })
    : createMemoryEngine({ budgets });
  const closers: Array<() => Promise<void>> = [];
  const closeAll = async () => {
    for (const close of closers.reverse()) await close();
  };
  closers.push(async () => {
    await engine.close();
    if (redisUrl) await deletePrefix(redisUrl, keyPrefix);
  });
  try {
    await engine.ready();
    const server: QuotaServer = await startQuotaServer({
      engine,
      listen: '127.0.0.1:0',
      logger: silentLogger,
    });
    closers.push(() => server.shutdown(1_000));
    await server.serving;
    const quotaTarget = `127.0.0.1:${server.port}`;
    const quota = createQuotaClient({ target: quotaTarget });
    closers.push(async () => quota.close());
    const secretsDir = await mountSecrets(budgets);
    closers.push(() => rm(secretsDir, { recursive: true, force: true }));
    const sidecars = new Map<string, RunningSidecar>();
    for (const tenant of tenants) {
      // Its own gRPC channel, as a sidecar in its own pod would have.
      const own = createQuotaClient({ target: quotaTarget });
      closers.push(async () => own.close());
      const sidecar = await startSidecar({ budgets, budget: tenant.budget, quota: own, secretsDir });
      closers.push(() => sidecar.close());
      sidecars.set(tenant.budget, sidecar);
    }
    return { quotaTarget, quota, sidecars, close: closeAll };
  } catch (error) {
    await closeAll();
    throw error;
  }
}
