/**
 * Budgets in the store: the controller (leader) writes the reconciled BudgetSet into Redis and
 * announces it; every quota-service replica loads it at start and reloads on each announcement,
 * so a change reaches all replicas in one publish + one GET.
 *
 * Keys (one hash tag, so Redis Cluster puts them on one slot):
 *   <prefix>{budgets}          `<version>\n<JSON array of LLMProvider and LLMBudget objects>`
 *   <prefix>{budgets}:version  counter; the write script increments it and stores the text atomically
 * Channel: <prefix>{budgets}:changed, message: the new version.
 * Versions only grow, so a reader ignores an announcement older than what it holds, and a writer
 * that lost leadership mid-write cannot roll the budgets back past a newer write.
 */
import { Redis, type RedisOptions } from 'ioredis';
import { BudgetValidationError, StoreUnavailableError } from '../errors/errors.ts';
import { buildBudgetSet, parseObject, type BudgetSet } from './load-budgets.ts';
import type { LLMBudget, LLMProvider } from './types.ts';

export const DEFAULT_BUDGETS_PREFIX = 'tl:';

export function budgetKeys(prefix: string) {
  const key = `${prefix}{budgets}`;
  return { key, version: `${key}:version`, channel: `${key}:changed` };
}

const WRITE_SCRIPT = `
local v = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], v .. '\\n' .. ARGV[1])
redis.call('PUBLISH', ARGV[2], v)
return v`;

function connect(redis: string | RedisOptions): Redis {
  const options: RedisOptions = { lazyConnect: true, maxRetriesPerRequest: 2 };
  const client = typeof redis === 'string' ? new Redis(redis, options) : new Redis({ ...redis, ...options });
  // Failures surface on the commands that fail; ioredis reconnects by itself.
  client.on('error', () => {});
  return client;
}

function encode(budgets: BudgetSet): string {
  return JSON.stringify([...budgets.providers.values(), ...budgets.budgets.values()]);
}

/** Parses what the writer stored; throws BudgetValidationError when it does not validate. */
export function decodeBudgets(text: string): { version: number; budgets: BudgetSet } {
  const newline = text.indexOf('\n');
  const version = Number(text.slice(0, newline));
  if (newline < 0 || !Number.isSafeInteger(version)) {
    throw new BudgetValidationError('redis budgets', ['not `<version>\\n<json>`']);
  }
  const objects = JSON.parse(text.slice(newline + 1)) as unknown;
  if (!Array.isArray(objects)) throw new BudgetValidationError('redis budgets', ['not a JSON array']);
  const parsed: Array<LLMProvider | LLMBudget> = objects.map((o, i) =>
    parseObject(o, `redis budgets [${i}]`),
  );
  return { version, budgets: buildBudgetSet(parsed) };
}

export interface BudgetWriter {
  /** Stores `budgets` and announces them; resolves with the new version. */
  write(budgets: BudgetSet): Promise<number>;
  close(): Promise<void>;
}

export function createRedisBudgetWriter(options: {
  redis: string | RedisOptions;
  keyPrefix?: string;
}): BudgetWriter {
  const client = connect(options.redis);
  const keys = budgetKeys(options.keyPrefix ?? DEFAULT_BUDGETS_PREFIX);
  return {
    async write(budgets) {
      try {
        if (client.status === 'wait') await client.connect();
        return Number(
          await client.eval(WRITE_SCRIPT, 2, keys.key, keys.version, encode(budgets), keys.channel),
        );
      } catch (error) {
        throw new StoreUnavailableError(`cannot write budgets to Redis: ${(error as Error).message}`, {
          cause: error,
        });
      }
    },
    async close() {
      client.disconnect();
    },
  };
}

export interface BudgetSourceOptions {
  redis: string | RedisOptions;
  keyPrefix?: string;
  /** Called with each newer BudgetSet (not with the initial one, which start() returns). */
  onUpdate(budgets: BudgetSet, version: number): void;
  /** A stored set that does not validate, or Redis failing; the last good set stays in force. */
  onError(error: unknown): void;
}

export interface BudgetSource {
  /** The budgets stored now (empty when the controller has written none yet). */
  readonly initial: BudgetSet;
  readonly version: number;
  close(): Promise<void>;
}

/**
 * Loads the stored budgets and follows announcements. After the subscriber reconnects it loads
 * again, since announcements made while it was away are lost.
 */
export async function startRedisBudgetSource(options: BudgetSourceOptions): Promise<BudgetSource> {
  const keys = budgetKeys(options.keyPrefix ?? DEFAULT_BUDGETS_PREFIX);
  const client = connect(options.redis);
  // Subscribed again by the 'ready' handler below rather than by ioredis, whose own SUBSCRIBE after
  // a reconnect has no handler: closed before Redis answers, it is an unhandled rejection.
  const subscriber = client.duplicate({ autoResubscribe: false });
  let version = 0;
  let closed = false;
  let loading: Promise<void> = Promise.resolve();

  async function load(): Promise<{ version: number; budgets: BudgetSet } | undefined> {
    const text = await client.get(keys.key);
    return text === null ? undefined : decodeBudgets(text);
  }

  /** One reload at a time; a set no newer than the current one is dropped. */
  const reload = () => {
    loading = loading.then(async () => {
      if (closed) return;
      try {
        const stored = await load();
        if (closed || !stored || stored.version <= version) return;
        version = stored.version;
        options.onUpdate(stored.budgets, stored.version);
      } catch (error) {
        if (!closed) options.onError(error);
      }
    });
  };

  try {
    await client.connect();
    await subscriber.connect();
    subscriber.on('message', (_channel: string, message: string) => {
      if (Number(message) > version) reload();
    });
    await subscriber.subscribe(keys.channel);
    // Subscribed before the first load, so no announcement falls between the two.
    const stored = await load();
    version = stored?.version ?? 0;
    // After a reconnect: subscribe again, then reload what was announced meanwhile. (Failing, the
    // connection is gone again and its next 'ready' comes back here.)
    subscriber.on('ready', () => {
      subscriber.subscribe(keys.channel).then(reload, () => {});
    });
    return {
      initial: stored?.budgets ?? { providers: new Map(), budgets: new Map() },
      get version() {
        return version;
      },
      async close() {
        closed = true;
        subscriber.disconnect();
        client.disconnect();
        await loading;
      },
    };
  } catch (error) {
    subscriber.disconnect();
    client.disconnect();
    if (error instanceof BudgetValidationError) throw error;
    throw new StoreUnavailableError(`cannot load budgets from Redis: ${(error as Error).message}`, {
      cause: error,
    });
  }
}
