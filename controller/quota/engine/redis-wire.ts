/**
 * How the Redis lease store hands requests to its script (lease-store.lua request_of): a request
 * as one array, so that neither side spends time on field names, with each limit as the id of
 * its definition (every field but `need`) and its need. The definitions travel along until Redis
 * has them, and the script keeps them in Redis: a lease record carries [id, need] per limit rather
 * than the whole limit.
 */
import { createHash } from 'node:crypto';
import type { LimitPlan, StoredRequest } from './store.ts';

/** Limit definitions by id, as JSON: sent along with the requests that name them. */
export type Definitions = Record<string, string>;

/**
 * T when the fields named in Sent are all of T's, else never: a parameter of this type stops
 * compiling when T gains a field the function does not send.
 */
type AllSent<T, Sent extends keyof T> = [Exclude<keyof T, Sent>] extends [never] ? T : never;

type SentRequest = AllSent<
  StoredRequest,
  | 'id'
  | 'budget'
  | 'priority'
  | 'weight'
  | 'cost'
  | 'agingMs'
  | 'adaptation'
  | 'leaseTimeoutMs'
  | 'maxWaitMs'
  | 'reserved'
  | 'limits'
>;

/**
 * A request as the script takes it; adds the definitions its limits name to `definitions`, except
 * those in `stored` (ids Redis already holds: the script finds them in its definitions hash).
 */
export function wireRequest(
  request: SentRequest,
  definitions: Definitions,
  stored?: ReadonlySet<string>,
): unknown[] {
  const { reserved, adaptation } = request;
  const wire: unknown[] = [
    request.id,
    request.budget,
    request.priority,
    request.weight,
    request.cost,
    request.agingMs,
    adaptation ? adaptation.probeMs : -1,
    adaptation ? adaptation.maxProbeMs : -1,
    request.leaseTimeoutMs,
    request.maxWaitMs,
    reserved.requests,
    reserved.inputTokens,
    reserved.outputTokens,
    reserved.totalTokens,
  ];
  for (const plan of request.limits) {
    const known = definitionOf(plan);
    if (!stored?.has(known.id)) definitions[known.id] = known.json;
    wire.push(known.id, plan.need);
  }
  return wire;
}

export interface Definition {
  id: string;
  json: string;
}

interface KnownDefinition extends Definition {
  /** The plan it was made from: a plan with the same key but other fields (an edit) makes another. */
  plan: DefinedPlan;
}

/** Definitions met so far, by limit key (a provider has a handful; cleared if it ever grows). */
const knownDefinitions = new Map<string, KnownDefinition>();
const MAX_KNOWN_DEFINITIONS = 10_000;

type DefinedPlan = AllSent<
  LimitPlan,
  | 'key'
  | 'dimension'
  | 'amount'
  | 'windowMs'
  | 'bucketMs'
  | 'marginMs'
  | 'label'
  | 'scope'
  | 'model'
  | 'adaptive'
  | 'need'
>;

/** Whether two plans have the same definition: every field but `need` equal. */
function sameDefinition(a: DefinedPlan, b: DefinedPlan): boolean {
  return (
    a.key === b.key &&
    a.dimension === b.dimension &&
    a.amount === b.amount &&
    a.windowMs === b.windowMs &&
    a.bucketMs === b.bucketMs &&
    a.marginMs === b.marginMs &&
    a.label === b.label &&
    a.scope === b.scope &&
    a.model === b.model &&
    a.adaptive === b.adaptive
  );
}

/**
 * A limit's definition: every field but `need` (which travels with each request). This runs per
 * limit per acquire, so a known one is found by key and compared field by field: nothing is
 * allocated (a signature string per limit was a tenth of the quota service's allocation).
 */
export function definitionOf(plan: DefinedPlan): Definition {
  const known = knownDefinitions.get(plan.key);
  if (known && sameDefinition(known.plan, plan)) return known;
  const { key, dimension, amount, windowMs, bucketMs, marginMs, label, scope, model, adaptive } = plan;
  const json = JSON.stringify({
    key,
    dimension,
    amount,
    windowMs,
    bucketMs,
    marginMs,
    label,
    scope,
    model,
    adaptive,
  });
  // Content-addressed: every replica derives the same id for the same definition.
  const id = createHash('sha256').update(json).digest('base64url').slice(0, 22);
  if (knownDefinitions.size >= MAX_KNOWN_DEFINITIONS) knownDefinitions.clear();
  knownDefinitions.set(key, { id, json, plan: { ...plan, need: 0 } });
  return { id, json };
}
