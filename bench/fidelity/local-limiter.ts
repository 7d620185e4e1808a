/**
 * A pod's own limiter for the static-split baseline: a sliding-window log of requests and
 * reserved tokens plus a concurrency count, served first come first served. It is exact for its
 * share; what the static split lacks is any way to lend an idle pod's share to a busy one.
 */

export interface LocalLimits {
  requests: number;
  tokens: number;
  windowMs: number;
  concurrency: number;
}

interface Waiter {
  tokens: number;
  resolve: (slot: { release(): void } | undefined) => void;
  timer: NodeJS.Timeout;
}

export class LocalLimiter {
  readonly #limits: LocalLimits;
  /** Admissions in the window: when, and the tokens reserved. */
  readonly #log: Array<{ at: number; tokens: number }> = [];
  readonly #queue: Waiter[] = [];
  #inFlight = 0;
  #wake: NodeJS.Timeout | undefined;

  constructor(limits: LocalLimits) {
    this.#limits = limits;
  }

  /** A slot within `maxWaitMs`, or undefined when the wait ran out or `signal` aborted. */
  acquire(tokens: number, maxWaitMs: number, signal: AbortSignal): Promise<{ release(): void } | undefined> {
    return new Promise((resolve) => {
      const waiter: Waiter = {
        tokens,
        resolve,
        timer: setTimeout(() => this.#drop(waiter), maxWaitMs),
      };
      signal.addEventListener('abort', () => this.#drop(waiter), { once: true });
      this.#queue.push(waiter);
      this.#drain();
    });
  }

  #drop(waiter: Waiter): void {
    const index = this.#queue.indexOf(waiter);
    if (index < 0) return;
    this.#queue.splice(index, 1);
    clearTimeout(waiter.timer);
    waiter.resolve(undefined);
    this.#drain();
  }

  #drain(): void {
    const now = performance.now();
    while (this.#log.length > 0 && this.#log[0]!.at <= now - this.#limits.windowMs) this.#log.shift();
    while (this.#queue.length > 0) {
      const head = this.#queue[0]!;
      if (this.#inFlight + 1 > this.#limits.concurrency) return;
      const used = this.#log.reduce((sum, entry) => sum + entry.tokens, 0);
      if (this.#log.length + 1 > this.#limits.requests || used + head.tokens > this.#limits.tokens) {
        // Wait for the oldest admission to leave the window.
        if (this.#wake === undefined && this.#log.length > 0) {
          const at = this.#log[0]!.at + this.#limits.windowMs - now + 1;
          this.#wake = setTimeout(() => {
            this.#wake = undefined;
            this.#drain();
          }, at);
        }
        return;
      }
      this.#queue.shift();
      clearTimeout(head.timer);
      this.#log.push({ at: now, tokens: head.tokens });
      this.#inFlight += 1;
      let released = false;
      head.resolve({
        release: () => {
          if (released) return;
          released = true;
          this.#inFlight -= 1;
          this.#drain();
        },
      });
    }
  }
}
