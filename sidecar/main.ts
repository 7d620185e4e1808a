/**
 * `tokenlease sidecar`: config -> budgets -> quota (in-process engine, or the gRPC quota service)
 * -> HTTP proxy. `startSidecar` is the same thing for tests, the demo and benchmarks.
 */
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { loadBudgetFiles, type BudgetSet } from '../common/budgets/load-budgets.ts';
import { ConfigError } from '../common/errors/errors.ts';
import type { QuotaApi } from '../common/quota-api.ts';
import { countTextTokens } from '../common/tokens/count-tokens.ts';
import { loadConfig, type SidecarConfig } from './config.ts';
import { createCacheMetrics, type CacheMetrics } from './cache/cache-metrics.ts';
import type { CacheStore } from './cache/cache-store.ts';
import { MemoryCacheStore } from './cache/memory-cache-store.ts';
import { ResponseCache } from './cache/response-cache.ts';
import { createSidecarMetrics, type SidecarMetrics } from './metrics.ts';
import { loadProviderKeys } from './proxy/credentials.ts';
import { Router } from './proxy/router.ts';
import { createProxyServer } from './proxy/server.ts';
import { createUpstreamAgent } from './proxy/upstream.ts';
import { localShareBudgets } from './quota/local-share.ts';
import { QuotaGate } from './quota/quota-gate.ts';
import { createRouting } from './routing/routing.ts';

export interface StartSidecarOptions {
  budgets: BudgetSet;
  /** `namespace/name` of the LLMBudget this sidecar draws on. */
  budget: string;
  quota: QuotaApi;
  host?: string;
  /** 0 (default) picks a free port. */
  port?: number;
  maxBodyBytes?: number;
  defaultTimeoutMs?: number;
  maxTimeoutMs?: number;
  connectTimeoutMs?: number;
  headersTimeoutMs?: number;
  bodyTimeoutMs?: number;
  maxRetries?: number;
  /** Backoff base when a retryable refusal carries no hint. */
  retryBaseMs?: number;
  /** Fraction of each limit enforced locally in failure mode localShare. */
  localShare?: number;
  probeIntervalMs?: number;
  /** For provider keys named by `credentials.env`. */
  env?: Record<string, string | undefined>;
  secretsDir?: string;
  /** The local limiter for localShare; an in-process engine over the shared-down budgets by default. */
  localQuota?: (budgets: BudgetSet) => QuotaApi | Promise<QuotaApi>;
  /**
   * The response cache's store, shared by every sidecar (Redis); the caller closes it. A private
   * in-memory store of `cacheMemoryMaxBytes` when omitted.
   */
  cacheStore?: CacheStore;
  cacheMemoryMaxBytes?: number;
  /**
   * Spare leases kept per provider, model, budget and priority (sidecar/quota/spare-leases.ts);
   * 0 (default) keeps none. Worth it only when the quota service is remote.
   */
  spareLeases?: number;
  /** A spare lease no call took for this long is given back. Default 1 s. */
  spareIdleMs?: number;
  log?: (message: string, fields?: Record<string, unknown>) => void;
}

/** Loaded only when used: a sidecar on the gRPC quota service never needs the engine (or ioredis). */
async function memoryEngine(budgets: BudgetSet): Promise<QuotaApi & { close(): Promise<void> }> {
  const { createMemoryEngine } = await import('../controller/quota/engine/index.ts');
  return createMemoryEngine({ budgets });
}

export interface RunningSidecar {
  url: string;
  port: number;
  metrics: SidecarMetrics;
  cacheMetrics: CacheMetrics;
  close(): Promise<void>;
}

export async function startSidecar(options: StartSidecarOptions): Promise<RunningSidecar> {
  const router = new Router(options.budgets, options.budget);
  const keys = await loadProviderKeys(options.budgets, router.providerIds, {
    env: options.env ?? {},
    secretsDir: options.secretsDir ?? '/var/run/tokenlease/secrets',
  });
  const metrics = createSidecarMetrics();
  const log = options.log ?? (() => {});
  const cacheMetrics = createCacheMetrics(metrics.registry);
  const cacheStore =
    options.cacheStore ?? new MemoryCacheStore({ maxBytes: options.cacheMemoryMaxBytes ?? 64 * 1024 * 1024 });
  const cache = new ResponseCache({
    store: cacheStore,
    budgets: options.budgets,
    metrics: cacheMetrics,
    log,
  });
  const budgets = options.budgets;
  const share = options.localShare ?? 0.25;
  const gate = new QuotaGate({
    remote: options.quota,
    local: () => (options.localQuota ?? memoryEngine)(localShareBudgets(budgets, share)),
    failureMode: (provider, budget) =>
      budgets.budgets.get(budget)?.spec.failureMode ??
      budgets.providers.get(provider)?.spec.failureMode ??
      'closed',
    probeIntervalMs: options.probeIntervalMs ?? 2_000,
    probeProvider: router.providerIds[0]!,
    onStateChange(state) {
      metrics.quotaReachable.set(state === 'reachable' ? 1 : 0);
      log(
        state === 'reachable'
          ? 'quota service reachable again'
          : 'quota service unreachable: applying failure mode',
        { state },
      );
    },
    onDegraded(mode, provider) {
      metrics.degradedRequests.inc({ provider, mode });
    },
    leaseEvents: {
      onQuotaError(_error, operation) {
        metrics.quotaErrors.inc({ operation });
      },
    },
    spares: {
      max: options.spareLeases ?? 0,
      idleMs: options.spareIdleMs ?? 1_000,
      onEvent: (event) => metrics.spareLeases.inc({ event }),
    },
  });
  const agent = createUpstreamAgent({
    connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
    headersTimeoutMs: options.headersTimeoutMs ?? 300_000,
    bodyTimeoutMs: options.bodyTimeoutMs ?? 300_000,
  });
  const routing = createRouting({
    budgets,
    budgetId: options.budget,
    router,
    registry: metrics.registry,
    log,
  });
  const server = createProxyServer({
    router,
    routing,
    gate,
    agent,
    keys,
    metrics,
    countTokens: countTextTokens,
    maxRetries: options.maxRetries ?? 2,
    retryBaseMs: options.retryBaseMs ?? 500,
    maxBodyBytes: options.maxBodyBytes ?? 4 * 1024 * 1024,
    defaultTimeoutMs: options.defaultTimeoutMs ?? 30_000,
    maxTimeoutMs: options.maxTimeoutMs ?? 600_000,
    cache,
  });
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    port,
    metrics,
    cacheMetrics,
    async close() {
      await gate.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      });
      await agent.close();
      await cache.close();
      if (options.cacheStore === undefined) await cacheStore.close();
    },
  };
}

export const USAGE = `Usage: tokenlease sidecar --budgets <file-or-dir> --budget <namespace/name> [flags]

An HTTP proxy for the providers' own APIs (OpenAI-compatible chat completions, completions,
embeddings, responses; Anthropic messages): point an app's base URL at it.

Flags (environment variable in brackets):
  --listen host:port               [TOKENLEASE_LISTEN]    default 127.0.0.1:8089
  --budgets file-or-dir            [TOKENLEASE_BUDGETS]   LLMProvider / LLMBudget YAML
  --budget namespace/name          [TOKENLEASE_BUDGET]    the LLMBudget this sidecar draws on
  --quota embedded|host:port       [TOKENLEASE_QUOTA]     in-process engine, or the gRPC quota service
  --default-timeout 30s            [TOKENLEASE_DEFAULT_TIMEOUT] wait for a lease when the app sends no
                                   x-tokenlease-timeout-ms / x-tokenlease-deadline-ms header
  --max-timeout 10m                [TOKENLEASE_MAX_TIMEOUT]
  --max-body 4MiB                  [TOKENLEASE_MAX_BODY]
  --upstream-connect-timeout 10s   [TOKENLEASE_UPSTREAM_CONNECT_TIMEOUT]
  --upstream-headers-timeout 5m    [TOKENLEASE_UPSTREAM_HEADERS_TIMEOUT]
  --upstream-body-timeout 5m       [TOKENLEASE_UPSTREAM_BODY_TIMEOUT] longest silence within a response
  --max-retries 2                  [TOKENLEASE_MAX_RETRIES] retries of retryable upstream refusals
  --local-share 0.25               [TOKENLEASE_LOCAL_SHARE] share of each limit in failure mode localShare
  --probe-interval 2s              [TOKENLEASE_PROBE_INTERVAL] how often to look for the quota service
  --secrets-dir dir                [TOKENLEASE_SECRETS_DIR] where credentials.secretRef Secrets are mounted
  --identity-token-file file       [TOKENLEASE_IDENTITY_TOKEN_FILE] this workload's token for the quota service
  --cache-redis redis://host:6379  [TOKENLEASE_CACHE_REDIS] the response cache shared by every sidecar;
                                   a private in-memory cache when omitted (LLMBudget spec.cache enables it)
  --cache-memory-max 64MiB         [TOKENLEASE_CACHE_MEMORY_MAX] bound of the in-memory cache
  --spare-leases 2                 [TOKENLEASE_SPARE_LEASES] leases taken ahead of calls from a remote
                                   quota service, per provider, model and budget, while the account is
                                   far from its limits (0: none)
  --spare-idle 1s                  [TOKENLEASE_SPARE_IDLE] a spare lease no call took is given back after this
`;

function log(message: string, fields: Record<string, unknown> = {}): void {
  process.stderr.write(
    `${JSON.stringify({ time: new Date().toISOString(), component: 'sidecar', message, ...fields })}\n`,
  );
}

/**
 * The identity token, re-read at most every 30 s: the kubelet rotates a projected token well
 * before it expires, and the quota client asks for it on every call or session stream.
 */
function identityTokenReader(file: string): () => string | undefined {
  const read = () => readFileSync(file, 'utf8').trim();
  let token: string;
  try {
    token = read();
  } catch (error) {
    throw new ConfigError('--identity-token-file', `cannot read ${file}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  let readAt = Date.now();
  return () => {
    if (Date.now() - readAt > 30_000) {
      readAt = Date.now();
      try {
        token = read();
      } catch (error) {
        // Keep the last token: it stays valid for a while, and the next read may succeed.
        log('cannot re-read the identity token; keeping the last one', { error: (error as Error).message });
      }
    }
    return token;
  };
}

async function quotaFor(
  config: SidecarConfig,
  budgets: BudgetSet,
): Promise<{ quota: QuotaApi; close(): void }> {
  if (config.quota.kind === 'embedded') {
    const engine = await memoryEngine(budgets);
    return { quota: engine, close: () => void engine.close() };
  }
  const { createQuotaClient } = await import('../common/grpc/quota-client.ts');
  const identityToken =
    config.identityTokenFile === undefined ? undefined : identityTokenReader(config.identityTokenFile);
  const client = createQuotaClient({ target: config.quota.target, identityToken });
  return { quota: client, close: () => client.close() };
}

/**
 * The shared cache's store. Commands fail at once while Redis is away (no offline queue, one
 * retry, a short timeout): calls then go to the provider uncached instead of waiting.
 */
async function redisCacheStore(url: string): Promise<CacheStore> {
  const [{ Redis }, { RedisCacheStore }] = await Promise.all([
    import('ioredis'),
    import('./cache/redis-cache-store.ts'),
  ]);
  const client = new Redis(url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: 1_000,
  });
  client.on('error', (error: Error) => log('cache redis error', { error: error.message }));
  return new RedisCacheStore({ client, prefix: 'tl:cache:', ownsClient: true });
}

/** Resolves with the first SIGTERM or SIGINT. */
function shutdownSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      process.off('SIGTERM', onSignal).off('SIGINT', onSignal);
      resolve(signal);
    };
    process.on('SIGTERM', onSignal).on('SIGINT', onSignal);
  });
}

export async function run(argv: readonly string[], env: Record<string, string | undefined>): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(USAGE);
    return 0;
  }
  const config = loadConfig(argv, env);
  let budgets: BudgetSet;
  try {
    budgets = await loadBudgetFiles(config.budgetsPath);
  } catch (error) {
    throw new ConfigError('--budgets', `cannot load ${config.budgetsPath}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  const quota = await quotaFor(config, budgets);
  const cacheStore =
    config.cacheRedisUrl === undefined ? undefined : await redisCacheStore(config.cacheRedisUrl);
  const signal = shutdownSignal();
  const sidecar = await startSidecar({
    budgets,
    budget: config.budget,
    quota: quota.quota,
    host: config.host,
    port: config.port,
    maxBodyBytes: config.maxBodyBytes,
    defaultTimeoutMs: config.defaultTimeoutMs,
    maxTimeoutMs: config.maxTimeoutMs,
    connectTimeoutMs: config.connectTimeoutMs,
    headersTimeoutMs: config.headersTimeoutMs,
    bodyTimeoutMs: config.bodyTimeoutMs,
    maxRetries: config.maxRetries,
    localShare: config.localShare,
    probeIntervalMs: config.probeIntervalMs,
    env: config.env,
    secretsDir: config.secretsDir,
    cacheStore,
    cacheMemoryMaxBytes: config.cacheMemoryMaxBytes,
    // In process, a lease costs no round trip: nothing to gain from taking one ahead.
    spareLeases: config.quota.kind === 'grpc' ? config.spareLeases : 0,
    spareIdleMs: config.spareIdleMs,
    log,
  }).catch(async (error: unknown) => {
    quota.close();
    await cacheStore?.close();
    throw error;
  });
  log('listening', { url: sidecar.url, budget: config.budget, quota: config.quota.kind });
  log('shutting down', { signal: await signal });
  await sidecar.close();
  quota.close();
  await cacheStore?.close();
  return 0;
}
