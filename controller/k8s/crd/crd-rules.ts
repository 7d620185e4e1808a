/**
 * What the CRD schemas need beyond what zod's JSON Schema says: CEL rules for the zod refinements
 * that JSON Schema cannot express (each mirrors one in common/budgets/types.ts; the API-server test
 * feeds the same invalid objects to both), and Kubernetes list semantics. Keyed by schema path:
 * `spec.limits` is the array, `spec.limits[*]` each item.
 */
export interface CelRule {
  rule: string;
  message: string;
  /** Relative to the node the rule sits on, so the API server's message names the field. */
  fieldPath?: string;
  reason?: 'FieldValueInvalid' | 'FieldValueForbidden' | 'FieldValueRequired' | 'FieldValueDuplicate';
}

export interface SchemaExtras {
  rules?: CelRule[];
  /** Merged into the node (list types, bounds that keep CEL cost estimates finite). */
  set?: Record<string, unknown>;
}

const opt = (v: string, field: string) => `(has(${v}.${field}) ? ${v}.${field} : '')`;

/** Mirrors refineUniqueLimits: two limits on the same dimension, window and model are ambiguous. */
function uniqueLimits(what: string): CelRule {
  const same = ['dimension', 'window', 'model']
    .map((f) => (f === 'dimension' ? `a.dimension == b.dimension` : `${opt('a', f)} == ${opt('b', f)}`))
    .join(' && ');
  return {
    rule: `self.all(a, self.exists_one(b, ${same}))`,
    message: `${what} must not repeat the same dimension, window and model`,
    reason: 'FieldValueDuplicate',
  };
}

/** Mirrors limitSchema's superRefine. */
const windowPresence: CelRule = {
  rule: `self.dimension == 'concurrency' ? !has(self.window) : has(self.window)`,
  message: 'concurrency limits take no window; every other dimension needs one',
  fieldPath: '.window',
};

export const PROVIDER_EXTRAS: Record<string, SchemaExtras> = {
  'spec.baseURL': {
    set: { maxLength: 2048 },
    rules: [
      {
        rule: `self.startsWith('http://') || self.startsWith('https://')`,
        message: 'must be an http(s) URL',
      },
    ],
  },
  'spec.limits': { rules: [uniqueLimits('limits')] },
  'spec.limits[*]': { rules: [windowPresence] },
};

export const BUDGET_EXTRAS: Record<string, SchemaExtras> = {
  'spec.caps': { rules: [uniqueLimits('caps')] },
  'spec.caps[*]': { rules: [windowPresence] },
};

/** Both kinds' status conditions are a map keyed by type, as metav1.Condition lists are. */
export const STATUS_EXTRAS: Record<string, SchemaExtras> = {
  'status.conditions': { set: { 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['type'] } },
};
