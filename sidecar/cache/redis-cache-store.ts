/**
 * The cluster-wide cache store: every sidecar reads and writes the same Redis (or Redis Cluster).
 *
 * Keys of one scope share the hash tag `{scope}`:
 *   <prefix>{scope}:e:<id>  the entry, with its TTL (PX)
 *   <prefix>{scope}:l:<id>  the in-flight lock, value = owner, short TTL
 *   <prefix>{scope}:idx     sorted set id -> expiry (ms), to evict the entries closest to expiry
 *   <prefix>{scope}:sz      hash id -> bytes, and `~total`
 * Eviction: every entry expires on its TTL; on each put the scope's expired ids are swept from the
 * index, then entries closest to expiry are deleted until the scope is within its byte cap. The
 * index keys expire with the scope's longest-lived entry. Redis' own maxmemory-policy (volatile-lru
 * recommended: every cache key has a TTL) is the last line of defence, not the plan.
 */
import type { Cluster, Redis } from 'ioredis';
import {
  addCacheSavings,
  readCacheSavings,
  type SavingsByProvider,
  type SavingsRecord,
} from '../../common/cache-savings.ts';
import type { CacheKey, CacheStore, PutResult } from './cache-store.ts';

const PUT = `
local entry, idx, sz = KEYS[1], KEYS[2], KEYS[3]
local id, value, ttl, now, cap, entryPrefix = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local expired = redis.call('ZRANGEBYSCORE', idx, '-inf', now)
for _, member in ipairs(expired) do
  local size = redis.call('HGET', sz, member)
  if size then
    redis.call('HINCRBY', sz, '~total', -tonumber(size))
    redis.call('HDEL', sz, member)
  end
end
if #expired > 0 then redis.call('ZREMRANGEBYSCORE', idx, '-inf', now) end
local old = redis.call('HGET', sz, id)
if old then
  redis.call('HINCRBY', sz, '~total', -tonumber(old))
  redis.call('HDEL', sz, id)
  redis.call('ZREM', idx, id)
  redis.call('DEL', entry)
end
local size = string.len(value)
if size > cap then return {0, 0} end
redis.call('SET', entry, value, 'PX', ttl)
redis.call('ZADD', idx, now + ttl, id)
redis.call('HSET', sz, id, size)
local total = redis.call('HINCRBY', sz, '~total', size)
local evicted = 0
local stored = 1
while total > cap do
  local popped = redis.call('ZPOPMIN', idx)
  if #popped == 0 then break end
  local victim = popped[1]
  redis.call('DEL', entryPrefix .. victim)
  local victimSize = redis.call('HGET', sz, victim)
  redis.call('HDEL', sz, victim)
  if victimSize then total = redis.call('HINCRBY', sz, '~total', -tonumber(victimSize)) end
  evicted = evicted + 1
  if victim == id then stored = 0 end
end
for _, key in ipairs({idx, sz}) do
  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
end
return {stored, evicted}
`;

const REMOVE = `
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
local size = redis.call('HGET', KEYS[3], ARGV[1])
if size then
  redis.call('HDEL', KEYS[3], ARGV[1])
  redis.call('HINCRBY', KEYS[3], '~total', -tonumber(size))
end
return 1
`;

const EXTEND = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
`;

const UNLOCK = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;

type Client = Redis | Cluster;

interface Scripts {
  cachePut(
    entry: string,
    idx: string,
    sz: string,
    id: string,
    value: Buffer,
    ttlMs: number,
    nowMs: number,
    cap: number,
    entryPrefix: string,
  ): Promise<[number, number]>;
  cacheRemove(entry: string, idx: string, sz: string, id: string): Promise<number>;
  cacheExtendLock(key: string, owner: string, ttlMs: number): Promise<number>;
  cacheUnlock(key: string, owner: string): Promise<number>;
}

export interface RedisCacheStoreOptions {
  client: Client;
  /** Prefix of every key, e.g. `tl:cache:`. */
  prefix: string;
  /** Whether close() quits the client (it does when the store created it). */
  ownsClient?: boolean;
}

export class RedisCacheStore implements CacheStore {
  readonly #client: Client & Scripts;
  readonly #prefix: string;
  readonly #ownsClient: boolean;

  constructor(options: RedisCacheStoreOptions) {
    const client = options.client;
    client.defineCommand('cachePut', { numberOfKeys: 3, lua: PUT });
    client.defineCommand('cacheRemove', { numberOfKeys: 3, lua: REMOVE });
    client.defineCommand('cacheExtendLock', { numberOfKeys: 1, lua: EXTEND });
    client.defineCommand('cacheUnlock', { numberOfKeys: 1, lua: UNLOCK });
    this.#client = client as Client & Scripts;
    this.#prefix = options.prefix;
    this.#ownsClient = options.ownsClient ?? false;
  }

  #base(scope: string): string {
    return `${this.#prefix}{${scope}}:`;
  }

  async get(key: CacheKey): Promise<Buffer | undefined> {
    const value = await this.#client.getBuffer(`${this.#base(key.scope)}e:${key.id}`);
    return value ?? undefined;
  }

  async put(key: CacheKey, value: Buffer, ttlMs: number, maxScopeBytes: number): Promise<PutResult> {
    const base = this.#base(key.scope);
    const [stored, evicted] = await this.#client.cachePut(
      `${base}e:${key.id}`,
      `${base}idx`,
      `${base}sz`,
      key.id,
      value,
      Math.max(1, Math.round(ttlMs)),
      Date.now(),
      maxScopeBytes,
      `${base}e:`,
    );
    return { stored: stored === 1, evicted };
  }

  async remove(key: CacheKey): Promise<void> {
    const base = this.#base(key.scope);
    await this.#client.cacheRemove(`${base}e:${key.id}`, `${base}idx`, `${base}sz`, key.id);
  }

  async scopeBytes(scope: string): Promise<number> {
    return Number((await this.#client.hget(`${this.#base(scope)}sz`, '~total')) ?? 0);
  }

  async lock(key: CacheKey, owner: string, ttlMs: number): Promise<boolean> {
    const result = await this.#client.set(
      `${this.#base(key.scope)}l:${key.id}`,
      owner,
      'PX',
      Math.max(1, Math.round(ttlMs)),
      'NX',
    );
    return result === 'OK';
  }

  async extendLock(key: CacheKey, owner: string, ttlMs: number): Promise<boolean> {
    return (
      (await this.#client.cacheExtendLock(
        `${this.#base(key.scope)}l:${key.id}`,
        owner,
        Math.max(1, Math.round(ttlMs)),
      )) === 1
    );
  }

  async unlock(key: CacheKey, owner: string): Promise<void> {
    await this.#client.cacheUnlock(`${this.#base(key.scope)}l:${key.id}`, owner);
  }

  async isLocked(key: CacheKey): Promise<boolean> {
    return (await this.#client.exists(`${this.#base(key.scope)}l:${key.id}`)) === 1;
  }

  async addSavings(records: readonly SavingsRecord[]): Promise<void> {
    await addCacheSavings(this.#client, this.#prefix, records);
  }

  readSavings(providers: readonly string[]): Promise<SavingsByProvider> {
    return readCacheSavings(this.#client, this.#prefix, providers);
  }

  async close(): Promise<void> {
    if (this.#ownsClient) await this.#client.quit();
  }
}
