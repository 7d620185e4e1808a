/**
 * The response cache on the request path. For a cacheable call (cache-policy.ts):
 *
 * 1. lookup: a stored answer is replayed at once, byte for byte, with `x-tokenlease-cache: hit`
 *    and `age`; no lease is taken and the provider is not called;
 * 2. coalescing: otherwise the call becomes the key's leader if it takes the key's lock in the
 *    store, or waits for the leader (in this process through a shared promise, in another sidecar
 *    by polling the store with backoff) until the budget's coalesceWait or the call's deadline;
 *    a follower that times out, or whose leader stored nothing, calls the provider itself;
 * 3. the leader calls the provider (forward), recording what the app receives, and stores it when
 *    it is a whole, successful, non-refusal answer within maxEntryBytes.
 *
 * The store failing never fails a call: the call then goes to the provider as if uncached.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import type { BudgetSet } from '../../common/budgets/load-budgets.ts';
import type { SavingsRecord } from '../../common/cache-savings.ts';
import type { TokenUsage } from '../../common/quota-api.ts';
import type { CallResult } from '../proxy/forward-call.ts';
import type { Operation } from '../providers/routes.ts';
import { checkAnswer } from './answer-check.ts';
import { decodeEntry, encodeEntry, envelopeBytes, type CacheEntry } from './cache-entry.ts';
import { answerForm, cacheKeyOf, type AnswerForm } from './cache-key.ts';
import type { CacheMetrics, NotStoredReason } from './cache-metrics.ts';
import {
  CACHE_HEADER,
  cacheDirective,
  cacheSettingsFor,
  cacheUse,
  type CacheSettings,
} from './cache-policy.ts';
import type { CacheKey, CacheStore } from './cache-store.ts';
import { LocalIndex } from './local-index.ts';

/** A leader's lock outlives a crashed leader by at most this long; a live one extends it. */
const LOCK_TTL_MS = 10_000;
const LOCK_EXTEND_MS = 3_000;
const POLL_FIRST_MS = 2;
const POLL_MAX_MS = 100;
/** Provider response headers replayed with a hit; rate-limit headers would be stale. */
const KEPT_HEADERS = ['content-type', 'x-request-id', 'request-id'];

/** What the proxy hands the recorder: the provider's status and headers, then the app's bytes. */
export interface ResponseRecorder {
  head(status: number, headers: Record<string, string | string[] | undefined>): void;
  bytes(chunk: Buffer): void;
}

export interface CacheCallInput {
  operation: Operation;
  providerId: string;
  budgetId: string;
  model: string;
  stream: boolean;
  /** The parsed request body. */
  body: Record<string, unknown>;
  headers: IncomingHttpHeaders;
  /** performance.now() at arrival. */
  arrivedAt: number;
  /** Epoch ms. */
  deadlineMs: number;
  signal: AbortSignal;
}

export type Forward = (recorder: ResponseRecorder | undefined) => Promise<CallResult>;

export interface ResponseCacheOptions {
  store: CacheStore;
  budgets: BudgetSet;
  metrics: CacheMetrics;
  log?: (message: string, fields?: Record<string, unknown>) => void;
  /** Bytes of entries this sidecar keeps a copy of (local-index.ts); 16 MiB by default. */
  localMaxBytes?: number;
  /** How long a local copy is served before the store is asked again; 1 s by default. */
  localHoldMs?: number;
  /** How often the savings counted here are added to the store's (for GetUsage); 1 s by default. */
  savingsFlushMs?: number;
}

class Recorder implements ResponseRecorder {
  status = 0;
  headers: Record<string, string> = {};
  readonly chunks: Buffer[] = [];
  size = 0;
  overflow = false;
  readonly #max: number;

  constructor(maxBytes: number) {
    this.#max = maxBytes;
  }

  head(status: number, headers: Record<string, string | string[] | undefined>): void {
    this.status = status;
    for (const name of KEPT_HEADERS) {
      const value = headers[name];
      if (typeof value === 'string') this.headers[name] = value;
    }
  }

  bytes(chunk: Buffer): void {
    if (this.overflow) return;
    this.size += chunk.length;
    if (this.size > this.#max) {
      this.overflow = true;
      this.chunks.length = 0;
      return;
    }
    this.chunks.push(chunk);
  }
}

interface Deferred {
  promise: Promise<CacheEntry | undefined>;
  resolve(entry: CacheEntry | undefined): void;
}

function deferred(): Deferred {
  let resolve!: (entry: CacheEntry | undefined) => void;
  const promise = new Promise<CacheEntry | undefined>((done) => {
    resolve = done;
  });
  return { promise, resolve };
}

function entryName(key: CacheKey): string {
  return `${key.scope}\n${key.id}`;
}

export class ResponseCache {
  readonly #store: CacheStore;
  readonly #budgets: BudgetSet;
  readonly #metrics: CacheMetrics;
  readonly #log: (message: string, fields?: Record<string, unknown>) => void;
  /**
   * What this process will learn about each key being fetched: one entry per distinct key in
   * flight here, removed when its leader (or remote follower) finishes; bounded by the calls in
   * flight.
   */
  readonly #inflight = new Map<string, Deferred>();
  readonly #local: LocalIndex;
  /** Savings not yet added to the store, by `provider\nbudget`: a few entries per sidecar. */
  readonly #pendingSavings = new Map<string, SavingsRecord>();
  readonly #flushTimer: NodeJS.Timeout;

  constructor(options: ResponseCacheOptions) {
    this.#flushTimer = setInterval(() => void this.flushSavings(), options.savingsFlushMs ?? 1_000).unref();
    this.#local = new LocalIndex(options.localMaxBytes ?? 16 * 1024 * 1024, options.localHoldMs ?? 1_000);
    this.#store = options.store;
    this.#budgets = options.budgets;
    this.#metrics = options.metrics;
    this.#log = options.log ?? (() => {});
  }

  /** Adds the savings counted since the last flush to the store; kept for the next one on failure. */
  async flushSavings(): Promise<void> {
    const records = [...this.#pendingSavings.values()];
    if (records.length === 0) return;
    this.#pendingSavings.clear();
    try {
      await this.#store.addSavings(records);
    } catch (error) {
      this.#storeError('addSavings', error);
      for (const record of records) this.#countSaving(record.provider, record.budget, record.savings);
    }
  }

  async close(): Promise<void> {
    clearInterval(this.#flushTimer);
    await this.flushSavings();
  }

  #countSaving(provider: string, budget: string, saved: SavingsRecord['savings']): void {
    const name = `${provider}\n${budget}`;
    const record = this.#pendingSavings.get(name) ?? {
      provider,
      budget,
      savings: { hits: 0, inputTokens: 0, outputTokens: 0 },
    };
    record.savings.hits += saved.hits;
    record.savings.inputTokens += saved.inputTokens;
    record.savings.outputTokens += saved.outputTokens;
    this.#pendingSavings.set(name, record);
  }

  /** Distinct keys in flight in this process. */
  get inflight(): number {
    return this.#inflight.size;
  }

  async call(input: CacheCallInput, response: ServerResponse, forward: Forward): Promise<CallResult> {
    const budget = this.#budgets.budgets.get(input.budgetId);
    const settings = budget === undefined ? undefined : cacheSettingsFor(budget, input.model);
    const directive = settings === undefined ? undefined : cacheDirective(input.headers[CACHE_HEADER]);
    const use = cacheUse(settings, directive, input.operation, input.body);
    if (settings === undefined || use === undefined) return forward(undefined);

    const form = answerForm(input.operation, input.body, input.stream);
    const key = cacheKeyOf({
      providerId: input.providerId,
      scope: settings.scope,
      operation: input.operation,
      form,
      body: input.body,
    });
    const labels = { budget: input.budgetId };
    const call: Call = { input, settings, key, form, labels, response, forward };

    if (!use.lookup) {
      this.#metrics.misses.inc(labels);
      response.setHeader(CACHE_HEADER, 'refresh');
      return this.#lead(call, undefined);
    }
    const stored = await this.#read(call);
    if (stored !== undefined) return this.#serve(call, stored);
    this.#metrics.misses.inc(labels);
    response.setHeader(CACHE_HEADER, 'miss');

    const waitUntil = Math.min(Date.now() + settings.coalesceWaitMs, input.deadlineMs);
    const local = this.#inflight.get(entryName(key));
    if (local !== undefined) {
      const waited = await this.#waitLocal(local.promise, waitUntil, input.signal);
      if (waited !== 'timeout' && waited !== undefined) {
        this.#metrics.coalescedWaits.inc({ ...labels, result: 'served' });
        return this.#serve(call, waited);
      }
      this.#metrics.coalescedWaits.inc({ ...labels, result: waited ?? 'leaderFailed' });
      return this.#lead(call, undefined);
    }

    // First here for this key: lead, or follow a leader in another sidecar through the store.
    const shared = deferred();
    this.#inflight.set(entryName(key), shared);
    let handedOff = false;
    try {
      const owner = randomUUID();
      for (let pollMs = POLL_FIRST_MS; ; pollMs = Math.min(POLL_MAX_MS, pollMs * 2)) {
        const lock = await this.#tryLock(call, owner);
        if (lock === 'noStore') {
          shared.resolve(undefined);
          return await this.#lead(call, undefined);
        }
        if (lock === 'locked') {
          // The previous leader may have stored and unlocked between our lookup and our lock.
          const late = await this.#read(call);
          if (late !== undefined) {
            await this.#unlock(call, owner);
            shared.resolve(late);
            this.#metrics.coalescedWaits.inc({ ...labels, result: 'served' });
            return this.#serve(call, late);
          }
          handedOff = true;
          return await this.#lead(call, { owner, shared });
        }
        if (Date.now() + pollMs > waitUntil) {
          this.#metrics.coalescedWaits.inc({ ...labels, result: 'timeout' });
          shared.resolve(undefined);
          return await this.#lead(call, undefined);
        }
        await sleep(pollMs, undefined, { signal: input.signal });
        const entry = await this.#read(call);
        if (entry !== undefined) {
          this.#metrics.coalescedWaits.inc({ ...labels, result: 'served' });
          shared.resolve(entry);
          return this.#serve(call, entry);
        }
      }
    } finally {
      if (!handedOff) {
        shared.resolve(undefined);
        this.#inflight.delete(entryName(key));
      }
    }
  }

  async #waitLocal(
    promise: Promise<CacheEntry | undefined>,
    waitUntil: number,
    signal: AbortSignal,
  ): Promise<CacheEntry | 'timeout' | undefined> {
    const timeout = new AbortController();
    const onAbort = () => timeout.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      return await Promise.race([
        promise,
        sleep(Math.max(0, waitUntil - Date.now()), 'timeout' as const, { signal: timeout.signal }),
      ]);
    } catch (error) {
      if (signal.aborted) throw signal.reason;
      throw error;
    } finally {
      signal.removeEventListener('abort', onAbort);
      timeout.abort();
    }
  }

  async #read(call: Call): Promise<CacheEntry | undefined> {
    const name = entryName(call.key);
    const local = this.#local.get(name);
    if (local !== undefined) return local;
    let bytes: Buffer | undefined;
    try {
      bytes = await this.#store.get(call.key);
    } catch (error) {
      this.#storeError('get', error);
      return undefined;
    }
    if (bytes === undefined) return undefined;
    try {
      const entry = decodeEntry(bytes, call.key.id);
      this.#local.set(name, entry, entry.storedAtMs + call.settings.ttlMs);
      return entry;
    } catch (error) {
      this.#metrics.corrupt.inc(call.labels);
      this.#log('corrupt cache entry removed', {
        budget: call.input.budgetId,
        reason: (error as Error).message,
      });
      await this.#store
        .remove(call.key)
        .catch((removeError: unknown) => this.#storeError('remove', removeError));
      return undefined;
    }
  }

  async #tryLock(call: Call, owner: string): Promise<'locked' | 'held' | 'noStore'> {
    try {
      return (await this.#store.lock(call.key, owner, LOCK_TTL_MS)) ? 'locked' : 'held';
    } catch (error) {
      // No store, no coalescing across sidecars: call without a lock.
      this.#storeError('lock', error);
      return 'noStore';
    }
  }

  async #unlock(call: Call, owner: string): Promise<void> {
    await this.#store.unlock(call.key, owner).catch((error: unknown) => this.#storeError('unlock', error));
  }

  #serve(call: Call, entry: CacheEntry): CallResult {
    const { response, labels } = call;
    const age = Math.max(0, Math.floor((Date.now() - entry.storedAtMs) / 1000));
    if (!response.destroyed) {
      response.writeHead(entry.status, {
        ...entry.headers,
        'content-length': entry.body.length,
        [CACHE_HEADER]: 'hit',
        age: String(age),
      });
      response.end(entry.body);
    }
    this.#metrics.hits.inc(labels);
    this.#metrics.savedRequests.inc(labels);
    this.#metrics.savedTokens.inc({ ...labels, direction: 'input' }, entry.usage.inputTokens);
    this.#metrics.savedTokens.inc({ ...labels, direction: 'output' }, entry.usage.outputTokens);
    this.#metrics.hitSeconds.observe(labels, (performance.now() - call.input.arrivedAt) / 1000);
    this.#countSaving(call.input.providerId, call.input.budgetId, { hits: 1, ...entry.usage });
    return { outcome: 'ok', status: entry.status, usage: entry.usage };
  }

  /** Calls the provider, stores a storable answer, and tells this process's followers. */
  async #lead(call: Call, lock: { owner: string; shared: Deferred } | undefined): Promise<CallResult> {
    const recorder = new Recorder(call.settings.maxEntryBytes);
    const extender =
      lock === undefined
        ? undefined
        : setInterval(() => {
            this.#store
              .extendLock(call.key, lock.owner, LOCK_TTL_MS)
              .catch((error: unknown) => this.#storeError('extendLock', error));
          }, LOCK_EXTEND_MS).unref();
    let entry: CacheEntry | undefined;
    try {
      const result = await call.forward(recorder);
      entry = await this.#keep(call, recorder, result);
      return result;
    } finally {
      clearInterval(extender);
      if (lock !== undefined) {
        await this.#unlock(call, lock.owner);
        lock.shared.resolve(entry);
        this.#inflight.delete(entryName(call.key));
      }
    }
  }

  async #keep(call: Call, recorder: Recorder, result: CallResult): Promise<CacheEntry | undefined> {
    // Errors and refusals by the provider: never stored (counted by the sidecar's own metrics).
    if (recorder.status < 200 || recorder.status >= 300) return undefined;
    const notStored = (reason: NotStoredReason) => {
      this.#metrics.notStored.inc({ ...call.labels, reason });
      return undefined;
    };
    // A 2xx answer cut short (the provider broke off, the app went away).
    if (result.outcome !== 'ok') return notStored('partial');
    const usage: TokenUsage = result.usage ?? { inputTokens: 0, outputTokens: 0 };
    const meta = {
      id: call.key.id,
      storedAtMs: Date.now(),
      status: recorder.status,
      headers: recorder.headers,
      usage,
    };
    if (recorder.overflow || recorder.size + envelopeBytes(meta) > call.settings.maxEntryBytes) {
      return notStored('tooLarge');
    }
    const body = Buffer.concat(recorder.chunks, recorder.size);
    const verdict = checkAnswer(call.input.operation, call.form, body);
    if (verdict !== 'ok') return notStored(verdict);
    const entry: CacheEntry = { ...meta, body };
    const bytes = encodeEntry(entry);
    try {
      const put = await this.#store.put(call.key, bytes, call.settings.ttlMs, call.settings.maxScopeBytes);
      if (put.evicted > 0) this.#metrics.evicted.inc(call.labels, put.evicted);
      if (!put.stored) return notStored('scopeFull');
    } catch (error) {
      this.#storeError('put', error);
      return notStored('storeError');
    }
    this.#local.set(entryName(call.key), entry, entry.storedAtMs + call.settings.ttlMs);
    this.#metrics.stored.inc(call.labels);
    this.#metrics.storedBytes.inc(call.labels, bytes.length);
    return entry;
  }

  #storeError(operation: string, error: unknown): void {
    this.#metrics.storeErrors.inc({ operation });
    this.#log('cache store error', { operation, error: (error as Error)?.message });
  }
}

interface Call {
  input: CacheCallInput;
  settings: CacheSettings;
  key: CacheKey;
  form: AnswerForm;
  labels: { budget: string };
  response: ServerResponse;
  forward: Forward;
}
