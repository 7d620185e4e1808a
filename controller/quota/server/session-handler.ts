/**
 * QuotaService.Session: Acquire, Settle and Heartbeat as messages on one long-lived stream. Each
 * message is handled exactly as its unary call (same conversion, same engine call, same status
 * for each typed error) and answered with its id; answers go out as they are ready, in batches
 * once the client has sent one (see session-outbox.ts).
 */
import { Metadata, status, type ServerDuplexStream } from '@grpc/grpc-js';
import { ChurnMap, type ChurnSet } from '../../../common/churn-map.ts';
import { StoreUnavailableError } from '../../../common/errors/errors.ts';
import {
  acquireFromWire,
  grantToWire,
  heartbeatFromWire,
  settleFromWire,
  settleResultToWire,
} from '../../../common/grpc/wire.ts';
import { SESSION_BATCH_HEADER, SessionOutbox } from '../../../common/grpc/session-outbox.ts';
import type { QuotaApi } from '../../../common/quota-api.ts';
import type { SessionRequest__Output } from '../../../proto/gen/tokenlease/v1/SessionRequest.ts';
import type { SessionResponse } from '../../../proto/gen/tokenlease/v1/SessionResponse.ts';
import { toGrpcStatus } from './grpc-errors.ts';
import type { Logger } from './logger.ts';

export interface SessionContext {
  engine: QuotaApi;
  logger: Logger;
  /** Acquires waiting on any call; drain() aborts them. */
  waiting: ChurnSet<AbortController>;
  draining(): boolean;
  /** Open sessions' drain hooks: each ends its stream once its answers are out. */
  sessions: Set<() => void>;
  /** Throws PermissionDeniedError unless the stream's caller may draw on the budget. */
  authorize(budget: string): Promise<void>;
}

/** Most Acquires one stream may have waiting at once: a bound on what one client can pin. */
export const MAX_WAITING_PER_SESSION = 4096;

function metadataToMap(metadata: Metadata): Record<string, string> {
  const map: Record<string, string> = {};
  for (const [key, values] of Object.entries(metadata.getMap())) map[key] = String(values);
  return map;
}

export function handleSession(
  call: ServerDuplexStream<SessionRequest__Output, SessionResponse>,
  context: SessionContext,
): void {
  const { engine, logger } = context;
  const acquiring = new ChurnMap<number, AbortController>();
  let open = true;
  let inFlight = 0;
  const outbox = new SessionOutbox<SessionResponse>((response) => {
    if (open && !call.writableEnded) call.write(response);
  });
  // Tells the client it may send batches (a client that has not heard this sends messages alone).
  const headers = new Metadata();
  headers.set(SESSION_BATCH_HEADER, '1');
  call.sendMetadata(headers);

  /** Once draining, the stream ends when nothing is left to answer: the client moves on. */
  const endIfDrained = () => {
    if (context.draining() && inFlight === 0 && !call.writableEnded) {
      outbox.flush();
      call.end();
    }
  };
  const answer = (response: SessionResponse) => {
    inFlight -= 1;
    outbox.send(response);
    endIfDrained();
  };
  const fail = (id: number, op: string, error: unknown) => {
    const { internal, code, details, metadata } = toGrpcStatus(error);
    if (internal)
      logger.error('quota session call failed', { op, error: String(error), stack: (error as Error)?.stack });
    answer({ id, error: { code, message: details ?? '', details: metadata ? metadataToMap(metadata) : {} } });
  };
  /** Runs `work` for message `id`, answering with its result or its error. */
  const run = (id: number, op: string, work: () => Promise<SessionResponse>) => {
    inFlight += 1;
    let promise: Promise<SessionResponse>;
    try {
      promise = work();
    } catch (error) {
      fail(id, op, error);
      return;
    }
    promise.then(answer, (error: unknown) => fail(id, op, error));
  };

  const acquire = (id: number, request: NonNullable<SessionRequest__Output['acquire']>) => {
    run(id, 'acquire', async () => {
      const input = acquireFromWire(request);
      if (context.draining()) throw new StoreUnavailableError('quota service replica is shutting down');
      if (acquiring.size >= MAX_WAITING_PER_SESSION) {
        throw new StoreUnavailableError(
          `more than ${MAX_WAITING_PER_SESSION} Acquires waiting on one session`,
        );
      }
      const controller = new AbortController();
      acquiring.set(id, controller);
      context.waiting.add(controller);
      try {
        await context.authorize(input.budget);
        const grant = await engine.acquire({ ...input, signal: controller.signal });
        if (!open) {
          // Granted as the stream closed: nobody will use or settle this lease.
          await engine.settle({
            leaseId: grant.leaseId,
            usage: { inputTokens: 0, outputTokens: 0 },
            outcome: 'notSent',
          });
        }
        return { id, acquire: grantToWire(grant) };
      } catch (error) {
        if (context.draining() && controller.signal.aborted) throw controller.signal.reason;
        throw error;
      } finally {
        acquiring.delete(id);
        context.waiting.delete(controller);
      }
    });
  };

  const invalid = (id: number, field: string, message: string) => {
    inFlight += 1;
    answer({
      id,
      error: { code: status.INVALID_ARGUMENT, message, details: { 'tokenlease-field': field } },
    });
  };

  const handle = (message: SessionRequest__Output) => {
    const id = message.id;
    switch (message.op) {
      case 'acquire':
        acquire(id, message.acquire!);
        return;
      case 'settle':
        run(id, 'settle', async () => ({
          id,
          settle: settleResultToWire(await engine.settle(settleFromWire(message.settle!))),
        }));
        return;
      case 'heartbeat':
        run(id, 'heartbeat', async () => {
          const { expiresAtMs } = await engine.heartbeat(heartbeatFromWire(message.heartbeat!));
          return { id, heartbeat: { expires_at_ms: expiresAtMs } };
        });
        return;
      case 'cancel':
        acquiring.get(message.cancel!)?.abort(new Error('the caller gave up'));
        return;
      default:
        invalid(id, 'op', 'op: one of acquire, settle, heartbeat or cancel is required');
    }
  };

  call.on('data', (message: SessionRequest__Output) => {
    if (message.batch.length === 0) {
      handle(message);
      return;
    }
    // The client batches, so it reads batches: answer in kind.
    outbox.batching = true;
    if (message.op) invalid(message.id, 'batch', 'batch: a message with a batch carries no op of its own');
    for (const item of message.batch) {
      if (item.batch.length > 0) invalid(item.id, 'batch', 'batch: a batched message cannot carry a batch');
      else handle(item);
    }
  });
  context.sessions.add(endIfDrained);
  const close = () => {
    if (!open) return;
    open = false;
    outbox.clear();
    context.sessions.delete(endIfDrained);
    for (const controller of acquiring.values()) controller.abort(new Error('the session closed'));
  };
  call.on('end', () => {
    close();
    call.end();
  });
  call.on('cancelled', close);
  call.on('error', close);
}
