/**
 * Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection does it
 * (@kubernetes/client-node has none). A candidate takes the Lease when it is free or when its
 * holder has not renewed it for leaseDuration as measured on the candidate's own clock (so clocks
 * need not agree); the leader renews every retryPeriod and gives up leading when it could not renew
 * for renewDeadline. Writes carry the resourceVersion read, so of two candidates only one wins.
 */
import { ApiException, V1MicroTime, type CoordinationV1Api, type V1Lease } from '@kubernetes/client-node';
import { setTimeout as sleep } from 'node:timers/promises';

export interface LeaderElectionOptions {
  api: CoordinationV1Api;
  namespace: string;
  name: string;
  /** Unique per replica (pod name + a random suffix). */
  identity: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
  /** Called on becoming leader; `signal` aborts when leadership is lost or the elector stops. */
  onStartedLeading(signal: AbortSignal): void;
  onStoppedLeading(): void;
  onError?(error: unknown): void;
}

type Attempt = 'leading' | 'heldByOther' | 'failed';

export class LeaderElector {
  readonly #o: LeaderElectionOptions;
  readonly #stop = new AbortController();
  #observed: { key: string; at: number } | undefined;
  #lease: V1Lease | undefined;
  #leading: AbortController | undefined;
  #running: Promise<void> | undefined;

  constructor(options: LeaderElectionOptions) {
    if (!(
      options.leaseDurationMs > options.renewDeadlineMs && options.renewDeadlineMs > options.retryPeriodMs
    )) {
      throw new RangeError('leader election needs leaseDuration > renewDeadline > retryPeriod');
    }
    this.#o = options;
  }

  get isLeader(): boolean {
    return this.#leading !== undefined;
  }

  /** Campaigns until stop(): acquires, leads while it renews, and campaigns again if it loses. */
  start(): void {
    this.#running ??= this.#loop();
  }

  /** Stops campaigning; a leader releases the Lease so another replica takes over at once. */
  async stop(): Promise<void> {
    this.#stop.abort();
    await this.#running;
    if (this.#leading) {
      this.#lost();
      await this.#release();
    }
  }

  async #loop(): Promise<void> {
    const signal = this.#stop.signal;
    let lastRenew = 0;
    while (!signal.aborted) {
      const result = await this.#tryAcquireOrRenew();
      const now = Date.now();
      if (result === 'leading') {
        lastRenew = now;
        if (!this.#leading) {
          this.#leading = new AbortController();
          this.#o.onStartedLeading(this.#leading.signal);
        }
      } else if (this.#leading && (result === 'heldByOther' || now - lastRenew >= this.#o.renewDeadlineMs)) {
        this.#lost();
      }
      await sleep(this.#o.retryPeriodMs, undefined, { signal }).catch(() => {});
    }
  }

  #lost(): void {
    this.#leading?.abort();
    this.#leading = undefined;
    this.#o.onStoppedLeading();
  }

  #spec(previous: V1Lease | undefined): V1Lease['spec'] {
    const now = new V1MicroTime();
    const wasMine = previous?.spec?.holderIdentity === this.#o.identity;
    return {
      holderIdentity: this.#o.identity,
      leaseDurationSeconds: Math.max(1, Math.ceil(this.#o.leaseDurationMs / 1000)),
      acquireTime: wasMine ? previous?.spec?.acquireTime : now,
      renewTime: now,
      leaseTransitions: (previous?.spec?.leaseTransitions ?? 0) + (wasMine || !previous ? 0 : 1),
    };
  }

  async #tryAcquireOrRenew(): Promise<Attempt> {
    const { api, namespace, name } = this.#o;
    try {
      let current: V1Lease;
      try {
        current = await api.readNamespacedLease({ name, namespace });
      } catch (error) {
        if (!(error instanceof ApiException) || error.code !== 404) throw error;
        this.#lease = await api.createNamespacedLease({
          namespace,
          body: { metadata: { name, namespace }, spec: this.#spec(undefined) },
        });
        return 'leading';
      }
      // Expiry is judged by when *we* saw the record change, not by its renewTime (clock skew).
      const key = `${current.spec?.holderIdentity ?? ''}|${current.metadata?.resourceVersion ?? ''}`;
      if (this.#observed?.key !== key) this.#observed = { key, at: Date.now() };
      const holder = current.spec?.holderIdentity ?? '';
      const durationMs = (current.spec?.leaseDurationSeconds ?? 0) * 1000;
      if (holder !== '' && holder !== this.#o.identity && this.#observed.at + durationMs > Date.now()) {
        return 'heldByOther';
      }
      this.#lease = await api.replaceNamespacedLease({
        name,
        namespace,
        body: { metadata: { ...current.metadata }, spec: this.#spec(current) },
      });
      return 'leading';
    } catch (error) {
      // A 409 means another candidate wrote first: not an error, just not us this round.
      if (!(error instanceof ApiException && error.code === 409)) this.#o.onError?.(error);
      return 'failed';
    }
  }

  async #release(): Promise<void> {
    const lease = this.#lease;
    if (!lease?.spec) return;
    try {
      await this.#o.api.replaceNamespacedLease({
        name: this.#o.name,
        namespace: this.#o.namespace,
        body: {
          metadata: { ...lease.metadata },
          spec: { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1, renewTime: new V1MicroTime() },
        },
      });
    } catch (error) {
      // Someone took it meanwhile, or the API server is gone: the Lease then expires by itself.
      this.#o.onError?.(error);
    }
  }
}
