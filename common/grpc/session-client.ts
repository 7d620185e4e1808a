/**
 * The client side of QuotaService.Session: Acquire, Settle and Heartbeat multiplexed over one
 * long-lived stream, each message with its own id, deadline and abort signal, answered with the
 * same typed errors as the unary calls. A broken stream fails what was pending on it
 * (StoreUnavailableError, as a failed unary call would) and the next call opens a new one.
 *
 * Messages sent in one turn of the event loop go out as one batch once the service has said it
 * takes them (session-outbox.ts); answers may come in batches too.
 *
 * A stream is retired after `maxAgeMs`: new messages go to a fresh stream (with fresh metadata,
 * such as a rotated ServiceAccount token, and possibly another replica) while the old one ends
 * once its answers are in. The server recycles connections too, but that would cut streams.
 */
import { Metadata, type ClientDuplexStream, type ServiceError } from '@grpc/grpc-js';
import type { QuotaServiceClient } from '../../proto/gen/tokenlease/v1/QuotaService.ts';
import type { SessionRequest } from '../../proto/gen/tokenlease/v1/SessionRequest.ts';
import type { SessionResponse__Output } from '../../proto/gen/tokenlease/v1/SessionResponse.ts';
import { CancelledError, StoreUnavailableError } from '../errors/errors.ts';
import { SESSION_BATCH_HEADER, SessionOutbox } from './session-outbox.ts';
import { errorFromStatus } from './status-errors.ts';

type Op = 'acquire' | 'settle' | 'heartbeat';
type Call = ClientDuplexStream<SessionRequest, SessionResponse__Output>;

interface Pending {
  resolve: (response: SessionResponse__Output) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
  detach: () => void;
}

interface SessionStream {
  call: Call;
  outbox: SessionOutbox<SessionRequest>;
  openedAt: number;
  pending: Map<number, Pending>;
  retired: boolean;
}

export interface QuotaSessionOptions {
  /** Metadata for each new stream (identity token); read again whenever a stream opens. */
  metadata?: () => Metadata;
  /** Age at which a stream is retired for a fresh one. Default 4 minutes. */
  maxAgeMs?: number;
}

export const DEFAULT_SESSION_MAX_AGE_MS = 4 * 60_000;

/** The unary error a session answer stands for, so one mapping (status-errors.ts) serves both. */
function serviceErrorOf(error: NonNullable<SessionResponse__Output['error']>): ServiceError {
  const metadata = new Metadata();
  for (const [key, value] of Object.entries(error.details)) metadata.set(key, value);
  return Object.assign(new Error(error.message), { code: error.code, details: error.message, metadata });
}

export class QuotaSession {
  readonly #client: QuotaServiceClient;
  readonly #options: QuotaSessionOptions;
  #current: SessionStream | undefined;
  #nextId = 1;
  #closed = false;

  constructor(client: QuotaServiceClient, options: QuotaSessionOptions = {}) {
    this.#client = client;
    this.#options = options;
  }

  /** Sends one operation and resolves with its answer (a typed error on a non-OK answer). */
  send(
    op: Op,
    payload: NonNullable<SessionRequest[Op]>,
    deadlineMs: number,
    signal?: AbortSignal,
  ): Promise<SessionResponse__Output> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(new CancelledError('the caller gave up before the lease was granted'));
        return;
      }
      if (this.#closed) {
        reject(new StoreUnavailableError('quota client is closed'));
        return;
      }
      const id = this.#nextId++;
      const stream = this.#stream();
      const giveUp = (error: Error) => {
        if (!stream.pending.delete(id)) return;
        clearTimeout(pending.timer);
        pending.detach();
        if (op === 'acquire' && !stream.call.writableEnded) stream.outbox.send({ id: 0, cancel: id });
        reject(error);
        this.#endIfIdle(stream);
      };
      const onAbort = () => giveUp(new CancelledError('the caller gave up while waiting'));
      const pending: Pending = {
        resolve,
        reject,
        timer: setTimeout(
          () =>
            giveUp(new StoreUnavailableError(`quota service did not answer ${op} within ${deadlineMs}ms`)),
          deadlineMs,
        ),
        detach: () => signal?.removeEventListener('abort', onAbort),
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      stream.pending.set(id, pending);
      stream.outbox.send({ id, [op]: payload });
    });
  }

  close(): void {
    this.#closed = true;
    const current = this.#current;
    this.#current = undefined;
    if (current) {
      current.outbox.clear();
      current.call.end();
      this.#fail(current, new StoreUnavailableError('quota client is closed'));
    }
  }

  /** The stream for a new message: the current one, or a fresh one if it is old or broken. */
  #stream(): SessionStream {
    const current = this.#current;
    const maxAgeMs = this.#options.maxAgeMs ?? DEFAULT_SESSION_MAX_AGE_MS;
    if (current && Date.now() - current.openedAt < maxAgeMs) return current;
    if (current) {
      current.retired = true;
      this.#endIfIdle(current);
    }
    const call = this.#options.metadata
      ? this.#client.Session(this.#options.metadata())
      : this.#client.Session();
    const outbox = new SessionOutbox<SessionRequest>((message) => {
      if (!call.writableEnded) call.write(message);
    });
    const stream: SessionStream = { call, outbox, openedAt: Date.now(), pending: new Map(), retired: false };
    this.#current = stream;
    call.on('metadata', (headers: Metadata) => {
      if (headers.get(SESSION_BATCH_HEADER)[0] === '1') outbox.batching = true;
    });
    const answered = (response: SessionResponse__Output) => {
      const pending = stream.pending.get(response.id);
      if (!pending) return; // given up already
      stream.pending.delete(response.id);
      clearTimeout(pending.timer);
      pending.detach();
      if (response.result === 'error') pending.reject(errorFromStatus(serviceErrorOf(response.error!)));
      else pending.resolve(response);
    };
    call.on('data', (response: SessionResponse__Output) => {
      if (response.batch.length > 0) for (const item of response.batch) answered(item);
      else answered(response);
      this.#endIfIdle(stream);
    });
    const broken = (reason: string) => {
      if (this.#current === stream) this.#current = undefined;
      outbox.clear();
      this.#fail(stream, new StoreUnavailableError(`quota session ${reason}`));
    };
    call.on('error', (error: Error) => broken(`failed: ${error.message}`));
    call.on('end', () => broken('ended by the quota service'));
    return stream;
  }

  #endIfIdle(stream: SessionStream): void {
    if (stream.retired && stream.pending.size === 0 && !stream.call.writableEnded) {
      stream.outbox.flush();
      stream.call.end();
    }
  }

  #fail(stream: SessionStream, error: Error): void {
    for (const [id, pending] of stream.pending) {
      stream.pending.delete(id);
      clearTimeout(pending.timer);
      pending.detach();
      pending.reject(error);
    }
  }
}
