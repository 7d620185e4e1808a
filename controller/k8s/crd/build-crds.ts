/**
 * Builds the LLMProvider and LLMBudget CustomResourceDefinitions from the zod schemas: zod's
 * OpenAPI 3.0 JSON Schema, turned into a Kubernetes structural schema, plus the CEL rules of
 * crd-rules.ts. scripts/gen-crds.ts writes the result to deploy/crds/.
 */
import { z } from 'zod';
import {
  API_GROUP,
  DURATION_META_KEY,
  budgetSpecSchema,
  providerSpecSchema,
} from '../../../common/budgets/types.ts';
import {
  BUDGET_EXTRAS,
  PROVIDER_EXTRAS,
  STATUS_EXTRAS,
  type CelRule,
  type SchemaExtras,
} from './crd-rules.ts';
import { budgetStatusSchema, providerStatusSchema } from './status-types.ts';

export const CRD_VERSION = 'v1alpha1';

type Schema = Record<string, unknown>;

/** Keywords a structural schema may carry; anything else zod emits stops the generation. */
const KEPT = new Set([
  'type',
  'properties',
  'items',
  'required',
  'enum',
  'default',
  'minimum',
  'maximum',
  'exclusiveMinimum',
  'exclusiveMaximum',
  'minLength',
  'maxLength',
  'pattern',
  'format',
  'minItems',
  'maxItems',
  'description',
  'nullable',
]);

/** Longest duration string accepted; bounds the cost the API server estimates for the CEL rule. */
const DURATION_MAX_LENGTH = 32;

/**
 * CEL for a duration in [minMs, maxMs], as common/duration.ts parses it. CEL's duration() takes Go
 * durations (ms, s, m, h and compounds such as 1m30s); days and weeks are computed by hand, for a
 * single `<number>d` or `<number>w` (compounds with days, such as 1d12h, are written as 36h).
 */
export function durationRule(minMs: number, maxMs: number): CelRule {
  const go = `self.matches('^([0-9]+(\\\\.[0-9]+)?(ms|s|m|h))+$') && duration(self) >= duration('${minMs}ms') && duration(self) <= duration('${maxMs}ms')`;
  const days = `double(self.substring(0, size(self) - 1)) * (self.endsWith('w') ? 604800000.0 : 86400000.0)`;
  const dw = `self.matches('^[0-9]+(\\\\.[0-9]+)?[dw]$') && ${days} >= ${minMs}.0 && ${days} <= ${maxMs}.0`;
  const zero = minMs === 0 ? `self == '0' || ` : '';
  return {
    rule: `${zero}(${go}) || (${dw})`,
    message: `must be a duration from ${minMs}ms to ${maxMs}ms, such as 1s, 1m, 5h, 1d or 1w`,
  };
}

/** `priority: interactive | 100`: anyOf one string and one integer branch becomes int-or-string + CEL. */
function intOrString(anyOf: Schema[], path: string): { node: Schema; rule: CelRule } {
  const text = anyOf.find((b) => b.type === 'string');
  const int = anyOf.find((b) => b.type === 'integer');
  if (anyOf.length !== 2 || !text || !int)
    throw new Error(`${path}: only int-or-string unions are supported`);
  const textCheck = Array.isArray(text.enum)
    ? `self in ${JSON.stringify(text.enum).replaceAll('"', "'")}`
    : 'true';
  const bounds = [
    typeof int.minimum === 'number' ? `self >= ${int.minimum}` : '',
    typeof int.maximum === 'number' ? `self <= ${int.maximum}` : '',
  ].filter(Boolean);
  const intCheck = bounds.length ? bounds.join(' && ') : 'true';
  const names = Array.isArray(text.enum) ? `one of ${text.enum.join(', ')} or ` : '';
  return {
    // The one anyOf a structural schema allows: types only, the bounds go in the CEL rule.
    node: { 'x-kubernetes-int-or-string': true, anyOf: [{ type: 'integer' }, { type: 'string' }] },
    rule: {
      rule: `type(self) == int ? (${intCheck}) : (${textCheck})`,
      message: `must be ${names}an integer from ${String(int.minimum)} to ${String(int.maximum)}`,
    },
  };
}

/** One node of zod's JSON Schema as a structural schema node, with its extras applied. */
export function toStructural(input: Schema, path: string, extras: Record<string, SchemaExtras>): Schema {
  const out: Schema = {};
  const rules: CelRule[] = [];
  for (const [key, value] of Object.entries(input)) {
    if (key === '$schema') continue;
    if (key === 'additionalProperties') {
      // Closed objects are the API server's default (unknown fields are pruned, or refused with
      // field validation Strict); a structural schema may not say so next to `properties`.
      if (value === false) continue;
      out.additionalProperties = toStructural(value as Schema, `${path}{*}`, extras);
    } else if (key === DURATION_META_KEY) {
      const { minMs, maxMs } = value as { minMs: number; maxMs: number };
      out.maxLength = DURATION_MAX_LENGTH;
      rules.push(durationRule(minMs, maxMs));
    } else if (key === 'anyOf') {
      const union = intOrString(value as Schema[], path);
      Object.assign(out, union.node);
      rules.push(union.rule);
    } else if (key === 'properties') {
      out.properties = Object.fromEntries(
        Object.entries(value as Record<string, Schema>).map(([name, child]) => [
          name,
          toStructural(child, `${path}.${name}`, extras),
        ]),
      );
    } else if (key === 'items') {
      out.items = toStructural(value as Schema, `${path}[*]`, extras);
    } else if (KEPT.has(key)) {
      out[key] = value;
    } else {
      throw new Error(`${path}: JSON Schema keyword ${key} has no structural-schema equivalent`);
    }
  }
  // zod spells date-time out as a long regex too; the format alone is what Kubernetes checks.
  if (out.format === 'date-time') delete out.pattern;
  const extra = extras[path];
  if (extra?.set) Object.assign(out, extra.set);
  rules.push(...(extra?.rules ?? []));
  if (rules.length > 0) out['x-kubernetes-validations'] = rules;
  return out;
}

function jsonSchema(schema: z.ZodType): Schema {
  // io: 'input' keeps defaulted fields optional and emits their defaults, which the API server applies.
  return z.toJSONSchema(schema, { io: 'input', target: 'openapi-3.0' }) as Schema;
}

interface KindInfo {
  kind: 'LLMProvider' | 'LLMBudget';
  plural: string;
  shortNames: string[];
  spec: z.ZodType;
  status: z.ZodType;
  extras: Record<string, SchemaExtras>;
  columns: Array<{ name: string; type: string; jsonPath: string; priority?: number; description?: string }>;
}

const READY = { name: 'Ready', type: 'string', jsonPath: '.status.conditions[?(@.type=="Ready")].status' };
const USAGE_COLUMNS = [
  {
    name: 'Use',
    type: 'string',
    jsonPath: '.status.summary.use',
    description: 'the busiest limit, as a share of its effective limit',
  },
  { name: 'In-Flight', type: 'integer', jsonPath: '.status.inFlight', description: 'leases held now' },
  {
    name: 'Refusals',
    type: 'integer',
    jsonPath: '.status.upstreamRefusals.total',
    description: 'upstream refusals counted',
  },
];
const AGE = { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' };

export const KINDS: KindInfo[] = [
  {
    kind: 'LLMProvider',
    plural: 'llmproviders',
    shortNames: ['llmp'],
    spec: providerSpecSchema,
    status: providerStatusSchema,
    extras: PROVIDER_EXTRAS,
    columns: [
      { name: 'API', type: 'string', jsonPath: '.spec.api' },
      {
        name: 'Limits',
        type: 'string',
        jsonPath: '.status.summary.limits',
        description: 'the declared limits',
      },
      ...USAGE_COLUMNS,
      READY,
      AGE,
      { name: 'URL', type: 'string', jsonPath: '.spec.baseURL', priority: 1 },
    ],
  },
  {
    kind: 'LLMBudget',
    plural: 'llmbudgets',
    shortNames: ['llmb'],
    spec: budgetSpecSchema,
    status: budgetStatusSchema,
    extras: BUDGET_EXTRAS,
    columns: [
      { name: 'Provider', type: 'string', jsonPath: '.status.provider' },
      { name: 'Weight', type: 'number', jsonPath: '.spec.weight' },
      {
        name: 'Limits',
        type: 'string',
        jsonPath: '.status.summary.limits',
        description: 'the caps and provider limits that apply',
      },
      ...USAGE_COLUMNS,
      READY,
      AGE,
      { name: 'Priority', type: 'string', jsonPath: '.spec.priority', priority: 1 },
    ],
  },
];

/** The CustomResourceDefinition of one kind, as a plain object ready for YAML or the API. */
export function buildCrd(info: KindInfo): Schema {
  const extras = { ...info.extras, ...STATUS_EXTRAS };
  const spec = toStructural(jsonSchema(info.spec), 'spec', extras);
  const status = toStructural(jsonSchema(info.status), 'status', extras);
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: {
      name: `${info.plural}.${API_GROUP}`,
      labels: { 'app.kubernetes.io/part-of': 'tokenlease' },
    },
    spec: {
      group: API_GROUP,
      scope: 'Namespaced',
      names: {
        kind: info.kind,
        listKind: `${info.kind}List`,
        plural: info.plural,
        singular: info.kind.toLowerCase(),
        shortNames: info.shortNames,
        categories: ['tokenlease'],
      },
      versions: [
        {
          name: CRD_VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: info.columns,
          schema: {
            openAPIV3Schema: {
              type: 'object',
              required: ['spec'],
              properties: {
                apiVersion: { type: 'string' },
                kind: { type: 'string' },
                metadata: { type: 'object' },
                spec,
                status,
              },
            },
          },
        },
      ],
    },
  };
}

export function buildCrds(): Schema[] {
  return KINDS.map(buildCrd);
}
