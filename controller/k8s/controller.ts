/**
 * The tokenlease controller: while it leads (leader-election.ts), informers on LLMProvider and
 * LLMBudget feed a work queue keyed by Kind/namespace/name; workers run the level-triggered
 * reconcilers, which re-read the object from the informer cache. A reconcile that throws is
 * retried with per-key exponential backoff; one that returns is forgotten and comes back after
 * its requeueAfter. Replicas that do not lead only campaign.
 */
import {
  ApiException,
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  makeInformer,
  type Informer,
  type KubeConfig,
  type KubernetesListObject,
  type ObjectCache,
} from '@kubernetes/client-node';
import { setTimeout as sleep } from 'node:timers/promises';
import type { BudgetSet } from '../../common/budgets/load-budgets.ts';
import { createRedisBudgetWriter } from '../../common/budgets/redis-budget-source.ts';
import { createRedisEngine, forgetBudget, RedisLeaseStore, type LeaseEngine } from '../quota/engine/index.ts';
import type { Logger } from '../quota/server/logger.ts';
import { EventRecorder } from './events.ts';
import { LeaderElector } from './leader-election.ts';
import type { ReconcileContext } from './reconcile-context.ts';
import { reconcileBudget } from './reconcile-budget.ts';
import { reconcileProvider } from './reconcile-provider.ts';
import { GROUP, keyOf, parseKey, PLURALS, VERSION, type CustomObject, type Kind } from './resources.ts';
import { StatusWriter } from './status-writer.ts';
import { BudgetPublisher } from './store/budget-publisher.ts';
import { WorkQueue } from './work-queue.ts';

export interface ControllerOptions {
  kubeConfig: KubeConfig;
  /** Unique per replica. */
  identity: string;
  redisUrl: string;
  /** Prefix of the store's keys, shared with the quota service. */
  keyPrefix: string;
  leaderElection: {
    namespace: string;
    name: string;
    leaseDurationMs: number;
    renewDeadlineMs: number;
    retryPeriodMs: number;
  };
  /** Usage-only status changes are written at most this often per object. */
  statusIntervalMs: number;
  /** Reconcile Ready objects this often to refresh their usage. */
  resyncMs: number;
  workers: number;
  backoff: { baseDelayMs: number; maxDelayMs: number };
  logger: Logger;
}

export interface RunningController {
  readonly isLeader: boolean;
  /** The budgets last written to the store (while leading). */
  readonly published: BudgetSet | undefined;
  stop(): Promise<void>;
}

export function startController(options: ControllerOptions): RunningController {
  let session: LeaderSession | undefined;
  let sessionDone: Promise<void> = Promise.resolve();
  const elector = new LeaderElector({
    api: options.kubeConfig.makeApiClient(CoordinationV1Api),
    identity: options.identity,
    ...options.leaderElection,
    onStartedLeading(signal) {
      options.logger.info('started leading', { identity: options.identity });
      const next = new LeaderSession(options);
      session = next;
      sessionDone = sessionDone.then(() => next.run(signal));
    },
    onStoppedLeading() {
      options.logger.info('stopped leading', { identity: options.identity });
    },
    onError(error) {
      options.logger.warn('leader election', { error: String(error) });
    },
  });
  elector.start();
  return {
    get isLeader() {
      return elector.isLeader;
    },
    get published() {
      return elector.isLeader ? session?.published : undefined;
    },
    async stop() {
      await elector.stop();
      await sessionDone;
    },
  };
}

type CachedInformer = Informer<CustomObject> & ObjectCache<CustomObject>;

/** Everything that runs only while leading; built anew on each election won. */
class LeaderSession {
  readonly #o: ControllerOptions;
  readonly #queue: WorkQueue;
  readonly #informers: Record<Kind, CachedInformer>;
  #engine: LeaseEngine | undefined;
  #publisher: BudgetPublisher | undefined;

  constructor(options: ControllerOptions) {
    this.#o = options;
    this.#queue = new WorkQueue(options.backoff);
    const objects = options.kubeConfig.makeApiClient(CustomObjectsApi);
    const informer = (kind: Kind): CachedInformer =>
      makeInformer<CustomObject>(
        options.kubeConfig,
        `/apis/${GROUP}/${VERSION}/${PLURALS[kind]}`,
        () =>
          objects.listClusterCustomObject({
            group: GROUP,
            version: VERSION,
            plural: PLURALS[kind],
          }) as Promise<KubernetesListObject<CustomObject>>,
      );
    this.#informers = { LLMProvider: informer('LLMProvider'), LLMBudget: informer('LLMBudget') };
  }

  get published(): BudgetSet | undefined {
    return this.#publisher?.current;
  }

  async run(signal: AbortSignal): Promise<void> {
    const o = this.#o;
    const kc = o.kubeConfig;
    const writer = createRedisBudgetWriter({ redis: o.redisUrl, keyPrefix: o.keyPrefix });
    const engine = createRedisEngine({
      budgets: { providers: new Map(), budgets: new Map() },
      redis: o.redisUrl,
      keyPrefix: o.keyPrefix,
    });
    const store = new RedisLeaseStore({ redis: o.redisUrl, keyPrefix: o.keyPrefix });
    this.#engine = engine;
    const publisher = new BudgetPublisher(writer, (set) => engine.setBudgets(set));
    this.#publisher = publisher;
    const core = kc.makeApiClient(CoreV1Api);
    const objects = kc.makeApiClient(CustomObjectsApi);
    const ctx: ReconcileContext = {
      providers: this.#informers.LLMProvider,
      budgets: this.#informers.LLMBudget,
      providerVersions: new Map(),
      ready: { providers: new Map(), budgets: new Map() },
      async readSecret(namespace, name) {
        try {
          return await core.readNamespacedSecret({ name, namespace });
        } catch (error) {
          if (error instanceof ApiException && error.code === 404) return undefined;
          throw error;
        }
      },
      async usage(providerId) {
        if (!publisher.current.providers.has(providerId)) return undefined;
        return (await engine.usage(providerId)).providers[0];
      },
      publish: async () => {
        await publisher.publish(ctx.ready.providers.values(), ctx.ready.budgets.values());
      },
      async forgetBudget(budget) {
        await store.ready();
        await forgetBudget(store, budget, ctx.ready.providers);
      },
      async setFinalizers(object, finalizers) {
        return (await objects.patchNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          namespace: object.metadata.namespace,
          plural: PLURALS[object.kind],
          name: object.metadata.name,
          body: [
            { op: 'test', path: '/metadata/resourceVersion', value: object.metadata.resourceVersion },
            { op: 'add', path: '/metadata/finalizers', value: finalizers },
          ],
        })) as CustomObject;
      },
      status: new StatusWriter(objects, o.statusIntervalMs),
      events: new EventRecorder(core, o.identity, o.logger),
      enqueue: (key) => this.#queue.add(key),
      logger: o.logger,
      resyncMs: o.resyncMs,
      now: () => new Date(),
    };

    // Leadership may be lost at any await below: the queue shuts down then, so the workers
    // (started last) return at once instead of waiting for keys that never come.
    const shutDownQueue = () => this.#queue.shutDown();
    if (signal.aborted) shutDownQueue();
    else signal.addEventListener('abort', shutDownQueue, { once: true });
    try {
      await engine.ready();
      // A new leader writes the store even if its set equals what the old one left.
      publisher.reset();
      await this.#startInformers(signal);
      if (signal.aborted) return;
      // Only after every cache has synced: a budget reconciled before its provider is listed
      // would be reported as referring to nothing.
      for (const kind of ['LLMProvider', 'LLMBudget'] as const) {
        for (const object of this.#informers[kind].list())
          this.#queue.add(keyOf(kind, object.metadata.namespace, object.metadata.name));
      }
      await ctx.publish();
      await Promise.all(Array.from({ length: o.workers }, () => this.#work(ctx)));
    } finally {
      signal.removeEventListener('abort', shutDownQueue);
      this.#queue.shutDown();
      await Promise.all(Object.values(this.#informers).map((i) => i.stop()));
      await writer.close();
      await store.close();
      await engine.close();
    }
  }

  async #startInformers(signal: AbortSignal): Promise<void> {
    for (const kind of ['LLMProvider', 'LLMBudget'] as const) {
      const informer = this.#informers[kind];
      const enqueue = (object: CustomObject) =>
        this.#queue.add(keyOf(kind, object.metadata.namespace, object.metadata.name));
      informer.on('add', enqueue);
      informer.on('update', enqueue);
      informer.on('delete', enqueue);
      // A ListWatch that fails stays stopped until started again.
      informer.on('error', (error) => {
        if (signal.aborted) return;
        this.#o.logger.warn('informer failed; restarting', { kind, error: String(error) });
        void sleep(1_000).then(() => (signal.aborted ? undefined : informer.start()));
      });
      while (!signal.aborted) {
        await informer.start();
        if ((informer as unknown as { latestResourceVersion(): string }).latestResourceVersion() !== '')
          break;
        await sleep(1_000);
      }
    }
  }

  async #work(ctx: ReconcileContext): Promise<void> {
    for (;;) {
      const key = await this.#queue.get();
      if (key === undefined) return;
      try {
        const { kind, namespace, name } = parseKey(key);
        const result =
          kind === 'LLMProvider'
            ? await reconcileProvider(ctx, namespace, name)
            : await reconcileBudget(ctx, namespace, name);
        this.#queue.forget(key);
        if (result.requeueAfterMs !== undefined) this.#queue.addAfter(key, result.requeueAfterMs);
      } catch (error) {
        // A stale read (409) is normal under concurrent writers: the watch brings the new version.
        const conflict = error instanceof ApiException && error.code === 409;
        const delay = this.#queue.addRateLimited(key);
        if (!conflict)
          this.#o.logger.warn('reconcile failed; retrying', { key, delayMs: delay, error: String(error) });
      } finally {
        this.#queue.done(key);
      }
    }
  }
}
