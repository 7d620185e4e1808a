import { describeEngineConformance } from './engine-conformance.ts';
import { StoreLeaseEngine } from './lease-engine.ts';
import { MemoryLeaseStore } from './memory-store.ts';

const stores = new WeakMap<object, MemoryLeaseStore>();

describeEngineConformance('memory store', {
  async create(budgets, clock) {
    const store = new MemoryLeaseStore({ clock });
    const engine = new StoreLeaseEngine(store, budgets);
    stores.set(engine, store);
    return engine;
  },
  async replica(engine) {
    return new StoreLeaseEngine(stores.get(engine)!, (engine as StoreLeaseEngine).budgets());
  },
});
