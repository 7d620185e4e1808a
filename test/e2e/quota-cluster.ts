/** N quota-server processes on the shared Redis, with a budgets file and a key prefix of their own. */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { waitServing } from '../../bench/fidelity/wait-serving.ts';
import { startQuotaServerProcess, type QuotaServerProcess } from '../../bench/lib/quota-server-process.ts';
import { createQuotaClient, type QuotaClient } from '../../common/grpc/quota-client.ts';
import { redisUrl } from '../support/redis.ts';

export interface QuotaCluster {
  servers: QuotaServerProcess[];
  /** One client per server. */
  clients: QuotaClient[];
  stop(): Promise<void>;
}

export async function startQuotaCluster(
  budgetsYaml: string,
  replicas: number,
  /** Flags of replica `index` beyond the store and budgets. */
  extraArgs: (index: number) => string[] = () => [],
): Promise<QuotaCluster> {
  const prefix = `tltest:${randomUUID().slice(0, 8)}:`;
  const dir = mkdtempSync(join(tmpdir(), 'tokenlease-e2e-'));
  const file = join(dir, 'budgets.yaml');
  writeFileSync(file, budgetsYaml);
  const servers = await Promise.all(
    Array.from({ length: replicas }, (_, index) =>
      startQuotaServerProcess([
        '--budgets',
        file,
        '--store',
        'redis',
        '--redis-url',
        redisUrl(),
        '--redis-key-prefix',
        prefix,
        ...extraArgs(index),
      ]),
    ),
  );
  await Promise.all(servers.map((server) => waitServing(server.target)));
  const clients = servers.map((server) => createQuotaClient({ target: server.target }));
  return {
    servers,
    clients,
    async stop() {
      clients.forEach((client) => client.close());
      await Promise.all(servers.map((server) => server.stop()));
      const redis = new Redis(redisUrl());
      const keys = await redis.keys(`${prefix}*`);
      if (keys.length > 0) await redis.del(...keys);
      redis.disconnect();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
