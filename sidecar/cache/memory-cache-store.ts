/**
 * The cache store of embedded mode: one sidecar's memory, with the Redis store's semantics (TTL,
 * per-scope byte cap evicting the entries closest to expiry, locks with a TTL), plus a byte cap on
 * the whole store that evicts the least recently used entry, so memory stays bounded whatever the
 * budgets say.
 */
import type { CacheSavings, SavingsByProvider, SavingsRecord } from '../../common/cache-savings.ts';
import type { CacheKey, CacheStore, PutResult } from './cache-store.ts';

interface Entry {
  scope: string;
  id: string;
  value: Buffer;
  expiresAtMs: number;
}

export interface MemoryCacheStoreOptions {
  /** Bytes of values held across every scope. */
  maxBytes: number;
  now?: () => number;
}

export class MemoryCacheStore implements CacheStore {
  readonly #maxBytes: number;
  readonly #now: () => number;
  /** Map order is recency: a read moves the entry to the end. */
  readonly #entries = new Map<string, Entry>();
  /** Each scope's entries and bytes, so sweeping and evicting look at one scope only. */
  readonly #scopes = new Map<string, { bytes: number; entries: Set<Entry> }>();
  readonly #locks = new Map<string, { owner: string; expiresAtMs: number }>();
  readonly #savings: SavingsByProvider = new Map();
  #bytes = 0;

  constructor(options: MemoryCacheStoreOptions) {
    this.#maxBytes = options.maxBytes;
    this.#now = options.now ?? Date.now;
  }

  get bytes(): number {
    return this.#bytes;
  }

  async get(key: CacheKey): Promise<Buffer | undefined> {
    const name = entryName(key);
    const entry = this.#entries.get(name);
    if (entry === undefined) return undefined;
    if (entry.expiresAtMs <= this.#now()) {
      this.#drop(name, entry);
      return undefined;
    }
    this.#entries.delete(name);
    this.#entries.set(name, entry);
    return entry.value;
  }

  async put(key: CacheKey, value: Buffer, ttlMs: number, maxScopeBytes: number): Promise<PutResult> {
    const name = entryName(key);
    const old = this.#entries.get(name);
    if (old !== undefined) this.#drop(name, old);
    const now = this.#now();
    this.#sweepScope(key.scope, now);
    if (value.length > maxScopeBytes || value.length > this.#maxBytes) return { stored: false, evicted: 0 };
    const entry: Entry = { scope: key.scope, id: key.id, value, expiresAtMs: now + ttlMs };
    this.#entries.set(name, entry);
    this.#bytes += value.length;
    const scope = this.#scopes.get(key.scope) ?? { bytes: 0, entries: new Set<Entry>() };
    this.#scopes.set(key.scope, scope);
    scope.bytes += value.length;
    scope.entries.add(entry);
    let evicted = 0;
    while (scope.bytes > maxScopeBytes) {
      const victim = this.#closestToExpiry(key.scope);
      if (victim === undefined) break;
      this.#drop(entryName(victim), victim);
      evicted++;
    }
    for (const [oldest, victim] of this.#entries) {
      if (this.#bytes <= this.#maxBytes) break;
      this.#drop(oldest, victim);
      evicted++;
    }
    return { stored: this.#entries.has(name), evicted };
  }

  async remove(key: CacheKey): Promise<void> {
    const name = entryName(key);
    const entry = this.#entries.get(name);
    if (entry !== undefined) this.#drop(name, entry);
  }

  async scopeBytes(scope: string): Promise<number> {
    return this.#scopes.get(scope)?.bytes ?? 0;
  }

  async lock(key: CacheKey, owner: string, ttlMs: number): Promise<boolean> {
    const name = entryName(key);
    const held = this.#locks.get(name);
    const now = this.#now();
    if (held !== undefined && held.expiresAtMs > now) return false;
    this.#locks.set(name, { owner, expiresAtMs: now + ttlMs });
    return true;
  }

  async extendLock(key: CacheKey, owner: string, ttlMs: number): Promise<boolean> {
    const held = this.#locks.get(entryName(key));
    const now = this.#now();
    if (held === undefined || held.owner !== owner || held.expiresAtMs <= now) return false;
    held.expiresAtMs = now + ttlMs;
    return true;
  }

  async unlock(key: CacheKey, owner: string): Promise<void> {
    const name = entryName(key);
    if (this.#locks.get(name)?.owner === owner) this.#locks.delete(name);
  }

  async isLocked(key: CacheKey): Promise<boolean> {
    const name = entryName(key);
    const held = this.#locks.get(name);
    if (held === undefined) return false;
    if (held.expiresAtMs > this.#now()) return true;
    this.#locks.delete(name);
    return false;
  }

  async addSavings(records: readonly SavingsRecord[]): Promise<void> {
    for (const { provider, budget, savings } of records) {
      const budgets = this.#savings.get(provider) ?? new Map<string, CacheSavings>();
      this.#savings.set(provider, budgets);
      const total = budgets.get(budget) ?? { hits: 0, inputTokens: 0, outputTokens: 0 };
      total.hits += savings.hits;
      total.inputTokens += savings.inputTokens;
      total.outputTokens += savings.outputTokens;
      budgets.set(budget, total);
    }
  }

  async readSavings(providers: readonly string[]): Promise<SavingsByProvider> {
    const found: SavingsByProvider = new Map();
    for (const provider of providers) {
      const budgets = this.#savings.get(provider);
      if (budgets !== undefined) {
        found.set(provider, new Map([...budgets].map(([budget, savings]) => [budget, { ...savings }])));
      }
    }
    return found;
  }

  async close(): Promise<void> {
    this.#entries.clear();
    this.#scopes.clear();
    this.#locks.clear();
    this.#bytes = 0;
  }

  #drop(name: string, entry: Entry): void {
    this.#entries.delete(name);
    this.#bytes -= entry.value.length;
    const scope = this.#scopes.get(entry.scope);
    if (scope === undefined) return;
    scope.bytes -= entry.value.length;
    scope.entries.delete(entry);
    if (scope.entries.size === 0) this.#scopes.delete(entry.scope);
  }

  #sweepScope(scope: string, now: number): void {
    for (const entry of this.#scopes.get(scope)?.entries ?? []) {
      if (entry.expiresAtMs <= now) this.#drop(entryName(entry), entry);
    }
  }

  #closestToExpiry(scope: string): Entry | undefined {
    let found: Entry | undefined;
    for (const entry of this.#scopes.get(scope)?.entries ?? []) {
      if (found === undefined || entry.expiresAtMs < found.expiresAtMs) found = entry;
    }
    return found;
  }
}

function entryName(key: CacheKey): string {
  return `${key.scope}\n${key.id}`;
}
