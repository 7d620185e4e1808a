/**
 * bench:quota's peer: envoyproxy/ratelimit, the rate-limit service Envoy proxies call, a Go gRPC
 * service that counts fixed windows in Redis (one pipelined INCRBY + EXPIRE per descriptor and
 * call). It is the nearest widely run peer of the quota service: central, gRPC, Redis-backed, but
 * counting only (no reservation, no concurrency slot, no settle, no waiting).
 *
 * Built from the Go module proxy by `scripts/build-test-tools.sh envoy-ratelimit` on first use
 * (about a minute; TOKENLEASE_ENVOY_RATELIMIT names a binary instead) and run as a child process on
 * free loopback ports, with its counters under `prefix` in the quota service's Redis. Its one
 * descriptor has a limit that never binds, as the quota service's bench budgets do.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  credentials,
  loadPackageDefinition,
  type Client,
  type ServiceClientConstructor,
  type ServiceError,
} from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { freePorts } from '../../test/support/free-ports.ts';
import { awaitLine } from './cli-process.ts';
import { buildTools } from '../../test/kube/test-tools.ts';

const PROTO = fileURLToPath(new URL('./envoy-rls.proto', import.meta.url));
const DOMAIN = 'bench';

const CONFIG = `
domain: ${DOMAIN}
descriptors:
  - key: budget
    rate_limit: {unit: minute, requests_per_unit: 1000000000}
`;

export interface EnvoyRatelimit {
  pid: number;
  target: string;
  stop(): Promise<void>;
}

async function binary(): Promise<string> {
  const fromEnv = process.env.TOKENLEASE_ENVOY_RATELIMIT;
  if (fromEnv) return fromEnv;
  const path = (await buildTools(['envoy-ratelimit'])).get('TOKENLEASE_ENVOY_RATELIMIT');
  if (!path) throw new Error('scripts/build-test-tools.sh printed no path for envoy-ratelimit');
  return path;
}

/** Starts the service against the Redis at `redisUrl` (host and port only); resolves once it serves gRPC. */
export async function startEnvoyRatelimit(redisUrl: string, prefix: string): Promise<EnvoyRatelimit> {
  const redis = new URL(redisUrl);
  if (redis.password || (redis.pathname !== '' && redis.pathname !== '/' && redis.pathname !== '/0')) {
    throw new Error(`the peer service is run against a Redis without password or database: ${redisUrl}`);
  }
  const root = mkdtempSync(join(tmpdir(), 'tokenlease-bench-ratelimit-'));
  mkdirSync(join(root, 'ratelimit', 'config'), { recursive: true });
  writeFileSync(join(root, 'ratelimit', 'config', 'bench.yaml'), CONFIG);
  const [http, grpc, debug] = (await freePorts(3)) as [number, number, number];
  const child: ChildProcess = spawn(await binary(), [], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      LOG_LEVEL: 'warn',
      USE_STATSD: 'false',
      BACKEND_TYPE: 'redis',
      REDIS_SOCKET_TYPE: 'tcp',
      REDIS_URL: `${redis.hostname}:${redis.port || 6379}`,
      CACHE_KEY_PREFIX: prefix,
      RUNTIME_ROOT: root,
      RUNTIME_SUBDIRECTORY: 'ratelimit',
      RUNTIME_WATCH_ROOT: 'false',
      HOST: '127.0.0.1',
      PORT: String(http),
      GRPC_HOST: '127.0.0.1',
      GRPC_PORT: String(grpc),
      DEBUG_HOST: '127.0.0.1',
      DEBUG_PORT: String(debug),
    },
  });
  await awaitLine(child, 'envoy ratelimit', (line) => line.includes('Listening for gRPC'));
  return {
    pid: child.pid!,
    target: `127.0.0.1:${grpc}`,
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

type ShouldRateLimit = (
  request: {
    domain: string;
    descriptors: Array<{ entries: Array<{ key: string; value: string }> }>;
    hitsAddend: number;
  },
  options: { deadline: number },
  callback: (error: ServiceError | null, response?: { overallCode: string }) => void,
) => void;

/** A grpc-js client of the service: one ShouldRateLimit call, of one hit on the bench descriptor. */
export class EnvoyRatelimitClient {
  readonly #client: Client & { ShouldRateLimit: ShouldRateLimit };

  constructor(target: string) {
    const loaded = loadPackageDefinition(loadSync(PROTO, { enums: String })) as unknown as {
      envoy: { service: { ratelimit: { v3: { RateLimitService: ServiceClientConstructor } } } };
    };
    const Service = loaded.envoy.service.ratelimit.v3.RateLimitService;
    this.#client = new Service(target, credentials.createInsecure()) as unknown as Client & {
      ShouldRateLimit: ShouldRateLimit;
    };
  }

  call(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#client.ShouldRateLimit(
        { domain: DOMAIN, descriptors: [{ entries: [{ key: 'budget', value: 'bench' }] }], hitsAddend: 1 },
        { deadline: Date.now() + 2_000 },
        (error, response) => {
          if (error) return reject(error);
          if (response?.overallCode !== 'OK')
            return reject(new Error(`envoy ratelimit answered ${response?.overallCode}`));
          resolve();
        },
      );
    });
  }

  close(): void {
    this.#client.close();
  }
}
