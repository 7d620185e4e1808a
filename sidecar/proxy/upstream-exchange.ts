/**
 * One request to a provider through undici's dispatch handler API, not `request()`: the response
 * body goes chunk by chunk to one consumer (the pump to the app, or a bounded read of an error
 * body) with pause/resume for backpressure. `request()` builds per call what the sidecar never
 * uses: a Readable for the body (its buffering, nextTick-driven events and destroy plumbing), an
 * AsyncResource and its async scope; undici still does all the HTTP work (pool, keep-alive,
 * timeouts, parsing). The errors are undici's own, as `request()` raised them.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { Dispatcher } from 'undici';

export type UpstreamHeaders = Record<string, string | string[] | undefined>;

/** Where the body goes once someone reads it. */
export interface BodySink {
  data(chunk: Buffer): void;
  end(): void;
  error(error: Error): void;
}

export interface UpstreamRequest {
  origin: string;
  path: string;
  method: 'POST';
  headers: Record<string, string | string[]>;
  body: Buffer;
}

/** The provider's answer: its head at once, its body as it arrives (UpstreamExchange.consume). */
export interface UpstreamResponse {
  statusCode: number;
  headers: UpstreamHeaders;
  body: UpstreamExchange;
}

class AbortedByCaller extends Error {
  override name = 'AbortedByCaller';
}

export class UpstreamExchange implements Dispatcher.DispatchHandler {
  readonly #signal: AbortSignal;
  readonly #onAbort = () => this.abort(this.#signal.reason as Error);
  #controller: Dispatcher.DispatchController | undefined;
  #abortReason: Error | undefined;
  #resolveHead!: (response: UpstreamResponse) => void;
  #rejectHead!: (error: Error) => void;
  #headReceived = false;
  #sink: BodySink | undefined;
  /** Chunks that arrived before a consumer attached, or while it was paused. */
  #queue: Buffer[] = [];
  #paused = false;
  #ended = false;
  #error: Error | undefined;
  #done = false;

  private constructor(signal: AbortSignal) {
    this.#signal = signal;
  }

  /**
   * Sends the request; resolves with the head, or rejects with undici's error (or the signal's
   * reason when the caller gave up first). `signal` aborts the exchange at any point.
   */
  static send(agent: Dispatcher, request: UpstreamRequest, signal: AbortSignal): Promise<UpstreamResponse> {
    if (signal.aborted) return Promise.reject(signal.reason as Error);
    const exchange = new UpstreamExchange(signal);
    const head = new Promise<UpstreamResponse>((resolve, reject) => {
      exchange.#resolveHead = resolve;
      exchange.#rejectHead = reject;
    });
    signal.addEventListener('abort', exchange.#onAbort, { once: true });
    try {
      agent.dispatch(request, exchange);
    } catch (error) {
      exchange.onResponseError(undefined, error as Error);
    }
    return head;
  }

  /** Attaches the one consumer of the body; what arrived before is handed over first. */
  consume(sink: BodySink): void {
    this.#sink = sink;
    this.#drain();
  }

  /** Stops reading from the provider until resume() (the app's side is full). */
  pause(): void {
    this.#paused = true;
    this.#controller?.pause();
  }

  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    this.#drain();
    if (!this.#paused) this.#controller?.resume();
  }

  /** Gives up on the exchange; the connection is closed, not reused. */
  abort(reason: Error = new AbortedByCaller('the upstream exchange was aborted')): void {
    if (this.#done) return;
    if (this.#controller === undefined) this.#abortReason = reason;
    else this.#controller.abort(reason);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    if (this.#abortReason !== undefined) controller.abort(this.#abortReason);
  }

  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: IncomingHttpHeaders,
  ): void {
    // 1xx: informational, the answer follows.
    if (statusCode < 200) return;
    this.#headReceived = true;
    this.#resolveHead({ statusCode, headers, body: this });
  }

  onResponseData(_controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#sink !== undefined && !this.#paused && this.#queue.length === 0) this.#sink.data(chunk);
    else this.#queue.push(chunk);
  }

  onResponseEnd(): void {
    this.#ended = true;
    this.#finish();
    this.#drain();
  }

  onResponseError(_controller: Dispatcher.DispatchController | undefined, error: Error): void {
    this.#finish();
    if (!this.#headReceived) {
      this.#rejectHead(error);
      return;
    }
    // A broken body is reported at once, paused or not, as a destroyed stream would be.
    this.#queue.length = 0;
    this.#paused = false;
    this.#error = error;
    this.#drain();
  }

  #finish(): void {
    this.#done = true;
    this.#signal.removeEventListener('abort', this.#onAbort);
  }

  /** Hands the consumer what is queued, then the end or the error, while it is not paused. */
  #drain(): void {
    const sink = this.#sink;
    if (sink === undefined) return;
    while (this.#queue.length > 0 && !this.#paused) sink.data(this.#queue.shift()!);
    if (this.#paused || this.#queue.length > 0) return;
    if (this.#error !== undefined) {
      const error = this.#error;
      this.#error = undefined;
      this.#sink = undefined;
      sink.error(error);
    } else if (this.#ended) {
      this.#ended = false;
      this.#sink = undefined;
      sink.end();
    }
  }
}

/** The whole body, cut at `max` bytes (the rest is not read: the exchange is aborted). */
export function readBounded(body: UpstreamExchange, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let full = false;
    body.consume({
      data(chunk) {
        if (full) return;
        if (size + chunk.length > max) {
          full = true;
          chunks.push(chunk.subarray(0, max - size));
          resolve(Buffer.concat(chunks));
          body.abort();
          return;
        }
        chunks.push(chunk);
        size += chunk.length;
      },
      end: () => resolve(Buffer.concat(chunks, size)),
      error(error) {
        if (!full) reject(error);
      },
    });
  });
}
