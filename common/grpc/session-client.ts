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
import { ChurnMap } from '../churn-map.ts';
import { CancelledError, StoreUnavailableError } from '../errors/errors.ts';
import { SESSION_BATCH_HEADER, SessionOutbox } from './session-outbox.ts';
import { errorFromStatus } from './status-errors.ts';

type Op = 'acquire' | 'settle' | 'heartbeat';
type Call = ClientDuplexStream<SessionRequest, SessionResponse__Output>;

interface Pending {
  op: Op;
  resolve: (response: SessionResponse__Output) => void;
  reject: (error: Error) => void;
  deadlineMs: number;
  /** performance.now() at which the message is given up. */
  deadlineAt: number;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

interface SessionStream {
  call: Call;
  outbox: SessionOutbox<SessionRequest>;
  openedAt: number;
  pending: ChurnMap<number, Pending>;
  retired: boolean;
  /**
   * One timer per stream, at the earliest deadline of a pending message, rather than one per
   * message: the timers and closures per message were the top site of what this client's heap
   * promoted under load (a sampling heap profile of bench:quota's load generator).
   */
  deadlineTimer: NodeJS.Timeout | undefined;
  deadlineTimerAt: number;
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
      const pending: Pending = {
        op,
        resolve,
        reject,
        deadlineMs,
        deadlineAt: performance.now() + deadlineMs,
        signal,
        onAbort: undefined,
      };
      if (signal) {
        pending.onAbort = () =>
          this.#giveUp(stream, id, new CancelledError('the caller gave up while waiting'));
        signal.addEventListener('abort', pending.onAbort, { once: true });
      }
      stream.pending.set(id, pending);
      this.#armDeadline(stream, pending.deadlineAt);
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
    const stream: SessionStream = {
      call,
      outbox,
      openedAt: Date.now(),
      pending: new ChurnMap(),
      retired: false,
      deadlineTimer: undefined,
      deadlineTimerAt: Infinity,
    };
    this.#current = stream;
    call.on('metadata', (headers: Metadata) => {
      if (headers.get(SESSION_BATCH_HEADER)[0] === '1') outbox.batching = true;
    });
    const answered = (response: SessionResponse__Output) => {
      const pending = stream.pending.get(response.id);
      if (!pending) return; // given up already
      stream.pending.delete(response.id);
      detach(pending);
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

  /** Fails pending message `id` with `error`, telling the service when it is an Acquire. */
  #giveUp(stream: SessionStream, id: number, error: Error): void {
    const pending = stream.pending.get(id);
    if (!pending) return;
    stream.pending.delete(id);
    detach(pending);
    if (pending.op === 'acquire' && !stream.call.writableEnded) stream.outbox.send({ id: 0, cancel: id });
    pending.reject(error);
    this.#endIfIdle(stream);
  }

  /** Makes sure the stream's deadline timer fires by `at`. */
  #armDeadline(stream: SessionStream, at: number): void {
    if (stream.deadlineTimer && stream.deadlineTimerAt <= at) return;
    if (stream.deadlineTimer) clearTimeout(stream.deadlineTimer);
    stream.deadlineTimerAt = at;
    // Unreferenced: the open stream is what keeps the process alive (grpc-js refs a busy connection).
    stream.deadlineTimer = setTimeout(() => this.#expire(stream), Math.max(0, at - performance.now()));
    stream.deadlineTimer.unref();
  }

  /** Gives up every pending message past its deadline, then waits for the next deadline. */
  #expire(stream: SessionStream): void {
    stream.deadlineTimer = undefined;
    const now = performance.now();
    let next = Infinity;
    for (const [id, pending] of stream.pending) {
      if (pending.deadlineAt <= now) {
        const { op, deadlineMs } = pending;
        this.#giveUp(
          stream,
          id,
          new StoreUnavailableError(`quota service did not answer ${op} within ${deadlineMs}ms`),
        );
      } else {
        next = Math.min(next, pending.deadlineAt);
      }
    }
    if (next !== Infinity) this.#armDeadline(stream, next);
  }

  #fail(stream: SessionStream, error: Error): void {
    if (stream.deadlineTimer) clearTimeout(stream.deadlineTimer);
    stream.deadlineTimer = undefined;
    for (const [id, pending] of stream.pending) {
      stream.pending.delete(id);
      detach(pending);
      pending.reject(error);
    }
  }
}

function detach(pending: Pending): void {
  if (pending.onAbort) pending.signal!.removeEventListener('abort', pending.onAbort);
}
