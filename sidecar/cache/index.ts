/** The shared response cache's public surface (see response-cache.ts for how a call uses it). */
export { ResponseCache, type CacheCallInput, type ResponseRecorder } from './response-cache.ts';
export type { CacheKey, CacheStore, PutResult } from './cache-store.ts';
export { MemoryCacheStore, type MemoryCacheStoreOptions } from './memory-cache-store.ts';
export { RedisCacheStore, type RedisCacheStoreOptions } from './redis-cache-store.ts';
export { createCacheMetrics, type CacheMetrics } from './cache-metrics.ts';
