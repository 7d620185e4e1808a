/**
 * Redis settings the quota service's latency depends on, read once at start-up so that an
 * operator hears of a bad one in the log rather than from a latency graph.
 *
 * The store keeps settled answers a minute, in one hash per few seconds of settles
 * (lease-store.lua save_settled), and unlinks each hash once it is past that minute: freed off
 * Redis's command thread. A provider whose calls stop altogether leaves its last hashes to their
 * own expiry, and Redis frees an expired key on its command thread unless
 * `lazyfree-lazy-expire` is `yes`: a hash of 75 000 answers (5 s at 15 000 settles/s) stalled
 * every client of that Redis for 18 ms here.
 */
import { Cluster, type Redis } from 'ioredis';

export interface RedisSettingAdvice {
  setting: string;
  found: string;
  wanted: string;
  why: string;
}

const WANTED: ReadonlyArray<Omit<RedisSettingAdvice, 'found'>> = [
  {
    setting: 'lazyfree-lazy-expire',
    wanted: 'yes',
    why: "settled answers left to expire (a provider's calls stopped) are freed on Redis's command thread, stalling every client for milliseconds per hash",
  },
];

/**
 * The settings of `client`'s Redis (each primary of a cluster) that differ from what the store
 * wants. Where CONFIG GET is refused (managed Redis, ACL) or fails, nothing is known and nothing
 * is advised: the store works either way.
 */
export async function redisSettingAdvice(client: Redis | Cluster): Promise<RedisSettingAdvice[]> {
  const nodes = client instanceof Cluster ? client.nodes('master') : [client];
  const advice: RedisSettingAdvice[] = [];
  for (const want of WANTED) {
    for (const node of nodes) {
      let reply: unknown;
      try {
        reply = await node.config('GET', want.setting);
      } catch {
        continue;
      }
      const found = Array.isArray(reply) ? reply[1] : undefined;
      if (typeof found === 'string' && found !== want.wanted) {
        advice.push({ ...want, found });
        break;
      }
    }
  }
  return advice;
}
