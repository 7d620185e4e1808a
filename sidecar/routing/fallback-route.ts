/**
 * A budget's route: its primary provider, then its fallbacks in order, each asked for its mapped
 * model, and how long to wait for a lease on each before moving to the next (the next entry's
 * `after`; the last one has the caller's whole deadline).
 *
 * Only providers speaking the call's API are on its route: an Anthropic-API provider is never a
 * fallback for an OpenAI-API call, nor the reverse (the sidecar does not translate between
 * APIs). A fallback of another API than the primary is kept for calls of its own API, as the
 * router always did, and reported once at start-up, since it is not a fallback for the primary.
 */
import type { BudgetSet } from '../../common/budgets/load-budgets.ts';
import { parseDuration } from '../../common/duration.ts';
import type { Target } from '../proxy/router.ts';

export interface RouteStep {
  target: Target;
  /** The model to ask this provider for. */
  model: string;
  /** Longest wait for a lease here before moving on; Infinity on the last step. */
  afterMs: number;
}

interface Entry {
  target: Target;
  /** The fallback's `model`; undefined: the requested model. */
  model: string | undefined;
  /** The fallback's `after`: how long the step before it waits. */
  afterMs: number;
}

function serves(target: Target, model: string): boolean {
  const models = target.provider.spec.models ?? [];
  return models.length === 0 || models.includes(model);
}

export class FallbackRoutes {
  readonly #entries: Entry[];
  /** Start-up findings about the configuration (cross-API fallbacks), for the log. */
  readonly warnings: string[] = [];

  /** `targets`: the router's candidates, primary first, then one per `spec.fallbacks` entry. */
  constructor(budgets: BudgetSet, budgetId: string, targets: readonly Target[]) {
    const fallbacks = budgets.budgets.get(budgetId)?.spec.fallbacks ?? [];
    this.#entries = targets.map((target, index) => {
      const fallback = index === 0 ? undefined : fallbacks[index - 1];
      return {
        target,
        model: fallback?.model,
        afterMs: parseDuration(fallback?.after ?? '0s') ?? 0,
      };
    });
    const primary = targets[0]!;
    targets.slice(1).forEach((target, index) => {
      const api = target.provider.spec.api;
      if (api === primary.provider.spec.api) return;
      this.warnings.push(
        `LLMBudget ${budgetId} spec.fallbacks[${index}] (${target.providerId}) speaks the ${api} API and ` +
          `the primary (${primary.providerId}) the ${primary.provider.spec.api} API: it is no fallback for ` +
          `the primary's calls, only a provider for ${api}-API calls`,
      );
    });
  }

  /**
   * The steps of a call of `model` that the router sent to `first`: `first` asked for `model`,
   * then every later provider of the same API that serves its mapped model.
   */
  stepsFrom(first: Target, model: string): RouteStep[] {
    const start = this.#entries.findIndex((entry) => entry.target === first);
    if (start === -1) return [{ target: first, model, afterMs: Infinity }];
    const api = first.provider.spec.api;
    const steps: RouteStep[] = [{ target: first, model, afterMs: Infinity }];
    for (const entry of this.#entries.slice(start + 1)) {
      if (entry.target.provider.spec.api !== api) continue;
      const asked = entry.model ?? model;
      if (!serves(entry.target, asked)) continue;
      // Its `after` is how long the step before it waits.
      steps[steps.length - 1]!.afterMs = entry.afterMs;
      steps.push({ target: entry.target, model: asked, afterMs: Infinity });
    }
    return steps;
  }
}
