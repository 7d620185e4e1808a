/**
 * What the demo runs for each provider flavour: the example budgets (examples/demo/<flavour>.yaml,
 * the objects a user would apply), how the simulated provider answers, which SDK the tenants use,
 * and how much load they offer.
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { buildBudgetSet, parseBudgetsYaml, type BudgetSet } from '../common/budgets/load-budgets.ts';
import { objectId, priorityValue, type LLMBudget, type LLMProvider } from '../common/budgets/types.ts';
import type { DemoFlavour } from './config.ts';

export const EXAMPLES_DIR = fileURLToPath(new URL('../examples/demo/', import.meta.url));

/** The simulated provider's latency: about 0.4 s a call (150 ms + 24 tokens at 10 ms). */
export const SIM_TIMING = { latencyMs: 150, perTokenMs: 10, outputTokens: 24 } as const;
export const CALL_SECONDS = (SIM_TIMING.latencyMs + SIM_TIMING.perTokenMs * SIM_TIMING.outputTokens) / 1000;
export const MAX_TOKENS = 64;

interface FlavourPlan {
  client: 'openai' | 'anthropic';
  model: string;
  /**
   * Clients working back to back, all tenants together: about three times what the binding limit
   * lets through at CALL_SECONDS a call (concurrency 6 -> 18; 12 requests/s -> 15).
   */
  workers: number;
}

export const FLAVOUR_PLANS: Record<DemoFlavour, FlavourPlan> = {
  glm: { client: 'openai', model: 'glm-4.6', workers: 18 },
  deepseek: { client: 'openai', model: 'deepseek-chat', workers: 18 },
  openai: { client: 'openai', model: 'gpt-4o-mini', workers: 15 },
  anthropic: { client: 'anthropic', model: 'claude-sonnet-4-5', workers: 12 },
};

/**
 * Skewed demand, as in real clusters: the third tenant (`reports`, a batch job with a big worker
 * pool) sends 2.5 times as many calls as each of the first two. Every tenant still wants more than
 * its weighted share, so with tokenlease the shares follow the weights, and without it the demand.
 */
const DEMAND = [2, 2, 5];

export interface Tenant {
  /** `namespace/name` of its LLMBudget. */
  budget: string;
  name: string;
  weight: number;
  priority: number;
  /** weight / sum of weights: its share when every tenant wants more than it gets. */
  expectedShare: number;
  workers: number;
}

export interface Scenario {
  flavour: DemoFlavour;
  file: string;
  budgets: BudgetSet;
  provider: LLMProvider;
  providerId: string;
  tenants: Tenant[];
  plan: FlavourPlan;
}

/**
 * Loads the flavour's example file, points its provider at `baseURL`, and keeps the first
 * `tenantCount` budgets, adding `tenant-N` budgets of weight 1 when more are asked for.
 */
export async function loadScenario(
  flavour: DemoFlavour,
  tenantCount: number,
  baseURL: string,
): Promise<Scenario> {
  const file = `${EXAMPLES_DIR}${flavour}.yaml`;
  const objects = parseBudgetsYaml(await readFile(file, 'utf8'), file);
  const provider = objects.find((object): object is LLMProvider => object.kind === 'LLMProvider');
  if (!provider) throw new Error(`${file} holds no LLMProvider`);
  const budgets = objects.filter((object): object is LLMBudget => object.kind === 'LLMBudget');
  const chosen = budgets.slice(0, tenantCount);
  for (let index = chosen.length; index < tenantCount; index++) {
    chosen.push({
      apiVersion: provider.apiVersion,
      kind: 'LLMBudget',
      metadata: { name: `tenant-${index + 1}`, namespace: provider.metadata.namespace },
      spec: {
        providerRef: { name: provider.metadata.name },
        weight: 1,
        priority: 'standard',
        priorityAging: '10s',
        caps: [],
      },
    });
  }
  const pointed: LLMProvider = { ...provider, spec: { ...provider.spec, baseURL } };
  const set = buildBudgetSet([pointed, ...chosen]);
  const plan = FLAVOUR_PLANS[flavour];
  const totalWeight = chosen.reduce((sum, budget) => sum + budget.spec.weight, 0);
  const demand = chosen.map((_, index) => DEMAND[index] ?? 2);
  const totalDemand = demand.reduce((sum, share) => sum + share, 0);
  return {
    flavour,
    file,
    budgets: set,
    provider: pointed,
    providerId: objectId(pointed.metadata),
    plan,
    tenants: chosen.map((budget, index) => ({
      budget: objectId(budget.metadata),
      name: budget.metadata.name,
      weight: budget.spec.weight,
      priority: priorityValue(budget.spec.priority),
      expectedShare: budget.spec.weight / totalWeight,
      workers: Math.max(2, Math.round((plan.workers * demand[index]!) / totalDemand)),
    })),
  };
}
