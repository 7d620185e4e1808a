/**
 * LLMProvider and LLMBudget: the objects users write as YAML (and, on Kubernetes, as custom
 * resources). This is the one definition of their shape and validation; the CRD schemas are
 * generated from it, and every binary validates with it.
 */
import { z } from 'zod';
import { parseDuration } from '../duration.ts';

export const API_GROUP = 'tokenlease.io';
export const API_VERSION = `${API_GROUP}/v1alpha1`;

export const DIMENSIONS = ['requests', 'inputTokens', 'outputTokens', 'totalTokens', 'concurrency'] as const;
export type Dimension = (typeof DIMENSIONS)[number];

/** Refusal dialects (shared/docs/PROVIDERS.md): how a provider's refusals and headers are read. */
export const FLAVORS = [
  'openai',
  'azure',
  'anthropic',
  'glm',
  'deepseek',
  'gemini',
  'moonshot',
  'dashscope',
] as const;
export type Flavor = (typeof FLAVORS)[number];

export const APIS = ['openai', 'anthropic'] as const;
export type Api = (typeof APIS)[number];

export const FAILURE_MODES = ['closed', 'localShare', 'open'] as const;
export type FailureMode = (typeof FAILURE_MODES)[number];

export const PRIORITY_NAMES = { interactive: 100, standard: 50, batch: 0 } as const;
export type PriorityName = keyof typeof PRIORITY_NAMES;

export const MIN_WINDOW_MS = 1_000;
export const MAX_WINDOW_MS = 7 * 86_400_000;

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export const nameSchema = z
  .string()
  .min(1)
  .max(253)
  .regex(DNS_SUBDOMAIN, 'must be a lowercase DNS subdomain (a-z, 0-9, "-", ".")');
export const namespaceSchema = z.string().min(1).max(63).regex(DNS_LABEL, 'must be a lowercase DNS label');

/** Metadata key carrying a duration's bounds into JSON Schema (the CRD generator turns it into CEL). */
export const DURATION_META_KEY = 'x-tokenlease-duration';

/** A duration string such as `1m` or `250ms`, checked to lie in [min, max]. */
export function durationSchema(minMs: number, maxMs: number) {
  return z
    .string()
    .refine(
      (text) => {
        const ms = parseDuration(text);
        return ms !== undefined && ms >= minMs && ms <= maxMs;
      },
      { message: `must be a duration between ${minMs}ms and ${maxMs}ms, such as 1s, 1m, 5h, 1d or 1w` },
    )
    .meta({ [DURATION_META_KEY]: { minMs, maxMs } });
}

export const limitSchema = z
  .object({
    dimension: z.enum(DIMENSIONS),
    amount: z.number().int().positive().max(1e12),
    /** Omitted for concurrency, required otherwise. */
    window: durationSchema(MIN_WINDOW_MS, MAX_WINDOW_MS).optional(),
    /** Applies only to calls for this model; every model when omitted. */
    model: z.string().min(1).max(200).optional(),
  })
  .strict()
  .superRefine((limit, ctx) => {
    if (limit.dimension === 'concurrency' && limit.window !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['window'], message: 'concurrency limits take no window' });
    }
    if (limit.dimension !== 'concurrency' && limit.window === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['window'],
        message: `a ${limit.dimension} limit needs a window`,
      });
    }
  });
export type Limit = z.infer<typeof limitSchema>;

/** Two limits on the same dimension, window and model would be ambiguous. */
function refineUniqueLimits(limits: Limit[], ctx: z.RefinementCtx, path: string) {
  const seen = new Map<string, number>();
  limits.forEach((limit, index) => {
    const key = `${limit.dimension}|${limit.window ?? ''}|${limit.model ?? ''}`;
    const first = seen.get(key);
    if (first !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: [path, index],
        message: `duplicates ${path}[${first}] (same dimension, window and model)`,
      });
    } else seen.set(key, index);
  });
}

export const objectRefSchema = z.object({ name: nameSchema, namespace: namespaceSchema.optional() }).strict();
export type ObjectRef = z.infer<typeof objectRefSchema>;

export const metadataSchema = z
  .object({
    name: nameSchema,
    namespace: namespaceSchema.default('default'),
    generation: z.number().int().optional(),
    uid: z.string().optional(),
    resourceVersion: z.string().optional(),
    labels: z.record(z.string(), z.string()).optional(),
    annotations: z.record(z.string(), z.string()).optional(),
  })
  .loose();

const credentialsSchema = z
  .object({
    /** On Kubernetes: the Secret holding the key, mounted into the sidecar only. */
    secretRef: z
      .object({ name: nameSchema, key: z.string().min(1).max(253) })
      .strict()
      .optional(),
    /** Outside Kubernetes: a file holding the key. */
    file: z.string().min(1).optional(),
    /** Outside Kubernetes: an environment variable of the sidecar holding the key. */
    env: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name')
      .optional(),
  })
  .strict();

export const circuitBreakerSchema = z
  .object({
    /** false: calls always go to this provider, however it fails. */
    enabled: z.boolean().default(true),
    /** Failures in a row that open the breaker. */
    consecutiveFailures: z.number().int().min(1).max(1000).default(5),
    /** Share of failed calls over the window that opens the breaker. */
    failureRate: z.number().gt(0).max(1).default(0.5),
    /** The span the failure rate is measured over. */
    window: durationSchema(1_000, 3_600_000).default('30s'),
    /** Calls the window must hold before its failure rate counts. */
    minCalls: z.number().int().min(1).max(1_000_000).default(20),
    /** How long the breaker stays open before one call probes the provider. */
    coolDown: durationSchema(100, 3_600_000).default('30s'),
  })
  .strict();
export type CircuitBreakerSpec = z.infer<typeof circuitBreakerSchema>;

export const providerSpecSchema = z
  .object({
    api: z.enum(APIS),
    /** Defaults to the api's own dialect. */
    flavor: z.enum(FLAVORS).optional(),
    baseURL: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }),
    credentials: credentialsSchema.optional(),
    /** Models this account serves; any model when empty. */
    models: z.array(z.string().min(1).max(200)).max(200).optional(),
    limits: z.array(limitSchema).max(64).default([]),
    /** Output allowance reserved when a request names no max_tokens. */
    defaultMaxOutputTokens: z.number().int().positive().max(10_000_000).default(4096),
    /** How long a lease holds its concurrency slot without a heartbeat or settle. */
    leaseTimeout: durationSchema(1_000, 3_600_000).default('2m'),
    /**
     * Extra time counted on each side of a window so that the provider, which sees a call a little
     * after we grant it, never counts more in its window than we did. Defaults to 1 % of the window,
     * between 20 ms and 1 s.
     */
    windowMargin: durationSchema(0, 60_000).optional(),
    failureMode: z.enum(FAILURE_MODES).default('closed'),
    /**
     * Namespaces whose LLMBudgets may reference this provider (the Gateway API ReferenceGrant
     * idea, kept on the referenced object): its own namespace always may; `*` allows every one.
     */
    allowedNamespaces: z
      .array(
        z
          .string()
          .max(63)
          .regex(/^(\*|[a-z0-9]([-a-z0-9]*[a-z0-9])?)$/, 'must be a namespace name or *'),
      )
      .max(256)
      .optional(),
    /**
     * Learning the account's real limits from refusals and rate-limit headers: a refusal lowers the
     * effective limit to where the provider refused; after probeInterval without a refusal it rises
     * one step towards the declared limit, and a probe refused soon after waits twice as long.
     */
    adaptation: z
      .object({
        enabled: z.boolean().default(true),
        probeInterval: durationSchema(1_000, 3_600_000).default('30s'),
        maxProbeInterval: durationSchema(1_000, 86_400_000).default('10m'),
      })
      .strict()
      .default({ enabled: true, probeInterval: '30s', maxProbeInterval: '10m' }),
    /**
     * Each sidecar's circuit breaker for this provider: it stops sending calls after
     * consecutiveFailures failures in a row, or when at least failureRate of the last window's
     * calls (minCalls or more) failed; after coolDown one call probes, and a success closes it.
     * Only transport errors, 5xx answers and overloads count as failures. Defaults apply when omitted.
     */
    circuitBreaker: circuitBreakerSchema.optional(),
  })
  .strict()
  .superRefine((spec, ctx) => refineUniqueLimits(spec.limits, ctx, 'limits'));
export type ProviderSpec = z.infer<typeof providerSpecSchema>;

export const prioritySchema = z.union([
  z.enum(['interactive', 'standard', 'batch']),
  z.number().int().min(0).max(1000),
]);
export type Priority = z.infer<typeof prioritySchema>;

export const fallbackSchema = z
  .object({
    providerRef: objectRefSchema,
    /** The model to ask the fallback provider for; the original model when omitted. */
    model: z.string().min(1).max(200).optional(),
    /**
     * Move to this provider when the one before cannot grant within this long (at once when
     * omitted); a closed, overloaded, failing or circuit-broken provider is left at once anyway.
     */
    after: durationSchema(0, 600_000).optional(),
  })
  .strict();

export const workloadsSchema = z
  .object({
    serviceAccounts: z.array(nameSchema).max(100).optional(),
    podSelector: z
      .object({ matchLabels: z.record(z.string(), z.string()) })
      .strict()
      .optional(),
  })
  .strict();

export const CACHE_REQUESTS = ['deterministic', 'all'] as const;
export type CacheRequests = (typeof CACHE_REQUESTS)[number];

/** One model's overrides of the budget's response-cache settings. */
export const cacheModelSchema = z
  .object({
    model: z.string().min(1).max(200),
    enabled: z.boolean().optional(),
    ttl: durationSchema(1_000, 7 * 86_400_000).optional(),
    maxEntryBytes: z
      .number()
      .int()
      .positive()
      .max(64 * 1024 * 1024)
      .optional(),
    requests: z.enum(CACHE_REQUESTS).optional(),
  })
  .strict();

/**
 * The shared response cache (sidecar/cache): identical requests answered from a cluster-wide store
 * without a lease or a provider call. Off unless enabled.
 */
export const cacheSchema = z
  .object({
    enabled: z.boolean().default(false),
    /** How long an answer is served after it was stored. */
    ttl: durationSchema(1_000, 7 * 86_400_000).default('1h'),
    /** Larger answers (a whole stream counts) are passed on but not stored. */
    maxEntryBytes: z
      .number()
      .int()
      .positive()
      .max(64 * 1024 * 1024)
      .default(1024 * 1024),
    /** Bytes the scope may hold in the store; the entries closest to expiry are evicted first. */
    maxScopeBytes: z
      .number()
      .int()
      .positive()
      .max(64 * 1024 * 1024 * 1024)
      .default(256 * 1024 * 1024),
    /**
     * Which requests are cached: those deterministic by their parameters (temperature 0, top_p 0,
     * embeddings), or all of them.
     */
    requests: z.enum(CACHE_REQUESTS).default('deterministic'),
    /** Whether an app may send `x-tokenlease-cache: on|off|refresh` to opt a request in or out. */
    allowRequestHeader: z.boolean().default(true),
    /**
     * Budgets of the same namespace naming the same scope read each other's answers; a budget's
     * answers are its own when omitted.
     */
    sharedScope: nameSchema.max(63).optional(),
    /** How long an identical request waits for one already in flight before calling on its own. */
    coalesceWait: durationSchema(0, 600_000).default('30s'),
    /** Per-model overrides. */
    models: z.array(cacheModelSchema).max(200).optional(),
  })
  .strict();
export type CacheSpec = z.infer<typeof cacheSchema>;

export const budgetSpecSchema = z
  .object({
    providerRef: objectRefSchema,
    workloads: workloadsSchema.optional(),
    /** Share of contended capacity relative to other budgets of the provider. */
    weight: z.number().positive().max(1000).default(1),
    /** Fraction of each provider limit this budget can always have when it asks (0 to 1). */
    guaranteedShare: z.number().min(0).max(1).optional(),
    priority: prioritySchema.default('standard'),
    /** A waiting request older than this goes before newer ones of higher priority in the budget. */
    priorityAging: durationSchema(0, 600_000).default('10s'),
    caps: z.array(limitSchema).max(64).default([]),
    fallbacks: z.array(fallbackSchema).max(8).optional(),
    failureMode: z.enum(FAILURE_MODES).optional(),
    /** Response cache settings for this budget's calls. */
    cache: cacheSchema.optional(),
  })
  .strict()
  .superRefine((spec, ctx) => refineUniqueLimits(spec.caps, ctx, 'caps'));
export type BudgetSpec = z.infer<typeof budgetSpecSchema>;

export const providerSchema = z
  .object({
    apiVersion: z.literal(API_VERSION),
    kind: z.literal('LLMProvider'),
    metadata: metadataSchema,
    spec: providerSpecSchema,
    status: z.unknown().optional(),
  })
  .strict();
export type LLMProvider = z.infer<typeof providerSchema>;

export const budgetSchema = z
  .object({
    apiVersion: z.literal(API_VERSION),
    kind: z.literal('LLMBudget'),
    metadata: metadataSchema,
    spec: budgetSpecSchema,
    status: z.unknown().optional(),
  })
  .strict();
export type LLMBudget = z.infer<typeof budgetSchema>;

/** `namespace/name`, the id used on the wire and in store keys. */
export function objectId(
  meta: { namespace?: string | undefined; name: string },
  defaultNamespace = 'default',
): string {
  return `${meta.namespace ?? defaultNamespace}/${meta.name}`;
}

export function priorityValue(priority: Priority): number {
  return typeof priority === 'number' ? priority : PRIORITY_NAMES[priority];
}

export function defaultFlavor(api: Api): Flavor {
  return api === 'anthropic' ? 'anthropic' : 'openai';
}
