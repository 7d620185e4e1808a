/**
 * The lease store on Redis: every operation is one round trip running lease-store.lua, with
 * Redis server time as the single clock. A provider's keys share the hash tag `{provider}`, so
 * one script touches one slot and Redis Cluster works. Grants made by one engine for another
 * engine's waiter are announced on a per-provider channel.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { ChurnMap } from '../../../common/churn-map.ts';
import { StoreUnavailableError } from '../../../common/errors/errors.ts';
import type { TokenUsage } from '../../../common/quota-api.ts';
import {
  budgetCounters,
  chargedOf,
  GC_BATCH,
  PUMP_BATCH,
  RECORD_GRACE_MS,
  SETTLED_GRACE_MS,
  type GrantListener,
  type Granting,
  type LeaseStore,
  type LimitPlan,
  type SettleCommand,
  type StoreAcquireResult,
  type StoredRequest,
  type StoreHeartbeatResult,
  type StorePumpResult,
  type StoreSettleResult,
  type StoreUsage,
  type StoreWaiterResult,
} from './store.ts';
import { wireRequest, type Definitions } from './redis-wire.ts';

const SCRIPT = readFileSync(new URL('./lease-store.lua', import.meta.url), 'utf8');
/** Named by its content, so replicas running different versions each call their own. */
const SCRIPT_ID = createHash('sha1').update(SCRIPT).digest('hex').slice(0, 16);
const FUNCTION_NAME = `tokenlease_lease_${SCRIPT_ID}`;
export const LIBRARY_NAME = `tokenlease_${SCRIPT_ID}`;
const LIBRARY = `#!lua name=${LIBRARY_NAME}\nlocal FUNCTION_NAME = '${FUNCTION_NAME}'\n${SCRIPT}`;

export interface RedisStoreOptions {
  /** A redis:// URL or ioredis options (ignored when `cluster` is given). */
  redis: string | RedisOptions;
  /** Redis Cluster seed nodes: the store talks to the cluster instead of one server. */
  cluster?: Array<{ host: string; port: number }> | undefined;
  /** Prepended to every key, e.g. `tl:` (tests use one per run). */
  keyPrefix?: string;
  /** Test clock; Redis TIME when omitted. */
  clock?: () => number;
  /** ioredis auto-pipelining (measured by bench:quota). */
  autoPipelining?: boolean;
  /** Send acquires and settles issued together as one script call (default; bench:quota measures both). */
  batching?: boolean;
  /**
   * Load the script as a Redis function library (Redis 7+, the default), so that its setup runs
   * once rather than on every call; where Redis refuses, it runs as a script (EVALSHA).
   */
  functions?: boolean;
}

type ScriptArgument = string | number;
type LeaseCommand = (key: string, ...args: ScriptArgument[]) => Promise<string>;

/** Most operations one script call runs (bounds the time Redis spends in one script). */
const MAX_BATCH = 64;

/** The script's refusal of a call naming a limit definition Redis does not hold (lease-store.lua). */
const DEFINITIONS_MISSING = 'tokenlease: definitions missing';
/** Definition ids remembered per provider as held by Redis, past which the memory starts over. */
const MAX_STORED_DEFINITIONS = 10_000;

/** One script call's arguments, and the limit definitions they carry. */
interface DefiningCall {
  args: ScriptArgument[];
  definitions: Definitions;
}

interface BatchedOperation {
  op: 'acquire' | 'settle';
  args: unknown[];
  resolve: (result: unknown) => void;
  reject: (error: unknown) => void;
}

export class RedisLeaseStore implements LeaseStore {
  readonly #redis: Redis | Cluster;
  readonly #subscriber: Redis | Cluster;
  readonly #prefix: string;
  readonly #clock: (() => number) | undefined;
  readonly #listeners: GrantListener[] = [];
  readonly #resyncListeners: Array<() => void> = [];
  #subscribed: Promise<void> | undefined;
  /** Acquires and settles waiting for the next batch, per provider. */
  readonly #batches = new ChurnMap<string, BatchedOperation[]>();
  /**
   * Per provider, the ids of the limit definitions Redis took from this store: later acquires name
   * them without sending them (redis-wire.ts), which spares Redis decoding ~1 KB of JSON per call.
   */
  readonly #storedDefinitions = new Map<string, Set<string>>();
  /**
   * Script calls made, and the operations they carried (more operations than calls: batching);
   * calls made again with every definition because Redis no longer held one.
   */
  readonly stats = {
    scriptCalls: 0,
    operations: 0,
    definitionsResent: 0,
    mode: 'script' as 'script' | 'function',
  };
  readonly #batching: boolean;
  readonly #functions: boolean;

  constructor(options: RedisStoreOptions) {
    const base: RedisOptions = {
      enableAutoPipelining: options.autoPipelining ?? false,
      maxRetriesPerRequest: 1,
      // Fail fast while disconnected: the caller maps it to UNAVAILABLE and the sidecar applies
      // the budget's failure mode, instead of requests piling up in an offline queue.
      enableOfflineQueue: false,
      lazyConnect: true,
    };
    if (options.cluster && options.cluster.length > 0) {
      // Every key of a provider carries the hash tag {provider}: one script, one slot, one node.
      this.#redis = new Cluster(options.cluster, {
        enableAutoPipelining: base.enableAutoPipelining,
        enableOfflineQueue: false,
        lazyConnect: true,
        redisOptions: { maxRetriesPerRequest: 1 },
      });
      // Classic (not sharded) pub/sub reaches every node of the cluster.
      this.#subscriber = new Cluster(options.cluster, { lazyConnect: true });
    } else {
      this.#redis =
        typeof options.redis === 'string'
          ? new Redis(options.redis, base)
          : new Redis({ ...options.redis, ...base });
      // Resubscribed by #subscribe rather than by ioredis, whose own PSUBSCRIBE after a reconnect
      // has no handler: closed before Redis answers (a shutdown while Redis comes back), it is an
      // unhandled rejection, which ends a Node process.
      this.#subscriber = this.#redis.duplicate({ enableOfflineQueue: true, autoResubscribe: false });
    }
    this.#redis.on('error', () => {
      // Connection errors surface on the commands that fail; ioredis reconnects by itself.
    });
    this.#subscriber.on('error', () => {});
    this.#redis.defineCommand('tokenleaseLease', { numberOfKeys: 1, lua: SCRIPT });
    this.#prefix = options.keyPrefix ?? 'tl:';
    this.#clock = options.clock;
    this.#batching = options.batching ?? true;
    this.#functions = options.functions ?? true;
  }

  async ready(): Promise<void> {
    if (this.#redis.status === 'wait') await this.#redis.connect();
    await this.#redis.ping();
    if (this.#functions && this.stats.mode === 'script') {
      this.stats.mode = (await this.#loadLibrary()) ? 'function' : 'script';
    }
    this.#subscribed ??= this.#subscribe();
    await this.#subscribed;
  }

  async close(): Promise<void> {
    this.#subscriber.disconnect();
    this.#redis.disconnect();
  }

  onGrant(listener: GrantListener): void {
    this.#listeners.push(listener);
  }

  onResync(listener: () => void): void {
    this.#resyncListeners.push(listener);
  }

  async #subscribe(): Promise<void> {
    if (this.#subscriber.status === 'wait') await this.#subscriber.connect();
    const pattern = `${escapeGlob(this.#prefix)}{*}:grants`;
    this.#subscriber.on('pmessage', (_pattern: string, channel: string, message: string) => {
      const provider = channel.slice(this.#prefix.length + 1, -'}:grants'.length);
      const ids = JSON.parse(message) as unknown;
      if (!Array.isArray(ids) || ids.length === 0) return;
      for (const listener of this.#listeners) listener(provider, ids as string[]);
    });
    await this.#subscriber.psubscribe(pattern);
    // After a reconnect: subscribe again (a cluster's subscriber does so itself), then resync, since
    // what was published meanwhile is lost.
    const resubscribe = !(this.#subscriber instanceof Cluster);
    let connected = true;
    this.#subscriber.on('close', () => (connected = false));
    this.#subscriber.on('ready', () => {
      if (connected) return;
      connected = true;
      const resync = () => {
        for (const listener of this.#resyncListeners) listener();
      };
      if (!resubscribe) return resync();
      // Failing, the connection is gone again and its next 'ready' comes back here.
      this.#subscriber.psubscribe(pattern).then(resync, () => {});
    });
  }

  async #run<T>(provider: string, op: string, ...args: ScriptArgument[]): Promise<T> {
    return parseReply<T>(await this.#call(provider, op, args));
  }

  /** An acquire or settle as its own script call. */
  async #runAlone<T>(provider: string, op: BatchedOperation['op'], args: unknown[]): Promise<T> {
    if (op !== 'acquire') return this.#run<T>(provider, op, ...(args as ScriptArgument[]));
    const build = (stored?: ReadonlySet<string>): DefiningCall => {
      const definitions: Definitions = {};
      const request = JSON.stringify(wireRequest(args[0] as StoredRequest, definitions, stored));
      return { args: [request, definitionsArgument(definitions)], definitions };
    };
    return parseReply<T>(await this.#callDefining(provider, op, build));
  }

  /**
   * A script call whose acquires name limit definitions: those Redis took before are left out.
   * Should Redis have lost one (its definitions hash deleted, a restart or a failover without it),
   * the script refuses the call before it changes anything, and it is made once more with all.
   */
  async #callDefining(
    provider: string,
    op: string,
    build: (stored?: ReadonlySet<string>) => DefiningCall,
    operations = 1,
  ): Promise<string> {
    const stored = this.#storedDefinitions.get(provider);
    let call = build(stored);
    let raw: string;
    try {
      raw = await this.#call(provider, op, call.args, operations);
    } catch (error) {
      if (!stored || !(error as Error).message.includes(DEFINITIONS_MISSING)) throw error;
      this.#storedDefinitions.delete(provider);
      this.stats.definitionsResent++;
      call = build();
      raw = await this.#call(provider, op, call.args, operations);
    }
    let ids = this.#storedDefinitions.get(provider);
    for (const id in call.definitions) {
      if (!ids || ids.size >= MAX_STORED_DEFINITIONS) {
        ids = new Set();
        this.#storedDefinitions.set(provider, ids);
      }
      ids.add(id);
    }
    return raw;
  }

  /**
   * Loads the library on every primary (a replica gets it from its primary). False where Redis
   * has no functions (before 7.0) or may not load them (ACL): the script runs as a script.
   */
  async #loadLibrary(): Promise<boolean> {
    const nodes = this.#redis instanceof Cluster ? this.#redis.nodes('master') : [this.#redis];
    try {
      await Promise.all(nodes.map((node) => node.function('LOAD', 'REPLACE', LIBRARY)));
      return true;
    } catch {
      return false;
    }
  }

  async #call(provider: string, op: string, args: ScriptArgument[], operations = 1): Promise<string> {
    const base = `${this.#prefix}{${provider}}`;
    this.stats.scriptCalls++;
    this.stats.operations += operations;
    const argv = [
      op,
      base,
      this.#clock ? String(this.#clock()) : '',
      RECORD_GRACE_MS,
      GC_BATCH,
      PUMP_BATCH,
      SETTLED_GRACE_MS,
      ...args,
    ];
    try {
      if (this.stats.mode === 'function') {
        try {
          return (await this.#redis.fcall(FUNCTION_NAME, 1, `${base}:m`, ...argv)) as string;
        } catch (error) {
          // A restarted or new node without the library: load it and call once more.
          if (!/function not found/i.test((error as Error).message) || !(await this.#loadLibrary()))
            throw error;
          return (await this.#redis.fcall(FUNCTION_NAME, 1, `${base}:m`, ...argv)) as string;
        }
      }
      const command = (this.#redis as unknown as { tokenleaseLease: LeaseCommand }).tokenleaseLease;
      return await command.call(this.#redis, `${base}:m`, ...argv);
    } catch (error) {
      throw new StoreUnavailableError(`redis: ${(error as Error).message}`, { cause: error });
    }
  }

  /**
   * Acquires and settles of one provider issued while the event loop is busy go to Redis as one
   * script call: one round trip, one command for ioredis to encode and parse, and one expiry
   * sweep per batch instead of per operation (bench:quota: +33 % pairs/s for the quota service,
   * mostly its own CPU; the script's work per operation stays). Operations run in the order they
   * were issued, at one Redis time, exactly as the same calls one after another would; a lone
   * operation is sent as it is.
   */
  #batched<T>(provider: string, op: BatchedOperation['op'], args: unknown[]): Promise<T> {
    if (!this.#batching) return this.#runAlone(provider, op, args);
    return new Promise<T>((resolve, reject) => {
      let batch = this.#batches.get(provider);
      if (!batch) {
        batch = [];
        this.#batches.set(provider, batch);
        setImmediate(() => this.#flush(provider));
      }
      batch.push({ op, args, resolve: resolve as (result: unknown) => void, reject });
      if (batch.length >= MAX_BATCH) this.#flush(provider);
    });
  }

  #flush(provider: string): void {
    const batch = this.#batches.get(provider);
    if (!batch || batch.length === 0) return;
    this.#batches.delete(provider);
    if (batch.length === 1) {
      const { op, args, resolve, reject } = batch[0]!;
      this.#runAlone(provider, op, args).then(resolve, reject);
      return;
    }
    const build = (stored?: ReadonlySet<string>): DefiningCall => {
      const definitions: Definitions = {};
      const wire = JSON.stringify(
        batch.map(({ op, args }) =>
          op === 'acquire' ? [op, wireRequest(args[0] as StoredRequest, definitions, stored)] : [op, ...args],
        ),
      );
      return { args: [wire, definitionsArgument(definitions)], definitions };
    };
    this.#callDefining(provider, 'batch', build, batch.length).then(
      (raw) => {
        const reply = JSON.parse(raw) as { results: unknown[]; grantedIds: unknown; nowMs: number };
        // Grants the batch made for waiters are reported once, with the first result.
        const granted = Array.isArray(reply.grantedIds) ? (reply.grantedIds as string[]) : [];
        batch.forEach((operation, i) => {
          const result = reply.results[i] as { grantedIds?: string[]; nowMs?: number };
          result.grantedIds = i === 0 ? granted : [];
          // The batch's Redis time, sent once (lease-store.lua main).
          result.nowMs ??= reply.nowMs;
          operation.resolve(result);
        });
      },
      (error: unknown) => {
        for (const operation of batch) operation.reject(error);
      },
    );
  }

  async acquire(provider: string, request: StoredRequest): Promise<StoreAcquireResult> {
    const result = await this.#batched<StoreAcquireResult | DirectGrant>(provider, 'acquire', [request]);
    if (result.kind !== 'granted' || 'lease' in result) return result;
    // A direct grant's reply holds only what the script decided; the rest is the request's.
    const { nowMs } = result;
    return {
      kind: 'granted',
      grantedIds: result.grantedIds,
      nowMs,
      lease: {
        id: request.id,
        budget: request.budget,
        enqueuedAtMs: nowMs,
        grantedAtMs: nowMs,
        expiresAtMs: nowMs + request.leaseTimeoutMs,
        reserved: request.reserved,
      },
      headroom: { fraction: result.hf, requests: result.hr },
    };
  }

  async settle(provider: string, command: SettleCommand): Promise<StoreSettleResult> {
    const result = await this.#batchedSettle(provider, command);
    if (result.kind === 'settled' || result.kind === 'settledAfterExpiry') {
      // Charged follows from the command, and the settle happened at the call's time; only a
      // repeated settle's reply carries them.
      const { nowMs, ...rest } = result as Extract<SettleReply, { nowMs: number }>;
      return { ...rest, settledAtMs: nowMs, charged: chargedOf(command.usage, command.outcome) };
    }
    return result as StoreSettleResult;
  }

  #batchedSettle(provider: string, command: SettleCommand): Promise<SettleReply> {
    return this.#batched(provider, 'settle', [
      command.leaseId,
      command.usage.inputTokens,
      command.usage.outputTokens,
      command.outcome,
      command.retryAfterMs ?? 0,
      command.resetAtMs ?? 0,
      command.rateLimits && command.rateLimits.length > 0 ? JSON.stringify(command.rateLimits) : '',
    ]);
  }

  heartbeat(
    provider: string,
    leaseId: string,
    extendMs: number,
    usedSoFar?: TokenUsage,
  ): Promise<StoreHeartbeatResult> {
    return this.#run(
      provider,
      'heartbeat',
      leaseId,
      extendMs,
      usedSoFar ? usedSoFar.inputTokens : '',
      usedSoFar ? usedSoFar.outputTokens : '',
    );
  }

  pump(provider: string): Promise<StorePumpResult> {
    return this.#run(provider, 'pump');
  }

  claim(provider: string, waiterId: string): Promise<StoreWaiterResult> {
    return this.#run(provider, 'claim', waiterId);
  }

  cancel(provider: string, waiterId: string): Promise<StoreWaiterResult> {
    return this.#run(provider, 'cancel', waiterId);
  }

  async usage(provider: string, limits: LimitPlan[]): Promise<StoreUsage> {
    const raw = await this.#run<{
      nowMs: number;
      limits: StoreUsage['limits'] | Record<string, never>;
      counters: string[] | Record<string, never>;
      waiters: number;
      closedUntilMs: number;
      closedReason: string;
    }>(provider, 'usage', JSON.stringify(limits));
    const counters = Array.isArray(raw.counters) ? raw.counters : [];
    const pairs: Array<[string, number]> = [];
    for (let i = 0; i < counters.length; i += 2) pairs.push([counters[i]!, Number(counters[i + 1])]);
    const { budgets, inFlight } = budgetCounters(pairs);
    return {
      nowMs: raw.nowMs,
      limits: Array.isArray(raw.limits) ? raw.limits : [],
      closedUntilMs: raw.closedUntilMs,
      closedReason: raw.closedReason,
      inFlight,
      waiters: raw.waiters,
      budgets,
    };
  }

  async forgetBudget(provider: string, budget: string, capKeys: string[]): Promise<void> {
    await this.#run(provider, 'forgetBudget', budget, JSON.stringify(capKeys));
  }
}

/**
 * The script's reply to a direct grant: the caller fills in the lease from its request. hf and hr:
 * the headroom's fraction and requests (store.ts narrowHeadroom).
 */
type DirectGrant = Granting & { kind: 'granted'; nowMs: number; hf: number; hr: number };

/** The script's reply to a settle: `charged` and `settledAtMs` only when repeated. */
type SettleReply =
  | (Granting & { kind: 'settled' | 'settledAfterExpiry'; nowMs: number })
  | Exclude<StoreSettleResult, { kind: 'settled' | 'settledAfterExpiry' }>;

/** A script reply: its JSON, with `grantedIds` always an array. */
function parseReply<T>(raw: string): T {
  const result = JSON.parse(raw) as T & { grantedIds?: unknown };
  // cjson writes an empty array as {}.
  if (!Array.isArray(result.grantedIds)) result.grantedIds = [];
  return result;
}

/** The definitions argument: their JSON, or '' when the call brings none. */
function definitionsArgument(definitions: Definitions): string {
  for (const _ in definitions) return JSON.stringify(definitions);
  return '';
}

function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&');
}
