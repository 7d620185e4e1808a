/**
 * The writing side of a QuotaService.Session stream, either end. Messages written in one turn of
 * the event loop go out as one message carrying them in `batch`: gRPC and HTTP/2 cost more per
 * message (framing, a stream write, a protobuf pass, an event on the other side) than the quota
 * operation itself, and under load many operations are ready in the same turn. A lone message
 * goes out as it is, one turn later at most.
 */

/** Header by which a quota service says it takes batches on a Session stream. */
export const SESSION_BATCH_HEADER = 'tokenlease-session-batch';

/** Most messages one batch carries (bounds the size of one protobuf message). */
export const MAX_SESSION_BATCH = 256;

export class SessionOutbox<T extends { batch?: T[] }> {
  readonly #write: (message: T) => void;
  #queue: T[] = [];
  #scheduled: NodeJS.Immediate | undefined;
  /** Whether the other end takes batches; until it does, every message goes out alone at once. */
  batching = false;

  constructor(write: (message: T) => void) {
    this.#write = write;
  }

  send(message: T): void {
    if (!this.batching) {
      this.#write(message);
      return;
    }
    this.#queue.push(message);
    if (this.#queue.length >= MAX_SESSION_BATCH) this.flush();
    else this.#scheduled ??= setImmediate(() => this.flush());
  }

  /** Writes what is queued now (before the stream ends, for one). */
  flush(): void {
    if (this.#scheduled) clearImmediate(this.#scheduled);
    this.#scheduled = undefined;
    const queue = this.#queue;
    if (queue.length === 0) return;
    this.#queue = [];
    this.#write(queue.length === 1 ? queue[0]! : ({ batch: queue } as T));
  }

  /** Drops what is queued (the stream is gone). */
  clear(): void {
    if (this.#scheduled) clearImmediate(this.#scheduled);
    this.#scheduled = undefined;
    this.#queue = [];
  }
}
