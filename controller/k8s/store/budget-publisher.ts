/**
 * Puts the reconciled budgets where every quota-service replica reads them: the Ready providers,
 * and the Ready budgets whose provider is among them (fallbacks to providers that are not Ready are
 * left out of the copy, so one broken fallback does not take a budget down). Writes only when the
 * set differs from the last one written.
 */
import { buildBudgetSet, type BudgetSet } from '../../../common/budgets/load-budgets.ts';
import type { BudgetWriter } from '../../../common/budgets/redis-budget-source.ts';
import { objectId, type LLMBudget, type LLMProvider } from '../../../common/budgets/types.ts';

export class BudgetPublisher {
  readonly #writer: BudgetWriter;
  readonly #onPublished: (budgets: BudgetSet) => void;
  #last: string | undefined;
  #current: BudgetSet = { providers: new Map(), budgets: new Map() };
  #chain: Promise<unknown> = Promise.resolve();

  constructor(writer: BudgetWriter, onPublished: (budgets: BudgetSet) => void) {
    this.#writer = writer;
    this.#onPublished = onPublished;
  }

  /** What was last written. */
  get current(): BudgetSet {
    return this.#current;
  }

  /** Forget what was written: the next publish writes even an unchanged set (a new leader). */
  reset(): void {
    this.#last = undefined;
  }

  /** Writes the set made of these objects if it changed; one write at a time, in call order. */
  publish(providers: Iterable<LLMProvider>, budgets: Iterable<LLMBudget>): Promise<boolean> {
    const set = compose(providers, budgets);
    const next = this.#chain.then(async () => {
      const text = JSON.stringify([...set.providers.values(), ...set.budgets.values()]);
      if (text === this.#last) return false;
      await this.#writer.write(set);
      this.#last = text;
      this.#current = set;
      this.#onPublished(set);
      return true;
    });
    this.#chain = next.catch(() => {});
    return next;
  }
}

export function compose(providerList: Iterable<LLMProvider>, budgetList: Iterable<LLMBudget>): BudgetSet {
  const providers = [...providerList].sort((a, b) =>
    objectId(a.metadata).localeCompare(objectId(b.metadata)),
  );
  const ids = new Set(providers.map((p) => objectId(p.metadata)));
  const budgets: LLMBudget[] = [];
  for (const budget of [...budgetList].sort((a, b) =>
    objectId(a.metadata).localeCompare(objectId(b.metadata)),
  )) {
    const namespace = budget.metadata.namespace;
    if (!ids.has(objectId(budget.spec.providerRef, namespace))) continue;
    const fallbacks = budget.spec.fallbacks?.filter((f) => ids.has(objectId(f.providerRef, namespace)));
    budgets.push({ ...budget, spec: { ...budget.spec, ...(fallbacks ? { fallbacks } : {}) } });
  }
  return buildBudgetSet([...providers, ...budgets]);
}
