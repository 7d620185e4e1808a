/**
 * What the sidecar tests run against: the simulated provider, the lease engine in process, and
 * sidecars in front of them, wired through budgets written the way a user writes them.
 */
import { expect } from 'vitest';
import type { BudgetSet } from '../../common/budgets/load-budgets.ts';
import { buildBudgetSet, parseObject } from '../../common/budgets/load-budgets.ts';
import type { Api, Flavor, LLMBudget, LLMProvider } from '../../common/budgets/types.ts';
import type { QuotaApi } from '../../common/quota-api.ts';
import { createMemoryEngine, type LeaseEngine } from '../../controller/quota/engine/index.ts';
import { startSidecar, type RunningSidecar, type StartSidecarOptions } from '../../sidecar/main.ts';
import { startSimProvider, type SimProvider, type SimProviderOptions } from '../../sim-provider/index.ts';

export const PROVIDER_ID = 'llm/sim';
export const BUDGET_ID = 'team/app';

export interface ProviderFields {
  api?: Api;
  flavor?: Flavor;
  limits?: unknown[];
  models?: string[];
  credentials?: Record<string, unknown>;
  failureMode?: 'closed' | 'localShare' | 'open';
  leaseTimeout?: string;
  defaultMaxOutputTokens?: number;
}

/** The budgets a user would apply: one provider pointing at `baseURL`, one budget drawing on it. */
export function budgetsFor(baseURL: string, fields: ProviderFields = {}): BudgetSet {
  const provider = parseObject(
    {
      apiVersion: 'tokenlease.io/v1alpha1',
      kind: 'LLMProvider',
      metadata: { name: 'sim', namespace: 'llm' },
      spec: {
        api: fields.api ?? 'openai',
        ...(fields.flavor ? { flavor: fields.flavor } : {}),
        baseURL,
        limits: fields.limits ?? [],
        ...(fields.models ? { models: fields.models } : {}),
        ...(fields.credentials ? { credentials: fields.credentials } : {}),
        ...(fields.failureMode ? { failureMode: fields.failureMode } : {}),
        ...(fields.leaseTimeout ? { leaseTimeout: fields.leaseTimeout } : {}),
        ...(fields.defaultMaxOutputTokens ? { defaultMaxOutputTokens: fields.defaultMaxOutputTokens } : {}),
      },
    },
    'test provider',
  ) as LLMProvider;
  const budget = parseObject(
    {
      apiVersion: 'tokenlease.io/v1alpha1',
      kind: 'LLMBudget',
      metadata: { name: 'app', namespace: 'team' },
      spec: { providerRef: { name: 'sim', namespace: 'llm' } },
    },
    'test budget',
  ) as LLMBudget;
  return buildBudgetSet([provider, budget]);
}

export interface Stack {
  sim: SimProvider;
  engine: LeaseEngine;
  budgets: BudgetSet;
  sidecars: RunningSidecar[];
  /** The first sidecar's URL. */
  url: string;
  close(): Promise<void>;
}

export interface StackOptions {
  sim?: SimProviderOptions;
  provider?: ProviderFields;
  sidecar?: Partial<StartSidecarOptions>;
  sidecars?: number;
  /** The quota the sidecars use; the stack's engine when omitted. */
  quota?: (engine: LeaseEngine) => QuotaApi;
}

export async function startStack(options: StackOptions = {}): Promise<Stack> {
  const sim = await startSimProvider({ ...options.sim });
  const api = options.provider?.api ?? 'openai';
  const budgets = budgetsFor(api === 'anthropic' ? sim.url : `${sim.url}/v1`, options.provider);
  const engine = createMemoryEngine({ budgets });
  const quota = options.quota ? options.quota(engine) : engine;
  const sidecars: RunningSidecar[] = [];
  for (let i = 0; i < (options.sidecars ?? 1); i++) {
    sidecars.push(await startSidecar({ budgets, budget: BUDGET_ID, quota, ...options.sidecar }));
  }
  return {
    sim,
    engine,
    budgets,
    sidecars,
    url: sidecars[0]!.url,
    async close() {
      await Promise.all(sidecars.map((sidecar) => sidecar.close()));
      await engine.close();
      await sim.close();
    },
  };
}

/** The provider's in-flight leases and settled token totals according to the quota engine. */
export async function engineState(
  engine: QuotaApi,
): Promise<{ inFlight: number; input: number; output: number }> {
  const snapshot = await engine.usage(PROVIDER_ID);
  const provider = snapshot.providers.find((p) => p.provider === PROVIDER_ID);
  if (!provider) throw new Error(`no usage for ${PROVIDER_ID}`);
  const used = (dimension: string) =>
    provider.limits.find(
      (limit) => limit.scope === 'provider' && limit.dimension === dimension && limit.model === '',
    )?.used;
  return {
    inFlight: provider.inFlight,
    input: used('inputTokens') ?? NaN,
    output: used('outputTokens') ?? NaN,
  };
}

/**
 * The engine holds no lease of the provider any more and has charged exactly the tokens the
 * simulated provider's ledger counted (`sim.ledger.summary().usage`).
 */
export async function expectChargedAsLedger(
  engine: QuotaApi,
  usage: { input: number; output: number },
): Promise<void> {
  const state = await engineState(engine);
  expect(state.inFlight).toBe(0);
  expect({ input: state.input, output: state.output }).toEqual({ input: usage.input, output: usage.output });
}

/** Waits until `check` passes (leases settle just after the response ends). */
export async function eventually(check: () => Promise<void> | void, timeoutMs = 5_000): Promise<void> {
  const start = Date.now();
  for (;;) {
    try {
      await check();
      return;
    } catch (error) {
      if (Date.now() - start > timeoutMs) throw error;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

/** Token windows large enough never to refuse, so the engine's `used` is the settled usage. */
export const ACCOUNTING_LIMITS = [
  { dimension: 'inputTokens', amount: 100_000_000, window: '1h' },
  { dimension: 'outputTokens', amount: 100_000_000, window: '1h' },
];
