/** The custom resources as the API server returns them, and where they live. */
import { API_GROUP } from '../../common/budgets/types.ts';
import type { CRD_VERSION } from './crd/build-crds.ts';

export const GROUP = API_GROUP;
export const VERSION: typeof CRD_VERSION = 'v1alpha1';
export const FINALIZER = `${API_GROUP}/cleanup`;

export type Kind = 'LLMProvider' | 'LLMBudget';
export const PLURALS: Record<Kind, string> = { LLMProvider: 'llmproviders', LLMBudget: 'llmbudgets' };

export interface ObjectMeta {
  name: string;
  namespace: string;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  /** Typed as client-node's V1ObjectMeta has it; custom objects arrive as JSON, so a string at run time. */
  deletionTimestamp?: Date;
  finalizers?: string[];
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

/** A custom object exactly as the API server sent it (JSON, unvalidated beyond the CRD schema). */
export interface CustomObject {
  apiVersion: string;
  kind: Kind;
  metadata: ObjectMeta;
  spec: Record<string, unknown>;
  status?: Record<string, unknown>;
}

/** The work-queue key of an object: `Kind/namespace/name`. */
export function keyOf(kind: Kind, namespace: string, name: string): string {
  return `${kind}/${namespace}/${name}`;
}

export function parseKey(key: string): { kind: Kind; namespace: string; name: string } {
  const [kind, namespace, name] = key.split('/');
  if ((kind !== 'LLMProvider' && kind !== 'LLMBudget') || !namespace || !name)
    throw new Error(`bad key ${key}`);
  return { kind, namespace, name };
}

/** Only what the engine needs of metadata: keeps managedFields and the like out of the store. */
export function forStore(object: CustomObject): Record<string, unknown> {
  const { name, namespace, generation, uid } = object.metadata;
  return {
    apiVersion: object.apiVersion,
    kind: object.kind,
    metadata: { name, namespace, generation, uid },
    spec: object.spec,
  };
}
