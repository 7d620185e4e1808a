/**
 * The tokenlease.v1.QuotaService handlers: validate and convert each request (common/grpc/wire.ts),
 * call the lease engine, answer with its result or the status of its typed error (./grpc-errors.ts).
 */
import { Metadata, status, type ServerUnaryCall, type sendUnaryData } from '@grpc/grpc-js';
import { ChurnSet } from '../../../common/churn-map.ts';
import { StoreUnavailableError } from '../../../common/errors/errors.ts';
import {
  acquireFromWire,
  grantToWire,
  heartbeatFromWire,
  settleFromWire,
  settleResultToWire,
  usageSnapshotToWire,
} from '../../../common/grpc/wire.ts';
import { withCacheSavings, type SavingsByProvider } from '../../../common/cache-savings.ts';
import type { QuotaApi } from '../../../common/quota-api.ts';
import type { QuotaServiceHandlers } from '../../../proto/gen/tokenlease/v1/QuotaService.ts';
import { toGrpcStatus } from './grpc-errors.ts';
import type { Logger } from './logger.ts';
import { handleSession } from './session-handler.ts';

export interface QuotaServiceOptions {
  engine: QuotaApi;
  logger: Logger;
  /**
   * An Acquire gives up waiting this long before the call's deadline, so that its answer (with the
   * retry time) reaches the caller before the caller's own deadline fires. Default 50 ms.
   */
  deadlineMarginMs?: number;
  /**
   * Checks that the caller may draw on a budget, from the bearer token of its call (undefined
   * when none was sent); throws PermissionDeniedError when not. Every caller may when omitted.
   */
  authorize?: Authorizer;
  /** What the sidecars' shared response cache saved, added to GetUsage (common/cache-savings.ts). */
  cacheSavings?: (providers: readonly string[]) => Promise<SavingsByProvider>;
}

export type Authorizer = (token: string | undefined, budget: string) => Promise<void>;

/** The bearer token in a call's `authorization` metadata. */
export function bearerToken(metadata: Metadata): string | undefined {
  const value = metadata.get('authorization')[0];
  const match = typeof value === 'string' ? /^Bearer\s+(\S+)$/i.exec(value) : null;
  return match?.[1];
}

export interface QuotaService {
  handlers: QuotaServiceHandlers;
  /** Refuse new Acquires and end the waiting ones with UNAVAILABLE (they retry elsewhere). */
  drain(): void;
}

export const DEFAULT_DEADLINE_MARGIN_MS = 50;

/** Epoch ms of a call's deadline; Infinity when the caller set none. */
function deadlineOf(call: ServerUnaryCall<unknown, unknown>): number {
  const deadline = call.getDeadline();
  return deadline instanceof Date ? deadline.getTime() : deadline;
}

export function createQuotaService(options: QuotaServiceOptions): QuotaService {
  const { engine, logger } = options;
  const marginMs = options.deadlineMarginMs ?? DEFAULT_DEADLINE_MARGIN_MS;
  const authorize: Authorizer = options.authorize ?? (async () => {});
  const waiting = new ChurnSet<AbortController>();
  const sessions = new Set<() => void>();
  let draining = false;

  function fail(method: string, callback: sendUnaryData<never>, error: unknown): void {
    const { internal, ...answer } = toGrpcStatus(error);
    if (internal)
      logger.error('quota call failed', { method, error: String(error), stack: (error as Error)?.stack });
    callback(answer);
  }

  /** Runs `work`, answering with its result or its error's status. */
  function unary<Req, Res>(method: string, work: (request: Req) => Promise<Res>) {
    return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => {
      let promise: Promise<Res>;
      try {
        promise = work(call.request);
      } catch (error) {
        fail(method, callback, error);
        return;
      }
      promise.then(
        (value) => callback(null, value),
        (error: unknown) => fail(method, callback, error),
      );
    };
  }

  const handlers: QuotaServiceHandlers = {
    Acquire(call, callback) {
      let input: ReturnType<typeof acquireFromWire>;
      try {
        input = acquireFromWire(call.request);
      } catch (error) {
        fail('Acquire', callback, error);
        return;
      }
      if (draining) {
        fail('Acquire', callback, new StoreUnavailableError('quota service replica is shutting down'));
        return;
      }
      // Wait no longer than the caller will listen for the answer.
      const remainingMs = deadlineOf(call) - Date.now() - marginMs;
      const maxWaitMs = Math.max(0, Math.min(input.maxWaitMs, Math.floor(remainingMs)));
      const controller = new AbortController();
      const onCancelled = () => controller.abort(new Error('the caller cancelled the call'));
      call.on('cancelled', onCancelled);
      waiting.add(controller);
      authorize(bearerToken(call.metadata), input.budget)
        .then(() => engine.acquire({ ...input, maxWaitMs, signal: controller.signal }))
        .then(
          (grant) => {
            if (call.cancelled) {
              // Granted as the caller went away: nobody will use or settle this lease, so give it
              // back now rather than holding its slot until it expires.
              engine
                .settle({
                  leaseId: grant.leaseId,
                  usage: { inputTokens: 0, outputTokens: 0 },
                  outcome: 'notSent',
                })
                .catch((error: unknown) =>
                  logger.warn('could not release an orphaned lease', { error: String(error) }),
                );
              return;
            }
            callback(null, grantToWire(grant));
          },
          (error: unknown) => {
            if (call.cancelled) {
              callback({
                code: status.CANCELLED,
                details: 'cancelled by the caller',
                metadata: new Metadata(),
              });
            } else if (draining && controller.signal.aborted) {
              fail('Acquire', callback, controller.signal.reason);
            } else {
              fail('Acquire', callback, error);
            }
          },
        )
        .finally(() => {
          waiting.delete(controller);
          call.removeListener('cancelled', onCancelled);
        });
    },
    Settle: unary('Settle', async (request) =>
      settleResultToWire(await engine.settle(settleFromWire(request))),
    ),
    Heartbeat: unary('Heartbeat', async (request) => {
      const { expiresAtMs } = await engine.heartbeat(heartbeatFromWire(request));
      return { expires_at_ms: expiresAtMs };
    }),
    Session(call) {
      handleSession(call, {
        engine,
        logger,
        waiting,
        sessions,
        draining: () => draining,
        authorize: (budget) => authorize(bearerToken(call.metadata), budget),
      });
    },
    GetUsage: unary('GetUsage', async (request) => {
      const snapshot = await engine.usage(request.provider === '' ? undefined : request.provider);
      if (options.cacheSavings === undefined) return usageSnapshotToWire(snapshot);
      // Savings are extra: GetUsage answers without them when they cannot be read.
      const savings = await options
        .cacheSavings(snapshot.providers.map((provider) => provider.provider))
        .catch((error: unknown) => {
          logger.warn('cannot read the response cache savings', { error: (error as Error).message });
          return new Map() as SavingsByProvider;
        });
      return usageSnapshotToWire(withCacheSavings(snapshot, savings));
    }),
  };

  return {
    handlers,
    drain() {
      draining = true;
      for (const controller of waiting) {
        controller.abort(new StoreUnavailableError('quota service replica is shutting down'));
      }
      for (const endIfDrained of sessions) endIfDrained();
    },
  };
}
