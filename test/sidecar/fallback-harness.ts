/**
 * Two simulated providers behind one budget: `llm/primary` and its fallback `llm/fallback` (asked
 * for FALLBACK_MODEL), the lease engine in process on a clock the test can move, and a sidecar.
 */
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import type { BudgetSet } from '../../common/budgets/load-budgets.ts';
import { buildBudgetSet, parseObject } from '../../common/budgets/load-budgets.ts';
import type { LLMBudget, LLMProvider } from '../../common/budgets/types.ts';
import { createMemoryEngine, type LeaseEngine } from '../../controller/quota/engine/index.ts';
import { startSidecar, type RunningSidecar, type StartSidecarOptions } from '../../sidecar/main.ts';
import { startSimProvider, type SimProvider, type SimProviderOptions } from '../../sim-provider/index.ts';

export const PRIMARY = 'llm/primary';
export const FALLBACK = 'llm/fallback';
export const BUDGET = 'team/app';
export const PRIMARY_MODEL = 'primary-model';
export const FALLBACK_MODEL = 'fallback-model';

export interface FallbackStackOptions {
  primarySim?: SimProviderOptions;
  fallbackSim?: SimProviderOptions;
  /** Extra LLMProvider spec fields of each. */
  primary?: Record<string, unknown>;
  fallback?: Record<string, unknown>;
  /** The fallback entry's fields besides providerRef (default: model FALLBACK_MODEL, after 200ms). */
  fallbackEntry?: Record<string, unknown>;
  sidecar?: Partial<StartSidecarOptions>;
}

export interface FallbackStack {
  primary: SimProvider;
  fallback: SimProvider;
  engine: LeaseEngine;
  budgets: BudgetSet;
  sidecar: RunningSidecar;
  /** Moves the engine's and both providers' clocks forward. */
  advance(ms: number): void;
  /** The official client on the sidecar, without its own retries (they would hide what happened). */
  client(): OpenAI;
  anthropic(): Anthropic;
  logs: string[];
  /** One metric's text from the sidecar's registry. */
  metric(name: string): Promise<string>;
  inFlight(provider: string): Promise<number>;
  close(): Promise<void>;
}

function provider(name: string, baseURL: string, spec: Record<string, unknown>): LLMProvider {
  return parseObject(
    {
      apiVersion: 'tokenlease.io/v1alpha1',
      kind: 'LLMProvider',
      metadata: { name, namespace: 'llm' },
      spec: { api: 'openai', baseURL, ...spec },
    },
    name,
  ) as LLMProvider;
}

export async function startFallbackStack(options: FallbackStackOptions = {}): Promise<FallbackStack> {
  let offset = 0;
  const clock = () => Date.now() + offset;
  const primary = await startSimProvider({ clock, ...options.primarySim });
  const fallback = await startSimProvider({ clock, ...options.fallbackSim });
  // The Anthropic API's paths carry their own /v1.
  const baseURL = (url: string, spec: Record<string, unknown> | undefined) =>
    spec?.api === 'anthropic' ? url : `${url}/v1`;
  const budgets = buildBudgetSet([
    provider('primary', baseURL(primary.url, options.primary), { ...options.primary }),
    provider('fallback', baseURL(fallback.url, options.fallback), { ...options.fallback }),
    parseObject(
      {
        apiVersion: 'tokenlease.io/v1alpha1',
        kind: 'LLMBudget',
        metadata: { name: 'app', namespace: 'team' },
        spec: {
          providerRef: { name: 'primary', namespace: 'llm' },
          fallbacks: [
            {
              providerRef: { name: 'fallback', namespace: 'llm' },
              ...(options.fallbackEntry ?? { model: FALLBACK_MODEL, after: '200ms' }),
            },
          ],
        },
      },
      'budget',
    ) as LLMBudget,
  ]);
  const engine = createMemoryEngine({ budgets, clock });
  const logs: string[] = [];
  const sidecar = await startSidecar({
    budgets,
    budget: BUDGET,
    quota: engine,
    log: (message) => logs.push(message),
    ...options.sidecar,
  });
  return {
    primary,
    fallback,
    engine,
    budgets,
    sidecar,
    logs,
    advance(ms) {
      offset += ms;
    },
    client: () => new OpenAI({ baseURL: `${sidecar.url}/v1`, apiKey: 'app-has-no-key', maxRetries: 0 }),
    anthropic: () => new Anthropic({ baseURL: sidecar.url, apiKey: 'app-has-no-key', maxRetries: 0 }),
    metric: (name) => sidecar.metrics.registry.getSingleMetricAsString(name),
    async inFlight(id) {
      const snapshot = await engine.usage(id);
      return snapshot.providers.find((p) => p.provider === id)?.inFlight ?? NaN;
    },
    async close() {
      await sidecar.close();
      await engine.close();
      await primary.close();
      await fallback.close();
    },
  };
}

export const CHAT = {
  model: PRIMARY_MODEL,
  max_tokens: 20,
  messages: [{ role: 'user' as const, content: 'Say something short.' }],
};
