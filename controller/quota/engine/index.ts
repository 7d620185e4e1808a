/** The lease engine's public surface. */
import type { BudgetSet } from '../../../common/budgets/load-budgets.ts';
import { StoreLeaseEngine, type LeaseEngine } from './lease-engine.ts';
import { MemoryLeaseStore } from './memory-store.ts';
import { RedisLeaseStore, type RedisStoreOptions } from './redis-store.ts';

export type { LeaseEngine } from './lease-engine.ts';
export { MAX_TOKENS, MAX_WAIT_MS } from './lease-engine.ts';
export type { LeaseStore } from './store.ts';
export { MemoryLeaseStore } from './memory-store.ts';
export { RedisLeaseStore } from './redis-store.ts';
export { forgetBudget } from './forget-budget.ts';

export function createMemoryEngine(options: { budgets: BudgetSet; clock?: () => number }): LeaseEngine {
  return new StoreLeaseEngine(new MemoryLeaseStore({ clock: options.clock }), options.budgets);
}

export function createRedisEngine(options: { budgets: BudgetSet } & RedisStoreOptions): LeaseEngine {
  return new StoreLeaseEngine(new RedisLeaseStore(options), options.budgets);
}
