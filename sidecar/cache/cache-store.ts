/**
 * Where cached answers live: Redis (shared by every sidecar of the cluster) or memory (embedded
 * mode, one sidecar). Both implement this interface and pass one conformance suite
 * (cache-store-conformance.ts).
 *
 * Keys are grouped by scope (a budget, or a shared scope, at one provider): the scope's byte cap
 * is kept per scope, and in Redis a scope's keys share one hash tag, so one script touches one
 * slot of a Redis Cluster.
 */
import type { SavingsByProvider, SavingsRecord } from '../../common/cache-savings.ts';

export interface CacheKey {
  /** Who may read the entry, e.g. `b:team/app@llm/sim`; no `{` or `}`. */
  scope: string;
  /** Hash of what determines the answer (cache-key.ts). */
  id: string;
}

export interface PutResult {
  stored: boolean;
  /** Entries dropped to keep the scope within its byte cap. */
  evicted: number;
}

export interface CacheStore {
  get(key: CacheKey): Promise<Buffer | undefined>;
  /**
   * Stores `value` for `ttlMs`, replacing an entry of the same key. Entries of the scope closest to
   * expiry are evicted until the scope holds at most `maxScopeBytes`; a value larger than that is
   * not stored.
   */
  put(key: CacheKey, value: Buffer, ttlMs: number, maxScopeBytes: number): Promise<PutResult>;
  remove(key: CacheKey): Promise<void>;
  /** Bytes the scope holds (expired entries not yet swept may still count). */
  scopeBytes(scope: string): Promise<number>;
  /** Takes the in-flight lock of `key` for `owner` unless someone holds it. */
  lock(key: CacheKey, owner: string, ttlMs: number): Promise<boolean>;
  /** Extends the lock if `owner` still holds it. */
  extendLock(key: CacheKey, owner: string, ttlMs: number): Promise<boolean>;
  /** Releases the lock if `owner` still holds it. */
  unlock(key: CacheKey, owner: string): Promise<void>;
  isLocked(key: CacheKey): Promise<boolean>;
  /** Adds to the savings counters the quota service reports in GetUsage (common/cache-savings.ts). */
  addSavings(records: readonly SavingsRecord[]): Promise<void>;
  readSavings(providers: readonly string[]): Promise<SavingsByProvider>;
  close(): Promise<void>;
}
