/**
 * `tokenlease quota-server`: config -> budgets (reloaded on change) -> lease engine (memory or
 * Redis) -> gRPC server; on SIGTERM/SIGINT it stops taking calls, drains, and closes the engine.
 */
import type { Cluster, Redis } from 'ioredis';
import { loadBudgetFiles, type BudgetSet } from '../../common/budgets/load-budgets.ts';
import { startRedisBudgetSource } from '../../common/budgets/redis-budget-source.ts';
import { CACHE_KEY_PREFIX, readCacheSavings, type SavingsByProvider } from '../../common/cache-savings.ts';
import { ConfigError, PermissionDeniedError, StoreUnavailableError } from '../../common/errors/errors.ts';
import { createMemoryEngine, createRedisEngine, type LeaseEngine } from '../quota/engine/index.ts';
import { createQuotaMetrics, startMetricsServer, type MetricsServer } from '../quota/metrics/index.ts';
import { startQuotaServer, type Authorizer, type Logger } from '../quota/server/index.ts';
import { loadConfig, USAGE, type Env, type QuotaServerConfig } from './config.ts';
import { createJsonLogger } from './json-logger.ts';
import { redisSettingAdvice } from './redis-settings.ts';
import { watchBudgets } from './watch-budgets.ts';

export interface RunningQuotaServer {
  port: number;
  /** Resolves when health first reports SERVING. */
  serving: Promise<void>;
  stop(): Promise<void>;
}

function describe(budgets: BudgetSet) {
  return { providers: budgets.providers.size, budgets: budgets.budgets.size };
}

async function loadInitialBudgets(config: QuotaServerConfig): Promise<BudgetSet> {
  try {
    return await loadBudgetFiles(config.budgets);
  } catch (error) {
    throw new ConfigError(
      config.sources.budgets,
      `cannot load ${config.budgets}: ${(error as Error).message}`,
      {
        cause: error,
      },
    );
  }
}

function createEngine(config: QuotaServerConfig, budgets: BudgetSet): LeaseEngine {
  if (config.store === 'memory') return createMemoryEngine({ budgets });
  return createRedisEngine({
    budgets,
    redis: config.redisUrl,
    cluster: config.redisCluster,
    keyPrefix: config.redisKeyPrefix,
    autoPipelining: config.redisAutoPipelining,
  });
}

interface SavingsReader {
  read(providers: readonly string[]): Promise<SavingsByProvider>;
  close(): Promise<void>;
}

/**
 * On Redis, GetUsage also reports what the sidecars' shared response cache saved, read from the
 * same Redis (sidecars given `--cache-redis` pointing at it).
 */
async function cacheSavingsReader(config: QuotaServerConfig): Promise<SavingsReader | undefined> {
  if (config.store !== 'redis') return undefined;
  // A slow or absent Redis costs GetUsage at most a second, never an error (quota-service.ts).
  // Connection errors surface on each read, where GetUsage logs them.
  const client = await connectQuickRedis(config);
  return {
    read: (providers) => readCacheSavings(client, CACHE_KEY_PREFIX, providers),
    async close() {
      client.disconnect();
    },
  };
}

/**
 * A client of the store's Redis (or cluster) for occasional reads beside the engine's: one retry
 * and a second per command at most, connection errors left to the commands that fail.
 */
async function connectQuickRedis(config: QuotaServerConfig): Promise<Redis | Cluster> {
  const { Cluster, Redis } = await import('ioredis');
  const options = { maxRetriesPerRequest: 1, commandTimeout: 1_000 };
  const client =
    config.redisCluster === undefined
      ? new Redis(config.redisUrl, options)
      : new Cluster(config.redisCluster, { redisOptions: options });
  client.on('error', () => {});
  return client;
}

/** Warns, once, of each Redis setting that slows the quota service (redis-settings.ts). */
async function adviseOnRedisSettings(config: QuotaServerConfig, logger: Logger): Promise<void> {
  if (config.store !== 'redis') return;
  let client: Redis | Cluster | undefined;
  try {
    client = await connectQuickRedis(config);
    await client.ping(); // a cluster knows its primaries once connected
    for (const { setting, found, wanted, why } of await redisSettingAdvice(client)) {
      logger.warn(`redis: set ${setting} ${wanted}`, { setting, found, wanted, why });
    }
  } catch {
    // Unreachable now: the engine's own calls report that.
  } finally {
    client?.disconnect();
  }
}

interface BudgetFeed {
  initial: BudgetSet;
  close(): Promise<void>;
}

/** Budgets from YAML files (reloaded on change) or, with `--budgets redis`, from the controller. */
async function startBudgetFeed(
  config: QuotaServerConfig,
  logger: Logger,
  onUpdate: (budgets: BudgetSet) => void,
): Promise<BudgetFeed> {
  const onError = (error: unknown) =>
    logger.error('budgets reload failed; keeping the last good budgets', { error: (error as Error).message });
  if (config.budgets === 'redis') {
    let source;
    try {
      source = await startRedisBudgetSource({
        redis: config.redisUrl,
        keyPrefix: config.redisKeyPrefix,
        onUpdate: (next, version) => {
          onUpdate(next);
          logger.info('budgets updated from redis', { version, ...describe(next) });
        },
        onError,
      });
    } catch (error) {
      throw new ConfigError(
        config.sources.budgets,
        `cannot read budgets from Redis: ${(error as Error).message}`,
        {
          cause: error,
        },
      );
    }
    return { initial: source.initial, close: () => source.close() };
  }
  const initial = await loadInitialBudgets(config);
  const watcher = await watchBudgets(config.budgets, {
    debounceMs: config.reloadDebounceMs,
    onReload(next) {
      onUpdate(next);
      logger.info('budgets reloaded', describe(next));
    },
    onError,
  });
  return { initial, close: async () => watcher.close() };
}

/** With `--identity kubernetes`: each Acquire's ServiceAccount token, checked against its budget. */
async function createAuthorizer(
  config: QuotaServerConfig,
  engine: LeaseEngine,
): Promise<Authorizer | undefined> {
  if (config.identity === 'none') return undefined;
  const { AuthenticationV1Api, KubeConfig } = await import('@kubernetes/client-node');
  const { authorizeBudget, TokenVerifier } = await import('../k8s/identity/index.ts');
  const kubeconfig = new KubeConfig();
  try {
    if (config.kubeconfig) kubeconfig.loadFromFile(config.kubeconfig);
    else kubeconfig.loadFromCluster();
  } catch (error) {
    throw new ConfigError('--kubeconfig', `cannot load: ${(error as Error).message}`, { cause: error });
  }
  const verifier = new TokenVerifier({
    api: kubeconfig.makeApiClient(AuthenticationV1Api),
    audience: config.identityAudience,
    cacheTtlMs: 60_000,
  });
  return async (token, budget) => {
    if (!token) throw new PermissionDeniedError('no ServiceAccount token presented (authorization: Bearer)');
    let identity;
    try {
      identity = await verifier.verify(token);
    } catch (error) {
      if (error instanceof PermissionDeniedError) throw error;
      throw new StoreUnavailableError(`cannot verify the caller's token: ${(error as Error).message}`, {
        cause: error,
      });
    }
    authorizeBudget(engine.budgets(), budget, identity);
  };
}

/** Everything but signal handling, so tests and other commands (demo) can embed it. */
export async function startQuotaServerFromConfig(
  config: QuotaServerConfig,
  logger: Logger,
): Promise<RunningQuotaServer> {
  // Updates arrive on later ticks, by which time the engine below exists.
  const current: { engine?: LeaseEngine } = {};
  const feed = await startBudgetFeed(config, logger, (next) => current.engine?.setBudgets(next));
  const created = createEngine(config, feed.initial);
  current.engine = created;
  const savings = await cacheSavingsReader(config);
  let server;
  try {
    server = await startQuotaServer({
      engine: created,
      listen: config.listen,
      logger,
      deadlineMarginMs: config.deadlineMarginMs,
      authorize: await createAuthorizer(config, created),
      ...(savings === undefined ? {} : { cacheSavings: savings.read }),
    });
  } catch (error) {
    await savings?.close();
    await created.close();
    await feed.close();
    if (error instanceof ConfigError) throw error;
    throw new ConfigError(
      config.sources.listen,
      `cannot listen on ${config.listen}: ${(error as Error).message}`,
      {
        cause: error,
      },
    );
  }
  logger.info('listening', {
    listen: config.listen,
    port: server.port,
    store: config.store,
    identity: config.identity,
    ...describe(feed.initial),
  });
  void adviseOnRedisSettings(config, logger);
  let metrics: MetricsServer | undefined;
  if (config.metricsListen !== undefined) {
    try {
      metrics = await startMetricsServer(config.metricsListen, createQuotaMetrics(created));
    } catch (error) {
      await server.shutdown(0);
      await savings?.close();
      await created.close();
      await feed.close();
      throw new ConfigError(
        config.sources.metricsListen,
        `cannot listen on ${config.metricsListen}: ${(error as Error).message}`,
        {
          cause: error,
        },
      );
    }
    logger.info('metrics listening', { listen: config.metricsListen, port: metrics.port });
  }
  return {
    port: server.port,
    serving: server.serving,
    async stop() {
      await metrics?.close();
      await feed.close();
      await server.shutdown(config.shutdownGraceMs);
      await savings?.close();
      await created.close();
    },
  };
}

/** Resolves with the first SIGTERM or SIGINT; a second one exits at once. */
function shutdownSignal(logger: Logger): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      process.off('SIGTERM', onSignal).off('SIGINT', onSignal);
      const force = (again: NodeJS.Signals) => {
        logger.warn('second signal: exiting without draining', { signal: again });
        process.exit(1);
      };
      process.once('SIGTERM', force).once('SIGINT', force);
      resolve(signal);
    };
    process.on('SIGTERM', onSignal).on('SIGINT', onSignal);
  });
}

export async function run(argv: readonly string[], env: Env): Promise<number> {
  const config = loadConfig(argv, env);
  if (config.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const logger = createJsonLogger(process.stderr);
  const signal = shutdownSignal(logger);
  const running = await startQuotaServerFromConfig(config, logger);
  logger.info('shutting down', { signal: await signal, graceMs: config.shutdownGraceMs });
  await running.stop();
  logger.info('stopped');
  return 0;
}
