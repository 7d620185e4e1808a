/**
 * Where the sidecar gets its leases: the quota service while it answers, and the budget's failure
 * mode while it does not (PRODUCT.md): `closed` refuses, `localShare` grants from a local limiter
 * holding a conservative share of each limit, `open` forwards unmetered. A background probe
 * switches back as soon as the quota service answers again.
 */
import type { FailureMode } from '../../common/budgets/types.ts';
import { StoreUnavailableError } from '../../common/errors/errors.ts';
import type { AcquireInput, QuotaApi } from '../../common/quota-api.ts';
import { HeldLease, type LeaseEvents } from './held-lease.ts';
import { SpareLeases, type SpareLeasesOptions } from './spare-leases.ts';

export type QuotaState = 'reachable' | 'unreachable';

export interface QuotaGateOptions {
  remote: QuotaApi;
  /** The local limiter for `localShare`; created on first use (its engine is loaded only then). */
  local: () => QuotaApi | Promise<QuotaApi>;
  failureMode: (provider: string, budget: string) => FailureMode;
  /** How often to ask the quota service whether it is back. */
  probeIntervalMs: number;
  /** A provider id to probe with (`usage(provider)`). */
  probeProvider: string;
  onStateChange?: (state: QuotaState) => void;
  /** A call was served in a failure mode. */
  onDegraded?: (mode: FailureMode, provider: string) => void;
  leaseEvents?: LeaseEvents;
  /** Keep spare leases taken ahead of calls (worth it only when the quota service is remote). */
  spares?: Omit<SpareLeasesOptions, 'quota'>;
}

function isUnavailable(error: unknown): boolean {
  return error instanceof StoreUnavailableError;
}

export class QuotaGate {
  readonly #options: QuotaGateOptions;
  #state: QuotaState = 'reachable';
  #probe: NodeJS.Timeout | undefined;
  #local: Promise<QuotaApi> | undefined;
  #closed = false;
  /** The quota service as remote leases see it (built once, not per lease). */
  readonly #remoteForLease: QuotaApi;
  readonly #spares: SpareLeases | undefined;

  constructor(options: QuotaGateOptions) {
    this.#options = options;
    this.#remoteForLease = this.#watchedRemote();
    if (options.spares !== undefined && options.spares.max > 0) {
      this.#spares = new SpareLeases({ ...options.spares, quota: this.#remoteForLease });
    }
  }

  get state(): QuotaState {
    return this.#state;
  }

  /** Whether calls for this provider and budget can be served now (for /readyz). */
  canServe(provider: string, budget: string): boolean {
    return this.#state === 'reachable' || this.#options.failureMode(provider, budget) !== 'closed';
  }

  async acquire(input: AcquireInput): Promise<HeldLease> {
    const events = this.#options.leaseEvents;
    if (this.#state === 'reachable') {
      const spare = this.#spares?.take(input);
      if (spare !== undefined) return new HeldLease('remote', this.#remoteForLease, spare, events);
      try {
        const grant = await this.#options.remote.acquire(input);
        this.#spares?.observe(input, grant);
        return new HeldLease('remote', this.#remoteForLease, grant, events);
      } catch (error) {
        if (!isUnavailable(error)) throw error;
        this.#markUnreachable();
        if (input.signal?.aborted) throw error;
      }
    }
    const mode = this.#options.failureMode(input.provider, input.budget);
    switch (mode) {
      case 'closed':
        throw new StoreUnavailableError('the quota service is unreachable and the budget fails closed');
      case 'open':
        this.#options.onDegraded?.(mode, input.provider);
        return HeldLease.open();
      case 'localShare': {
        this.#options.onDegraded?.(mode, input.provider);
        this.#local ??= Promise.resolve(this.#options.local());
        const local = await this.#local;
        const grant = await local.acquire(input);
        return new HeldLease('local', local, grant, events);
      }
    }
  }

  /** Settles and heartbeats of remote leases also notice the quota service going away. */
  #watchedRemote(): QuotaApi {
    const remote = this.#options.remote;
    const watch = <T>(promise: Promise<T>): Promise<T> =>
      promise.catch((error: unknown) => {
        if (isUnavailable(error)) this.#markUnreachable();
        throw error;
      });
    return {
      acquire: (input) => watch(remote.acquire(input)),
      settle: (input) => watch(remote.settle(input)),
      heartbeat: (input) => watch(remote.heartbeat(input)),
      usage: (provider) => watch(remote.usage(provider)),
    };
  }

  #markUnreachable(): void {
    if (this.#state === 'unreachable' || this.#closed) return;
    this.#state = 'unreachable';
    this.#options.onStateChange?.('unreachable');
    this.#probe = setInterval(() => void this.#probeOnce(), this.#options.probeIntervalMs);
    this.#probe.unref();
  }

  async #probeOnce(): Promise<void> {
    try {
      await this.#options.remote.usage(this.#options.probeProvider);
    } catch {
      return;
    }
    if (this.#state === 'reachable' || this.#closed) return;
    this.#state = 'reachable';
    clearInterval(this.#probe);
    this.#probe = undefined;
    this.#options.onStateChange?.('reachable');
  }

  /** Stops probing and gives back any spare leases. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#probe !== undefined) clearInterval(this.#probe);
    await this.#spares?.close();
  }
}
