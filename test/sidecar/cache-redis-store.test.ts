/** The Redis cache store passes the same conformance suite as the memory store. */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll } from 'vitest';
import { cacheStoreConformance } from '../../sidecar/cache/cache-store-conformance.ts';
import { RedisCacheStore } from '../../sidecar/cache/redis-cache-store.ts';
import { redisUrl } from '../support/redis.ts';

const prefix = `tltest-cache:${randomUUID().slice(0, 8)}:`;

afterAll(async () => {
  const admin = new Redis(redisUrl());
  const keys = await admin.keys(`${prefix}*`);
  if (keys.length > 0) await admin.del(...keys);
  await admin.quit();
});

cacheStoreConformance(
  'redis',
  () => new RedisCacheStore({ client: new Redis(redisUrl()), prefix, ownsClient: true }),
);
