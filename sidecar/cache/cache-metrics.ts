/**
 * The response cache's metrics, registered in the sidecar's private registry. Labels are bounded:
 * the budget (one per sidecar), fixed reasons and results.
 */
import { Counter, Histogram, type Registry } from 'prom-client';

const PREFIX = 'tokenlease_sidecar_cache_';

export const NOT_STORED_REASONS = [
  'tooLarge',
  'partial',
  'refusal',
  'invalid',
  'scopeFull',
  'storeError',
] as const;
export type NotStoredReason = (typeof NOT_STORED_REASONS)[number];

export interface CacheMetrics {
  hits: Counter<'budget'>;
  misses: Counter<'budget'>;
  /** `served`: the leader's answer; `timeout`: waited the bound out; `leaderFailed`: the leader stored nothing. */
  coalescedWaits: Counter<'budget' | 'result'>;
  storedBytes: Counter<'budget'>;
  stored: Counter<'budget'>;
  notStored: Counter<'budget' | 'reason'>;
  evicted: Counter<'budget'>;
  corrupt: Counter<'budget'>;
  savedRequests: Counter<'budget'>;
  savedTokens: Counter<'budget' | 'direction'>;
  storeErrors: Counter<'operation'>;
  hitSeconds: Histogram<'budget'>;
}

export function createCacheMetrics(registry: Registry): CacheMetrics {
  const registers = [registry];
  return {
    hits: new Counter({
      name: `${PREFIX}hits_total`,
      help: 'Calls answered from the response cache (no lease, no provider call), coalesced ones included.',
      labelNames: ['budget'],
      registers,
    }),
    misses: new Counter({
      name: `${PREFIX}misses_total`,
      help: 'Cacheable calls that found no stored answer (or asked for a refresh) and went to the provider.',
      labelNames: ['budget'],
      registers,
    }),
    coalescedWaits: new Counter({
      name: `${PREFIX}coalesced_waits_total`,
      help: 'Calls that waited for an identical call in flight, by result (served, timeout, leaderFailed).',
      labelNames: ['budget', 'result'],
      registers,
    }),
    storedBytes: new Counter({
      name: `${PREFIX}stored_bytes_total`,
      help: 'Bytes of answers written to the cache store.',
      labelNames: ['budget'],
      registers,
    }),
    stored: new Counter({
      name: `${PREFIX}stored_total`,
      help: 'Answers written to the cache store.',
      labelNames: ['budget'],
      registers,
    }),
    notStored: new Counter({
      name: `${PREFIX}not_stored_total`,
      help: 'Successful cacheable answers not stored, by reason (tooLarge, partial, refusal, invalid, scopeFull, storeError).',
      labelNames: ['budget', 'reason'],
      registers,
    }),
    evicted: new Counter({
      name: `${PREFIX}evicted_total`,
      help: 'Entries dropped to keep a scope within its byte cap (or the memory store within its own).',
      labelNames: ['budget'],
      registers,
    }),
    corrupt: new Counter({
      name: `${PREFIX}corrupt_entries_total`,
      help: 'Stored entries that failed their checksum or header checks; removed and never served.',
      labelNames: ['budget'],
      registers,
    }),
    savedRequests: new Counter({
      name: `${PREFIX}saved_requests_total`,
      help: 'Provider calls not made thanks to the cache (hits, coalesced ones included).',
      labelNames: ['budget'],
      registers,
    }),
    savedTokens: new Counter({
      name: `${PREFIX}saved_tokens_total`,
      help: 'Tokens the provider would have charged for the calls answered from the cache, by direction (input, output).',
      labelNames: ['budget', 'direction'],
      registers,
    }),
    storeErrors: new Counter({
      name: `${PREFIX}store_errors_total`,
      help: 'Cache store operations that failed; the call then goes to the provider as if uncached.',
      labelNames: ['operation'],
      registers,
    }),
    hitSeconds: new Histogram({
      name: `${PREFIX}hit_duration_seconds`,
      help: 'Time from a request arriving to its cached answer being handed to the connection.',
      labelNames: ['budget'],
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.1],
      registers,
    }),
  };
}
