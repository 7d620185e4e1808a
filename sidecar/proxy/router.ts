/**
 * Which provider serves a call: the sidecar draws on one budget, whose provider serves the model
 * when it speaks the request's API and lists the model (or lists none); otherwise the first of the
 * budget's fallbacks that does.
 */
import type { BudgetSet } from '../../common/budgets/load-budgets.ts';
import {
  defaultFlavor,
  objectId,
  type Api,
  type Flavor,
  type LLMProvider,
} from '../../common/budgets/types.ts';
import { ConfigError, NotFoundError } from '../../common/errors/errors.ts';
import { parseDuration } from '../../common/duration.ts';

export interface Target {
  providerId: string;
  provider: LLMProvider;
  flavor: Flavor;
  budgetId: string;
  /** `scheme://host:port` of the upstream, for the connection pool. */
  origin: string;
  /** The baseURL's path, without a trailing slash; the API path is appended. */
  basePath: string;
  defaultMaxOutputTokens: number;
  leaseTimeoutMs: number;
}

export class Router {
  readonly #budgetId: string;
  readonly #candidates: Target[];
  /** The candidates speaking each API, in order (resolved once, not per call). */
  readonly #byApi = new Map<Api, Target[]>();

  constructor(budgets: BudgetSet, budgetId: string) {
    const budget = budgets.budgets.get(budgetId);
    if (budget === undefined) {
      throw new ConfigError(
        '--budget',
        `no LLMBudget ${budgetId} in the budgets (${[...budgets.budgets.keys()].join(', ') || 'none'})`,
      );
    }
    this.#budgetId = budgetId;
    const namespace = budget.metadata.namespace;
    const refs = [
      budget.spec.providerRef,
      ...(budget.spec.fallbacks ?? []).map((fallback) => fallback.providerRef),
    ];
    this.#candidates = refs.map((ref) => {
      const providerId = objectId(ref, namespace);
      const provider = budgets.providers.get(providerId);
      if (provider === undefined)
        throw new ConfigError('--budget', `LLMBudget ${budgetId} names unknown LLMProvider ${providerId}`);
      const url = new URL(provider.spec.baseURL);
      return {
        providerId,
        provider,
        flavor: provider.spec.flavor ?? defaultFlavor(provider.spec.api),
        budgetId,
        origin: url.origin,
        basePath: url.pathname.replace(/\/+$/, ''),
        defaultMaxOutputTokens: provider.spec.defaultMaxOutputTokens,
        leaseTimeoutMs: parseDuration(provider.spec.leaseTimeout) ?? 120_000,
      };
    });
    for (const target of this.#candidates) {
      const api = target.provider.spec.api;
      this.#byApi.set(api, [...(this.#byApi.get(api) ?? []), target]);
    }
  }

  get budgetId(): string {
    return this.#budgetId;
  }

  /** The budget's providers as targets: the primary, then one per `spec.fallbacks` entry. */
  get targets(): readonly Target[] {
    return this.#candidates;
  }

  /** Every provider this sidecar may call, primary first. */
  get providerIds(): string[] {
    return [...new Set(this.#candidates.map((target) => target.providerId))];
  }

  resolve(api: Api, model: string): Target {
    const sameApi = this.#byApi.get(api) ?? [];
    const serving = sameApi.find((target) => {
      const models = target.provider.spec.models ?? [];
      return models.length === 0 || models.includes(model);
    });
    if (serving !== undefined) return serving;
    const detail =
      sameApi.length === 0
        ? `LLMBudget ${this.#budgetId} has no provider speaking the ${api} API`
        : `LLMBudget ${this.#budgetId} has no provider serving it`;
    throw new NotFoundError('model', model, detail);
  }
}
