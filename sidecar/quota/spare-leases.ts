/**
 * Spare leases: a few leases the sidecar takes from the quota service ahead of calls, so that a
 * call can start without waiting for its own round trip (most of what the sidecar adds to a call
 * when the quota service is remote; bench:sidecar).
 *
 * A spare is an ordinary lease: it reserves a request, tokens and a concurrency slot, and the call
 * that takes it settles it with the real usage. One that no call takes within `idleMs` is settled
 * `unused`, which charges nothing. Spares must never cost anyone capacity, so they are kept only
 * while the account is far from its limits: the last grant for the same provider, model, budget
 * and priority must have left at least `minFreeFraction` of every limit free, and room for
 * `minFreeRequests` more requests of that size (the quota service says so on each direct grant).
 * A spare is asked for without waiting (maxWaitMs 0), so once anything is queued none is granted;
 * under contention every call goes through the quota service's fair order as before.
 *
 * A spare is as large as the largest call seen lately for its key; a call it does not cover asks
 * for its own lease.
 */
import type { AcquireInput, Grant, QuotaApi } from '../../common/quota-api.ts';

export interface SpareLeasesOptions {
  quota: QuotaApi;
  /** Spares kept per provider, model, budget and priority; 0 keeps none. */
  max: number;
  /** A spare no call took for this long goes back (settled `unused`). */
  idleMs: number;
  /** Kept only while the last grant left at least this share of each limit free... */
  minFreeFraction?: number;
  /** ...and room for at least this many more requests of the same size. */
  minFreeRequests?: number;
  /** A spare was taken by a call, given back unused, or refused by the quota service. */
  onEvent?: (event: SpareEvent) => void;
}

export type SpareEvent = 'taken' | 'returned' | 'refused';

export const DEFAULT_MIN_FREE_FRACTION = 0.5;
export const DEFAULT_MIN_FREE_REQUESTS = 64;
/**
 * Keys (models, priorities) with a pool at once: a provider that takes any model name must not
 * let callers grow the map without bound.
 */
const MAX_POOLS = 256;
/** A spare's size is the largest call of the last one to two of these periods. */
const SIZE_PERIOD_MS = 10_000;

interface Spare {
  grant: Grant;
  /** performance.now() when granted. */
  at: number;
}

interface Size {
  inputTokens: number;
  maxOutputTokens: number;
}

/** The spares of one provider, model, budget and priority. */
interface Pool {
  request: Omit<AcquireInput, 'inputTokens' | 'maxOutputTokens' | 'maxWaitMs' | 'requestId' | 'signal'>;
  spares: Spare[];
  /** Spares asked for and not answered yet. */
  asking: number;
  /** Whether the last grant said the account has room for spares. */
  roomy: boolean;
  size: Size;
  /** The largest call of the previous size period; `size` also covers this one. */
  previousSize: Size;
  sizeSince: number;
}

function keyOf(input: AcquireInput): string {
  return `${input.provider}\u0000${input.model}\u0000${input.budget}\u0000${input.priority ?? ''}`;
}

function covers(grant: Grant, input: AcquireInput): boolean {
  return (
    grant.reserved.inputTokens >= input.inputTokens && grant.reserved.outputTokens >= input.maxOutputTokens
  );
}

export class SpareLeases {
  readonly #options: Required<Omit<SpareLeasesOptions, 'onEvent'>> & Pick<SpareLeasesOptions, 'onEvent'>;
  readonly #pools = new Map<string, Pool>();
  /** Asks not answered yet, so that close() can give back what they bring. */
  readonly #asks = new Set<Promise<void>>();
  #sweeper: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(options: SpareLeasesOptions) {
    this.#options = {
      minFreeFraction: DEFAULT_MIN_FREE_FRACTION,
      minFreeRequests: DEFAULT_MIN_FREE_REQUESTS,
      ...options,
    };
  }

  /** Spares held now, over all keys. */
  get held(): number {
    let held = 0;
    for (const pool of this.#pools.values()) held += pool.spares.length;
    return held;
  }

  /** A spare lease that covers this call, taken from the pool (undefined: ask as usual). */
  take(input: AcquireInput): Grant | undefined {
    if (this.#options.max === 0 || this.#closed) return undefined;
    const pool = this.#pools.get(keyOf(input));
    if (pool === undefined) return undefined;
    this.#noteSize(pool, input);
    const now = performance.now();
    // The newest first: it has the longest to live.
    for (let i = pool.spares.length - 1; i >= 0; i--) {
      const spare = pool.spares[i]!;
      if (!covers(spare.grant, input) || this.#tooOld(spare, now)) continue;
      pool.spares.splice(i, 1);
      this.#options.onEvent?.('taken');
      this.#refill(pool);
      return { ...spare.grant, waitedMs: 0 };
    }
    this.#refill(pool);
    return undefined;
  }

  /** Learns from a call's own grant whether spares are worth keeping for its key, and how large. */
  observe(input: AcquireInput, grant: Grant): void {
    if (this.#options.max === 0 || this.#closed) return;
    const key = keyOf(input);
    let pool = this.#pools.get(key);
    if (pool === undefined) {
      if (!this.#roomy(grant) || !this.#makeRoomForPool()) return;
      const size = { inputTokens: input.inputTokens, maxOutputTokens: input.maxOutputTokens };
      pool = {
        request: {
          provider: input.provider,
          model: input.model,
          budget: input.budget,
          priority: input.priority,
        },
        spares: [],
        asking: 0,
        roomy: false,
        size,
        previousSize: { ...size },
        sizeSince: performance.now(),
      };
      this.#pools.set(key, pool);
    } else {
      this.#noteSize(pool, input);
    }
    pool.roomy = this.#roomy(grant);
    this.#refill(pool);
  }

  /** Gives every spare back. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#sweeper !== undefined) clearInterval(this.#sweeper);
    await Promise.all(this.#asks);
    const spares = [...this.#pools.values()].flatMap((pool) => pool.spares.splice(0));
    this.#pools.clear();
    await Promise.all(spares.map((spare) => this.#giveBack(spare)));
  }

  /** Whether a new pool fits, after dropping pools that hold and await nothing. */
  #makeRoomForPool(): boolean {
    if (this.#pools.size < MAX_POOLS) return true;
    for (const [key, pool] of this.#pools) {
      if (pool.spares.length === 0 && pool.asking === 0) this.#pools.delete(key);
    }
    return this.#pools.size < MAX_POOLS;
  }

  #roomy(grant: Grant): boolean {
    const room = grant.headroom;
    return (
      room !== undefined &&
      room.fraction >= this.#options.minFreeFraction &&
      room.requests >= this.#options.minFreeRequests
    );
  }

  #noteSize(pool: Pool, input: AcquireInput): void {
    const now = performance.now();
    if (now - pool.sizeSince >= SIZE_PERIOD_MS) {
      // A new period: the size shrinks back to the largest call of the last period and this one.
      pool.previousSize = pool.size;
      pool.size = { inputTokens: 0, maxOutputTokens: 0 };
      pool.sizeSince = now;
    }
    // In place: this runs on every call of a key with a pool.
    const size = pool.size;
    if (input.inputTokens > size.inputTokens) size.inputTokens = input.inputTokens;
    if (input.maxOutputTokens > size.maxOutputTokens) size.maxOutputTokens = input.maxOutputTokens;
  }

  #spareSize(pool: Pool): Size {
    return {
      inputTokens: Math.max(pool.size.inputTokens, pool.previousSize.inputTokens),
      maxOutputTokens: Math.max(pool.size.maxOutputTokens, pool.previousSize.maxOutputTokens),
    };
  }

  #refill(pool: Pool): void {
    while (pool.roomy && !this.#closed && pool.spares.length + pool.asking < this.#options.max) {
      pool.asking++;
      const ask = this.#options.quota
        .acquire({ ...pool.request, ...this.#spareSize(pool), maxWaitMs: 0 })
        .then(
          (grant) => {
            pool.asking--;
            pool.roomy = this.#roomy(grant);
            if (this.#closed) return this.#giveBack({ grant, at: performance.now() });
            pool.spares.push({ grant, at: performance.now() });
            this.#sweep();
          },
          () => {
            // Refused (the account is busy) or unreachable: no spares until a call's own grant
            // shows room again.
            pool.asking--;
            pool.roomy = false;
            this.#options.onEvent?.('refused');
          },
        )
        .finally(() => this.#asks.delete(ask));
      this.#asks.add(ask);
    }
  }

  /** Gives back spares idle too long, every half idle period while any are held. */
  #sweep(): void {
    if (this.#sweeper !== undefined) return;
    const every = Math.max(10, Math.floor(this.#options.idleMs / 2));
    this.#sweeper = setInterval(() => {
      const now = performance.now();
      for (const [key, pool] of this.#pools) {
        const idle = pool.spares.filter((spare) => this.#tooOld(spare, now));
        if (idle.length > 0) pool.spares = pool.spares.filter((spare) => !idle.includes(spare));
        for (const spare of idle) void this.#giveBack(spare);
        if (pool.spares.length === 0 && pool.asking === 0 && now - pool.sizeSince > 2 * SIZE_PERIOD_MS) {
          this.#pools.delete(key);
        }
      }
      if (this.held === 0) {
        clearInterval(this.#sweeper);
        this.#sweeper = undefined;
      }
    }, every);
    this.#sweeper.unref();
  }

  /** Idle too long, or past a third of its lease timeout (a call could not heartbeat in time). */
  #tooOld(spare: Spare, now: number): boolean {
    const age = now - spare.at;
    return age >= this.#options.idleMs || age >= spare.grant.leaseTimeoutMs / 3;
  }

  async #giveBack(spare: Spare): Promise<void> {
    this.#options.onEvent?.('returned');
    try {
      await this.#options.quota.settle({
        leaseId: spare.grant.leaseId,
        usage: { inputTokens: 0, outputTokens: 0 },
        outcome: 'unused',
      });
    } catch {
      // The lease expires by itself.
    }
  }
}
