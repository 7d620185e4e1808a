/**
 * The demo's load: per tenant, a few workers calling back to back with the official SDK (openai,
 * or @anthropic-ai/sdk for the Anthropic flavour), `maxRetries: 2` as an app leaves it. A fetch
 * wrapper counts what each tenant's app sees on the wire: every attempt, every 429, and which of
 * those the sidecar answered itself.
 */
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { MAX_TOKENS, type Tenant } from './scenario.ts';

export interface TenantCounters {
  /** Calls that returned a completion. */
  ok: number;
  /** Calls that failed after the SDK's retries. */
  failed: number;
  /** Calls given up when the phase's drain time ran out. */
  cancelled: number;
  /** HTTP requests sent, retries included. */
  attempts: number;
  /** 429 answers the app received. */
  throttled: number;
  /** Of those, answered by the sidecar itself (x-tokenlease-error), not by the provider. */
  sidecarRefusals: number;
  /** Calls in progress now. */
  inProgress: number;
  /** Sum of completed calls' durations, retries and waits included. */
  latencyMsSum: number;
}

export function emptyCounters(): TenantCounters {
  return {
    ok: 0,
    failed: 0,
    cancelled: 0,
    attempts: 0,
    throttled: 0,
    sidecarRefusals: 0,
    inProgress: 0,
    latencyMsSum: 0,
  };
}

export interface ClientTarget {
  kind: 'openai' | 'anthropic';
  /** The SDK's baseURL: a sidecar, or the provider itself. */
  baseURL: string;
  apiKey: string;
  model: string;
}

type CallOnce = (prompt: string, signal: AbortSignal) => Promise<void>;

function countingFetch(counters: TenantCounters): typeof fetch {
  return async (input, init) => {
    counters.attempts++;
    const response = await fetch(input, init);
    if (response.status === 429) {
      counters.throttled++;
      if (response.headers.has('x-tokenlease-error')) counters.sidecarRefusals++;
    }
    return response;
  };
}

function clientFor(target: ClientTarget, counters: TenantCounters): CallOnce {
  const common = {
    apiKey: target.apiKey,
    baseURL: target.baseURL,
    maxRetries: 2,
    fetch: countingFetch(counters),
  };
  if (target.kind === 'anthropic') {
    const client = new Anthropic(common);
    return async (prompt, signal) => {
      await client.messages.create(
        { model: target.model, max_tokens: MAX_TOKENS, messages: [{ role: 'user', content: prompt }] },
        { signal },
      );
    };
  }
  const client = new OpenAI(common);
  return async (prompt, signal) => {
    await client.chat.completions.create(
      { model: target.model, max_tokens: MAX_TOKENS, messages: [{ role: 'user', content: prompt }] },
      { signal },
    );
  };
}

const TOPICS = [
  'a failed payment',
  'a password reset',
  'a late delivery',
  'a refund',
  'an API outage',
  'a new feature',
];

/** The n-th prompt of a tenant: the same sequence in both phases. */
export function promptOf(tenant: string, n: number): string {
  return `You are the ${tenant} assistant. Summarise ticket #${n} about ${TOPICS[n % TOPICS.length]} in two sentences.`;
}

export interface RunningLoad {
  counters: Map<string, TenantCounters>;
  /** Stops starting calls; resolves when every call in progress has ended (or is cancelled after drainMs). */
  stop(drainMs: number): Promise<void>;
}

/** Starts every tenant's workers against its target. */
export function startLoad(tenants: Tenant[], targetOf: (tenant: Tenant) => ClientTarget): RunningLoad {
  const counters = new Map<string, TenantCounters>();
  const abort = new AbortController();
  let stopping = false;
  const workers: Array<Promise<void>> = [];
  for (const tenant of tenants) {
    const own = emptyCounters();
    counters.set(tenant.budget, own);
    const call = clientFor(targetOf(tenant), own);
    let next = 0;
    for (let worker = 0; worker < tenant.workers; worker++) {
      workers.push(
        (async () => {
          while (!stopping) {
            const started = performance.now();
            own.inProgress++;
            try {
              await call(promptOf(tenant.name, next++), abort.signal);
              own.ok++;
              own.latencyMsSum += performance.now() - started;
            } catch (error) {
              if (abort.signal.aborted) own.cancelled++;
              else {
                own.failed++;
                // After a 429 the app moves on to its next call; on anything else it pauses, not to spin.
                if ((error as { status?: unknown }).status !== 429) {
                  await new Promise((resolve) => setTimeout(resolve, 100));
                }
              }
            } finally {
              own.inProgress--;
            }
          }
        })(),
      );
    }
  }
  return {
    counters,
    async stop(drainMs) {
      stopping = true;
      const timer = setTimeout(() => abort.abort(), drainMs);
      await Promise.all(workers);
      clearTimeout(timer);
    },
  };
}
