/**
 * The sidecar's own copy of recently used entries, so a hot answer is served without a round trip
 * to the store. Bounded by bytes (least recently used first out), and each copy is kept at most
 * `holdMs` and never past the entry's TTL: a `refresh` made through another sidecar is seen here
 * within `holdMs`.
 */
import type { CacheEntry } from './cache-entry.ts';

interface Held {
  entry: CacheEntry;
  untilMs: number;
  bytes: number;
}

export class LocalIndex {
  readonly #maxBytes: number;
  readonly #holdMs: number;
  readonly #now: () => number;
  /** Map order is recency. */
  readonly #held = new Map<string, Held>();
  #bytes = 0;

  constructor(maxBytes: number, holdMs: number, now: () => number = Date.now) {
    this.#maxBytes = maxBytes;
    this.#holdMs = holdMs;
    this.#now = now;
  }

  get bytes(): number {
    return this.#bytes;
  }

  get size(): number {
    return this.#held.size;
  }

  get(name: string): CacheEntry | undefined {
    const held = this.#held.get(name);
    if (held === undefined) return undefined;
    if (held.untilMs <= this.#now()) {
      this.delete(name);
      return undefined;
    }
    this.#held.delete(name);
    this.#held.set(name, held);
    return held.entry;
  }

  /** Keeps `entry`, which the store holds until `expiresAtMs`. */
  set(name: string, entry: CacheEntry, expiresAtMs: number): void {
    this.delete(name);
    const bytes = entry.body.length + 256;
    if (bytes > this.#maxBytes || this.#holdMs <= 0) return;
    this.#held.set(name, { entry, untilMs: Math.min(expiresAtMs, this.#now() + this.#holdMs), bytes });
    this.#bytes += bytes;
    for (const [oldest, held] of this.#held) {
      if (this.#bytes <= this.#maxBytes) break;
      this.#held.delete(oldest);
      this.#bytes -= held.bytes;
    }
  }

  delete(name: string): void {
    const held = this.#held.get(name);
    if (held === undefined) return;
    this.#held.delete(name);
    this.#bytes -= held.bytes;
  }
}
