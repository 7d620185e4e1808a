/** What the reconcilers work with: caches, the store, the API, and the controller's own bookkeeping. */
import type { ObjectCache, V1Secret } from '@kubernetes/client-node';
import type { LLMBudget, LLMProvider } from '../../common/budgets/types.ts';
import type { ProviderUsage } from '../../common/quota-api.ts';
import type { Logger } from '../quota/server/logger.ts';
import type { EventRecorder } from './events.ts';
import type { CustomObject } from './resources.ts';
import type { StatusWriter } from './status-writer.ts';

export interface ReconcileResult {
  /** Reconcile again after this long (usage in status goes stale). */
  requeueAfterMs?: number;
}

export interface ReconcileContext {
  providers: ObjectCache<CustomObject>;
  budgets: ObjectCache<CustomObject>;
  /** Provider id -> `generation|ready` last reconciled: dependent budgets are re-reconciled on change. */
  providerVersions: Map<string, string>;
  /** Ready objects, validated: what the next publish puts into the store. */
  ready: { providers: Map<string, LLMProvider>; budgets: Map<string, LLMBudget> };
  /** The Secret, or undefined when it does not exist. */
  readSecret(namespace: string, name: string): Promise<V1Secret | undefined>;
  /** The provider's usage from the store; undefined when it is not in the published budgets. */
  usage(providerId: string): Promise<ProviderUsage | undefined>;
  /** Writes the Ready objects into the store if they changed. */
  publish(): Promise<void>;
  forgetBudget(budget: LLMBudget): Promise<void>;
  /** Sets metadata.finalizers (guarded by resourceVersion); returns the updated object. */
  setFinalizers(object: CustomObject, finalizers: string[]): Promise<CustomObject>;
  status: StatusWriter;
  events: EventRecorder;
  enqueue(key: string): void;
  logger: Logger;
  /** How often status usage is refreshed while nothing else changes. */
  resyncMs: number;
  now(): Date;
}
