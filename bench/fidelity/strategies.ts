/**
 * The four ways 50 pods can share one provider account in the fidelity benchmark: tokenlease
 * (leases from the quota service), and three baselines — uncoordinated clients relying on the
 * official SDK's retries, a static per-pod split of the limits, and a shared Redis counter
 * checked then incremented. Each call reports whether it was served and how long it waited
 * before the upstream attempt that succeeded.
 */
import { Redis } from 'ioredis';
import OpenAI from 'openai';
import type { QuotaApi } from '../../common/quota-api.ts';
import { countPromptTokens, maxOutputTokens } from '../../common/tokens/count-tokens.ts';
import { createDispatcher, leasedCall } from './leased-call.ts';
import { LocalLimiter } from './local-limiter.ts';
import type { Arrival } from './workload.ts';

export interface CallRecord {
  served: boolean;
  /** Tokenlease only: the call's id in its path, and when its lease was granted (store clock). */
  callId?: number;
  grantedAtMs?: number;
  sentAtMs?: number;
  /** From the app's request to the start of the upstream attempt that succeeded. */
  waitMs?: number;
}

export interface Strategy {
  name: string;
  call(arrival: Arrival, signal: AbortSignal): Promise<CallRecord>;
  close(): Promise<void>;
}

export interface AccountLimits {
  requests: number;
  totalTokens: number;
  windowMs: number;
  concurrency: number;
}

/**
 * Where sidecar `index` sends its calls: the path tells the provider's ledger who called (and,
 * with `callId`, which call).
 */
export function sidecarBaseUrl(simUrl: string, index: number, callId?: number): string {
  return callId === undefined ? `${simUrl}/s/${index}/v1` : `${simUrl}/s/${index}/c/${callId}/v1`;
}

function estimate(body: Record<string, unknown>): number {
  return countPromptTokens(body, 'chat.completions') + (maxOutputTokens(body, 'chat.completions') ?? 0);
}

function isAbort(error: unknown): boolean {
  return error instanceof OpenAI.APIUserAbortError || (error as Error).name === 'AbortError';
}

/**
 * One `openai` client per pod with the SDK's default retry policy (2 retries, exponential backoff
 * honouring retry-after). A fetch wrapper notes when each attempt starts, to measure the wait.
 */
class SdkPods {
  readonly #clients: OpenAI[];
  readonly #attemptStarts = new Map<string, number>();
  #seq = 0;

  constructor(simUrl: string, pods: number) {
    const attempts = this.#attemptStarts;
    const timedFetch: typeof fetch = (input, init) => {
      const id = new Headers(init?.headers).get('x-bench-call');
      if (id) attempts.set(id, performance.now());
      return fetch(input, init);
    };
    this.#clients = Array.from(
      { length: pods },
      (_, index) =>
        new OpenAI({
          apiKey: 'sim',
          baseURL: sidecarBaseUrl(simUrl, index),
          maxRetries: 2,
          fetch: timedFetch,
        }),
    );
  }

  /** Calls through pod `index`'s SDK; the wait counts from `arrivedAt` (performance.now()). */
  async call(
    index: number,
    body: Record<string, unknown>,
    arrivedAt: number,
    signal: AbortSignal,
  ): Promise<CallRecord> {
    const id = String(++this.#seq);
    try {
      await this.#clients[index]!.chat.completions.create(
        body as unknown as OpenAI.ChatCompletionCreateParamsNonStreaming,
        {
          signal,
          headers: { 'x-bench-call': id },
        },
      );
      return { served: true, waitMs: (this.#attemptStarts.get(id) ?? arrivedAt) - arrivedAt };
    } catch (error) {
      if (isAbort(error) || error instanceof OpenAI.APIError) return { served: false };
      throw error;
    } finally {
      this.#attemptStarts.delete(id);
    }
  }
}

export function tokenleaseStrategy(options: {
  quotas: QuotaApi[];
  provider: string;
  simUrl: string;
  maxWaitMs: number;
  defaultMaxOutputTokens: number;
}): Strategy {
  const dispatcher = createDispatcher();
  let seq = 0;
  return {
    name: 'tokenlease',
    async call(arrival, signal) {
      const index = arrival.sidecar.index;
      const callId = ++seq;
      const result = await leasedCall(
        {
          quota: options.quotas[index % options.quotas.length]!,
          provider: options.provider,
          budget: arrival.sidecar.budget,
          flavor: 'openai',
          baseUrl: sidecarBaseUrl(options.simUrl, index, callId),
          dispatcher,
          defaultMaxOutputTokens: options.defaultMaxOutputTokens,
        },
        arrival.body,
        { maxWaitMs: options.maxWaitMs, signal },
      ).catch((error: unknown) => {
        if ((error as Error).name === 'CancelledError') return { kind: 'rejected' as const, waitedMs: 0 };
        throw error;
      });
      if (result.kind === 'rejected') return { served: false };
      return {
        served: result.outcome === 'ok',
        waitMs: result.waitedMs,
        callId,
        grantedAtMs: result.grantedAtMs,
        sentAtMs: result.sentAtMs,
      };
    },
    close: () => dispatcher.close(),
  };
}

export function uncoordinatedStrategy(options: { simUrl: string; pods: number }): Strategy {
  const pods = new SdkPods(options.simUrl, options.pods);
  return {
    name: 'uncoordinated',
    call: (arrival, signal) => pods.call(arrival.sidecar.index, arrival.body, performance.now(), signal),
    close: async () => {},
  };
}

/** Each pod enforces limit/pods of every limit on its own (exactly, with reservations), then calls with the SDK. */
export function staticSplitStrategy(options: {
  simUrl: string;
  pods: number;
  limits: AccountLimits;
  maxWaitMs: number;
}): Strategy {
  const pods = new SdkPods(options.simUrl, options.pods);
  const { limits } = options;
  const limiters = Array.from(
    { length: options.pods },
    () =>
      new LocalLimiter({
        requests: Math.floor(limits.requests / options.pods),
        tokens: Math.floor(limits.totalTokens / options.pods),
        windowMs: limits.windowMs,
        concurrency: Math.max(1, Math.floor(limits.concurrency / options.pods)),
      }),
  );
  return {
    name: 'static_split',
    async call(arrival, signal) {
      const arrivedAt = performance.now();
      const limiter = limiters[arrival.sidecar.index]!;
      const slot = await limiter.acquire(estimate(arrival.body), options.maxWaitMs, signal);
      if (!slot) return { served: false };
      try {
        return await pods.call(arrival.sidecar.index, arrival.body, arrivedAt, signal);
      } finally {
        slot.release();
      }
    },
    close: async () => {},
  };
}

/**
 * The usual hand-written shared limiter: per fixed window, GET the counters, compare, then INCR
 * (with EXPIRE) — no reservation, no atomicity between check and increment; an in-flight counter
 * INCR/DECR around the call. Over the limit, wait for the next window (or a slot) and check again.
 */
export function redisCounterStrategy(options: {
  simUrl: string;
  pods: number;
  limits: AccountLimits;
  maxWaitMs: number;
  redisUrl: string;
  keyPrefix: string;
}): Strategy {
  const pods = new SdkPods(options.simUrl, options.pods);
  const redises = Array.from(
    { length: options.pods },
    () => new Redis(options.redisUrl, { lazyConnect: false }),
  );
  const { limits, keyPrefix } = options;
  const ttl = Math.ceil((2 * limits.windowMs) / 1000);
  const sleep = (ms: number, signal: AbortSignal) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      signal.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true });
    });
  return {
    name: 'redis_counter',
    async call(arrival, signal) {
      const arrivedAt = performance.now();
      const deadline = arrivedAt + options.maxWaitMs;
      const redis = redises[arrival.sidecar.index]!;
      const tokens = estimate(arrival.body);
      while (!signal.aborted && performance.now() < deadline) {
        const window = Math.floor(Date.now() / limits.windowMs);
        const [requests, used, inFlight] = await redis.mget(
          `${keyPrefix}r:${window}`,
          `${keyPrefix}t:${window}`,
          `${keyPrefix}c`,
        );
        if (Number(inFlight) + 1 > limits.concurrency) {
          await sleep(20, signal);
          continue;
        }
        if (Number(requests) + 1 > limits.requests || Number(used) + tokens > limits.totalTokens) {
          const nextWindowMs = (window + 1) * limits.windowMs - Date.now();
          await sleep(nextWindowMs + Math.random() * 50, signal);
          continue;
        }
        await redis
          .multi()
          .incr(`${keyPrefix}r:${window}`)
          .expire(`${keyPrefix}r:${window}`, ttl)
          .incrby(`${keyPrefix}t:${window}`, tokens)
          .expire(`${keyPrefix}t:${window}`, ttl)
          .incr(`${keyPrefix}c`)
          .exec();
        try {
          return await pods.call(arrival.sidecar.index, arrival.body, arrivedAt, signal);
        } finally {
          await redis.decr(`${keyPrefix}c`);
        }
      }
      return { served: false };
    },
    async close() {
      const keys = await redises[0]!.keys(`${keyPrefix}*`);
      if (keys.length > 0) await redises[0]!.del(...keys);
      redises.forEach((redis) => redis.disconnect());
    },
  };
}
