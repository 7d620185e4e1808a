/**
 * An exact sliding-window log: every admitted amount is kept with its arrival time, and the window
 * ending at `now` holds the entries with `now - windowMs < time <= now`. Admitting only when the
 * window's sum plus the new amount stays within the limit guarantees that over ANY interval of
 * length `windowMs` the admitted amounts sum to at most the limit (the last admission inside such
 * an interval saw every earlier one in its own window). Corrections may only lower an amount, so
 * they never break that guarantee.
 *
 * Entries are pruned from the front as they age out, and the arrays are compacted once the dead
 * prefix is large, so each operation is amortized O(1). Arrival times must not decrease.
 */
export class SlidingWindowLog {
  readonly windowMs: number;
  private times: number[] = [];
  private amounts: number[] = [];
  /** Index of the first entry still inside the window. */
  private head = 0;
  /** Sequence number of times[0]: entries keep their sequence number across compactions. */
  private base = 0;
  private sum = 0;

  constructor(windowMs: number) {
    if (!(windowMs > 0)) throw new RangeError(`windowMs must be positive, got ${windowMs}`);
    this.windowMs = windowMs;
  }

  /** Drops entries that are out of the window ending at `now`. */
  prune(now: number): void {
    const cutoff = now - this.windowMs;
    const { times, amounts } = this;
    let head = this.head;
    while (head < times.length && times[head]! <= cutoff) {
      this.sum -= amounts[head]!;
      head++;
    }
    this.head = head;
    if (head === times.length) {
      this.base += head;
      this.times = [];
      this.amounts = [];
      this.head = 0;
      this.sum = 0; // also clears float drift
    } else if (head > 1024 && head * 2 > times.length) {
      this.base += head;
      this.times = times.slice(head);
      this.amounts = amounts.slice(head);
      this.head = 0;
    }
  }

  /** The sum inside the window ending at `now`. */
  used(now: number): number {
    this.prune(now);
    return this.sum;
  }

  /** Records `amount` at `now`; returns the entry's sequence number for a later correction. */
  add(now: number, amount: number): number {
    this.prune(now);
    this.times.push(now);
    this.amounts.push(amount);
    this.sum += amount;
    return this.base + this.times.length - 1;
  }

  /** Replaces the amount of entry `seq` (a no-op once it has left the window). */
  correct(seq: number, amount: number): void {
    const index = seq - this.base;
    if (index < this.head || index >= this.times.length) return;
    this.sum += amount - this.amounts[index]!;
    this.amounts[index] = amount;
  }

  /**
   * Milliseconds from `now` until `amount` more fits under `limit`: entries are walked from the
   * oldest until enough of them have aged out. 0 when it fits now; Infinity when it never can.
   */
  waitFor(now: number, amount: number, limit: number): number {
    this.prune(now);
    if (amount > limit) return Infinity;
    let excess = this.sum + amount - limit;
    if (excess <= 0) return 0;
    for (let i = this.head; i < this.times.length; i++) {
      excess -= this.amounts[i]!;
      if (excess <= 0) return this.times[i]! + this.windowMs - now;
    }
    return this.windowMs;
  }

  /** Milliseconds from `now` until every current entry has aged out (the window is empty again). */
  drainMs(now: number): number {
    this.prune(now);
    const last = this.times.length - 1;
    return last < this.head ? 0 : this.times[last]! + this.windowMs - now;
  }

  /** Entries inside the window (for tests and summaries). */
  size(now: number): number {
    this.prune(now);
    return this.times.length - this.head;
  }
}
