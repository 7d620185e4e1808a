/**
 * `tokenlease controller`: config -> leader-elected reconcilers (controller.ts) and, on every
 * replica, the sidecar-injection webhook with its self-managed certificate; on SIGTERM/SIGINT it
 * releases the Lease and stops.
 */
import { AdmissionregistrationV1Api, CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { startRedisBudgetSource, type BudgetSource } from '../../common/budgets/redis-budget-source.ts';
import type { BudgetSet } from '../../common/budgets/load-budgets.ts';
import { ConfigError } from '../../common/errors/errors.ts';
import { createJsonLogger } from '../quota-server/json-logger.ts';
import type { Logger } from '../quota/server/logger.ts';
import { loadConfig, USAGE, type ControllerConfig, type Env } from './config.ts';
import { startController } from './controller.ts';
import { ensureCaBundle } from './webhook/ca-bundle.ts';
import { ensureServingCert } from './webhook/serving-cert.ts';
import { startWebhookServer, type WebhookServer } from './webhook/webhook-server.ts';

/** How often each replica checks the certificate (renewed 30 days before expiry) and the CA bundle. */
const CERT_CHECK_MS = 3_600_000;

export interface RunningControllerBinary {
  webhookPort: number | undefined;
  stop(): Promise<void>;
}

function kubeConfigFrom(config: ControllerConfig): KubeConfig {
  const kc = new KubeConfig();
  try {
    if (config.kubeconfig) kc.loadFromFile(config.kubeconfig);
    else kc.loadFromDefault();
  } catch (error) {
    throw new ConfigError('--kubeconfig', `cannot load: ${(error as Error).message}`, { cause: error });
  }
  return kc;
}

/** Everything but signal handling, so tests and the demo can embed it. */
export async function startControllerFromConfig(
  config: ControllerConfig,
  logger: Logger,
): Promise<RunningControllerBinary> {
  const kc = kubeConfigFrom(config);
  const controller = startController({
    kubeConfig: kc,
    identity: config.identity,
    redisUrl: config.redisUrl,
    keyPrefix: config.keyPrefix,
    leaderElection: { namespace: config.namespace, ...config.leaderElection },
    statusIntervalMs: config.statusIntervalMs,
    resyncMs: config.resyncMs,
    workers: config.workers,
    backoff: { baseDelayMs: 100, maxDelayMs: 60_000 },
    logger,
  });

  let server: WebhookServer | undefined;
  let source: BudgetSource | undefined;
  let timer: NodeJS.Timeout | undefined;
  const webhook = config.webhook;
  if (webhook.enabled) {
    try {
      // The webhook answers from the budgets in the store, as the quota service does: the same
      // Ready set on every replica, whichever leads.
      let budgets: BudgetSet = { providers: new Map(), budgets: new Map() };
      source = await startRedisBudgetSource({
        redis: config.redisUrl,
        keyPrefix: config.keyPrefix,
        onUpdate: (next) => (budgets = next),
        onError: (error) => logger.warn('budgets from the store', { error: String(error) }),
      });
      budgets = source.initial;
      const core = kc.makeApiClient(CoreV1Api);
      const admission = kc.makeApiClient(AdmissionregistrationV1Api);
      const service = `${webhook.service}.${config.namespace}.svc`;
      const certificate = () =>
        ensureServingCert({
          core,
          namespace: config.namespace,
          secretName: webhook.certSecret,
          names: [service, `${service}.cluster.local`],
        });
      const cert = await certificate();
      server = await startWebhookServer({
        listen: webhook.listen,
        cert,
        budgets: () => budgets,
        injection: {
          image: webhook.sidecarImage,
          port: webhook.sidecarPort,
          quotaAddress: webhook.quotaAddress,
          audience: webhook.audience,
          tokenExpirationSeconds: 3_600,
        },
        logger,
      });
      const keepCurrent = async () => {
        const current = await certificate();
        server?.setCert(current);
        await ensureCaBundle(admission, webhook.configName, current.caPem);
      };
      await keepCurrent().catch((error: unknown) =>
        logger.warn('webhook CA bundle', { error: String(error) }),
      );
      timer = setInterval(() => {
        keepCurrent().catch((error: unknown) =>
          logger.warn('webhook certificate check', { error: String(error) }),
        );
      }, CERT_CHECK_MS);
      timer.unref();
    } catch (error) {
      await controller.stop();
      await source?.close();
      await server?.close();
      throw error;
    }
  }
  logger.info('controller started', {
    identity: config.identity,
    namespace: config.namespace,
    webhookPort: server?.port,
  });
  return {
    webhookPort: server?.port,
    async stop() {
      clearInterval(timer);
      await controller.stop();
      await server?.close();
      await source?.close();
    },
  };
}

function shutdownSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      process.off('SIGTERM', onSignal).off('SIGINT', onSignal);
      process.once('SIGTERM', () => process.exit(1)).once('SIGINT', () => process.exit(1));
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
  const logger = createJsonLogger(process.stderr, 'controller');
  const signal = shutdownSignal();
  const running = await startControllerFromConfig(config, logger);
  logger.info('shutting down', { signal: await signal });
  await running.stop();
  logger.info('stopped');
  return 0;
}

/** The brief's name for the entry point. */
export const runController = run;
