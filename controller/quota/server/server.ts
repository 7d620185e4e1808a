/**
 * The quota service's gRPC server: tokenlease.v1.QuotaService plus the standard grpc.health.v1
 * health service, which says SERVING only once the engine's store answers and NOT_SERVING again
 * while the server drains.
 */
import { Server, ServerCredentials, type ServerOptions } from '@grpc/grpc-js';
import { setTimeout as sleep } from 'node:timers/promises';
import { HealthImplementation, type ServingStatus } from 'grpc-health-check';
import { loadQuotaProto } from '../../../common/grpc/load-quota-proto.ts';
import { QUOTA_SERVICE_NAME } from '../../../common/grpc/proto-options.ts';
import { MAX_WAIT_MS } from '../../../common/grpc/wire.ts';
import type { QuotaApi } from '../../../common/quota-api.ts';
import { silentLogger, type Logger } from './logger.ts';
import { createQuotaService, type Authorizer, type QuotaServiceOptions } from './quota-service.ts';

/** What the server needs of a lease engine. */
export interface ServableEngine extends QuotaApi {
  /** Resolves once the store can be reached. */
  ready(): Promise<void>;
}

export interface QuotaServerOptions {
  engine: ServableEngine;
  /** `host:port`; port 0 picks a free one (see QuotaServer.port). */
  listen: string;
  logger?: Logger;
  deadlineMarginMs?: number;
  /** Who may draw on which budget (see QuotaServiceOptions.authorize). */
  authorize?: Authorizer;
  /** See QuotaServiceOptions.cacheSavings. */
  cacheSavings?: QuotaServiceOptions['cacheSavings'];
  /** Merged over DEFAULT_SERVER_OPTIONS. */
  serverOptions?: ServerOptions;
}

export interface QuotaServer {
  /** The port bound. */
  port: number;
  /** Resolves when health first says SERVING (the engine is ready). */
  serving: Promise<void>;
  /**
   * Stops taking calls: health goes NOT_SERVING, waiting Acquires end with UNAVAILABLE, calls in
   * progress get up to `graceMs` to finish before the rest are cut. Does not close the engine.
   */
  shutdown(graceMs: number): Promise<void>;
}

export const DEFAULT_SERVER_OPTIONS: ServerOptions = {
  // Ping each client connection after a minute of silence and drop it when 20 s pass without an
  // answer, so the waits of a sidecar that vanished are cancelled (their reservations freed).
  'grpc.keepalive_time_ms': 60_000,
  'grpc.keepalive_timeout_ms': 20_000,
  // A Kubernetes Service balances connections, not calls: without an age limit, sidecars stay on
  // the replicas that existed when they connected. Recycle connections every 5 minutes, letting
  // calls in progress (an Acquire may wait up to MAX_WAIT_MS) finish first.
  'grpc.max_connection_age_ms': 5 * 60_000,
  'grpc.max_connection_age_grace_ms': MAX_WAIT_MS + 30_000,
};

/** Health is reported for the whole server ('') and for the quota service by name. */
const HEALTH_SERVICES = ['', QUOTA_SERVICE_NAME];

export async function startQuotaServer(options: QuotaServerOptions): Promise<QuotaServer> {
  const logger = options.logger ?? silentLogger;
  const server = new Server({ ...DEFAULT_SERVER_OPTIONS, ...options.serverOptions });
  const quota = createQuotaService({
    engine: options.engine,
    logger,
    ...(options.deadlineMarginMs === undefined ? {} : { deadlineMarginMs: options.deadlineMarginMs }),
    ...(options.authorize === undefined ? {} : { authorize: options.authorize }),
    ...(options.cacheSavings === undefined ? {} : { cacheSavings: options.cacheSavings }),
  });
  server.addService(loadQuotaProto().QuotaService.service, quota.handlers);
  const health = new HealthImplementation(
    Object.fromEntries(HEALTH_SERVICES.map((name) => [name, 'NOT_SERVING'])),
  );
  health.addToServer(server);
  const setHealth = (state: ServingStatus) =>
    HEALTH_SERVICES.forEach((name) => health.setStatus(name, state));

  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(options.listen, ServerCredentials.createInsecure(), (error, bound) =>
      error ? reject(error) : resolve(bound),
    );
  });

  let stopping = false;
  const stopped = new AbortController();
  const serving = (async () => {
    // Keep asking until the store answers; health stays NOT_SERVING meanwhile.
    for (let attempt = 0; !stopping; attempt++) {
      try {
        await options.engine.ready();
        if (stopping) return;
        setHealth('SERVING');
        logger.info('serving', { port });
        return;
      } catch (error) {
        logger.warn('store not ready', { error: String(error), attempt });
        await sleep(Math.min(5_000, 100 * 2 ** attempt), undefined, { signal: stopped.signal }).catch(
          () => {},
        );
      }
    }
  })();

  return {
    port,
    serving,
    async shutdown(graceMs: number) {
      if (stopping) return;
      stopping = true;
      stopped.abort();
      setHealth('NOT_SERVING');
      quota.drain();
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          logger.warn('calls still running after the grace period; cutting them', { graceMs });
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    },
  };
}
