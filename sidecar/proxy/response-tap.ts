/**
 * Sits between the provider's response body and the app: passes every byte through as it arrives
 * while reading the usage. Only when the sidecar added `include_usage` itself does it hold bytes,
 * up to the end of the current event, so it can drop the extra usage chunk.
 */
import type { TokenUsage } from '../../common/quota-api.ts';
import { SseSplitter } from '../providers/sse-splitter.ts';
import { StreamUsage, usageFromJson } from '../providers/usage.ts';
import type { Operation } from '../providers/routes.ts';

/** A JSON answer larger than this is passed on but not parsed for usage (then estimated). */
const MAX_JSON_KEPT = 16 * 1024 * 1024;

export type Emit = (bytes: Buffer) => void;

export class ResponseTap {
  readonly #stream: StreamUsage | undefined;
  readonly #splitter: SseSplitter | undefined;
  readonly #strip: boolean;
  readonly #operation: Operation;
  #kept: Buffer[] | undefined = [];
  #keptBytes = 0;
  /** Bytes of output seen, for metrics and estimates. */
  bytes = 0;

  constructor(operation: Operation, sse: boolean, stripUsageChunk: boolean) {
    this.#operation = operation;
    this.#strip = sse && stripUsageChunk;
    if (sse) {
      this.#stream = new StreamUsage(operation, stripUsageChunk);
      this.#splitter = new SseSplitter();
      this.#kept = undefined;
    }
  }

  /** Reads one chunk of the provider's body and emits what goes on to the app. */
  transform(chunk: Buffer, emit: Emit): void {
    this.bytes += chunk.length;
    const splitter = this.#splitter;
    const stream = this.#stream;
    if (splitter !== undefined && stream !== undefined) {
      if (!this.#strip) emit(chunk);
      for (const event of splitter.push(chunk)) {
        if (stream.accept(event) && this.#strip) emit(event.raw);
      }
    } else {
      emit(chunk);
      if (this.#kept !== undefined) {
        this.#keptBytes += chunk.length;
        if (this.#keptBytes > MAX_JSON_KEPT) this.#kept = undefined;
        else this.#kept.push(chunk);
      }
    }
  }

  /** At the end of the body: an event the provider never finished goes on as it came. */
  flush(emit: Emit): void {
    const rest = this.#splitter?.rest();
    if (this.#strip && rest !== undefined && rest.length > 0) emit(rest);
  }

  /**
   * What to settle: the stated usage, or for a stream that broke, the streamed text counted.
   * `completed`: the body arrived whole.
   */
  usage(
    completed: boolean,
    estimatedInput: number,
    reservedOutput: number,
    countTokens: (text: string) => number,
  ): TokenUsage {
    if (this.#stream !== undefined) return this.#stream.settleUsage(completed, estimatedInput, countTokens);
    if (completed && this.#kept !== undefined) {
      try {
        const usage = usageFromJson(this.#operation, JSON.parse(Buffer.concat(this.#kept).toString('utf8')));
        if (usage !== undefined) return usage;
      } catch {
        // Not JSON although 2xx: charge the reservation below.
      }
    }
    return { inputTokens: estimatedInput, outputTokens: reservedOutput };
  }
}
