/** The quota service's advice on Redis settings, read from a real Redis. */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redisSettingAdvice } from '../../controller/quota-server/redis-settings.ts';
import { redisUrl } from '../support/redis.ts';

describe('redisSettingAdvice', () => {
  const admin = new Redis(redisUrl());
  let original: string;

  beforeAll(async () => {
    original = ((await admin.config('GET', 'lazyfree-lazy-expire')) as string[])[1]!;
  });
  afterAll(async () => {
    await admin.config('SET', 'lazyfree-lazy-expire', original);
    admin.disconnect();
  });

  it('advises lazyfree-lazy-expire yes where Redis frees expired keys on its command thread', async () => {
    await admin.config('SET', 'lazyfree-lazy-expire', 'no');
    const advice = await redisSettingAdvice(admin);
    expect(advice).toEqual([
      expect.objectContaining({ setting: 'lazyfree-lazy-expire', found: 'no', wanted: 'yes' }),
    ]);
    expect(advice[0]!.why).toMatch(/command thread/);
  });

  it('advises nothing once it is set', async () => {
    await admin.config('SET', 'lazyfree-lazy-expire', 'yes');
    expect(await redisSettingAdvice(admin)).toEqual([]);
  });

  it('advises nothing, and does not fail, where CONFIG is refused', async () => {
    await admin.config('SET', 'lazyfree-lazy-expire', 'no');
    const user = `tl-noconfig-${randomUUID().slice(0, 8)}`;
    await admin.call('ACL', 'SETUSER', user, 'on', '>secret', '~*', '&*', '+@all', '-config');
    const restricted = new Redis(redisUrl(), { username: user, password: 'secret' });
    try {
      await expect(restricted.config('GET', 'lazyfree-lazy-expire')).rejects.toThrow(/NOPERM/);
      expect(await redisSettingAdvice(restricted)).toEqual([]);
    } finally {
      restricted.disconnect();
      await admin.call('ACL', 'DELUSER', user);
    }
  });
});
