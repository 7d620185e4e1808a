// LLMProvider / LLMBudget objects for the CRD tests: valid ones (PRODUCT.md's illustration) and
// invalid ones, each with the field the refusal must name. Shared by the unit test of the
// generated schema and the API-server test, so zod and the CRD are held to the same objects.
import { API_VERSION } from '../../common/budgets/types.ts';

export type Obj = Record<string, unknown>;

export function provider(name: string, spec: Obj, namespace = 'llm-platform'): Obj {
  return { apiVersion: API_VERSION, kind: 'LLMProvider', metadata: { name, namespace }, spec };
}

export function budget(name: string, spec: Obj, namespace = 'search'): Obj {
  return { apiVersion: API_VERSION, kind: 'LLMBudget', metadata: { name, namespace }, spec };
}

export const GLM_SPEC = {
  api: 'openai',
  flavor: 'glm',
  baseURL: 'https://open.bigmodel.cn/api/coding/paas/v4',
  credentials: { secretRef: { name: 'zhipu-key', key: 'apiKey' } },
  limits: [
    { dimension: 'concurrency', amount: 5 },
    { dimension: 'requests', amount: 600, window: '5h' },
    { dimension: 'totalTokens', amount: 1000000, window: '1m', model: 'glm-4.6' },
  ],
  failureMode: 'localShare',
  allowedNamespaces: ['search'],
};

export const SEARCH_BUDGET_SPEC = {
  providerRef: { name: 'zhipu-coding-pro', namespace: 'llm-platform' },
  workloads: { serviceAccounts: ['search-api', 'search-indexer'] },
  weight: 2,
  priority: 'interactive',
  caps: [{ dimension: 'totalTokens', amount: 20000000, window: '1d' }],
  fallbacks: [
    { providerRef: { name: 'deepseek', namespace: 'llm-platform' }, model: 'deepseek-chat', after: '2s' },
  ],
};

export const VALID_OBJECTS: Obj[] = [
  provider('zhipu-coding-pro', GLM_SPEC),
  provider('deepseek', {
    api: 'openai',
    flavor: 'deepseek',
    baseURL: 'https://api.deepseek.com',
    limits: [
      { dimension: 'requests', amount: 60, window: '1m30s' },
      { dimension: 'concurrency', amount: 10 },
    ],
    leaseTimeout: '30s',
    windowMargin: '0',
  }),
  provider('anthropic', {
    api: 'anthropic',
    baseURL: 'http://sim-provider.test:8080',
    limits: [
      { dimension: 'outputTokens', amount: 8000, window: '1w' },
      { dimension: 'inputTokens', amount: 1, window: '1s' },
    ],
  }),
  budget('search', SEARCH_BUDGET_SPEC),
  budget('batch', {
    providerRef: { name: 'zhipu-coding-pro' },
    priority: 7,
    guaranteedShare: 0.25,
    weight: 0.5,
  }),
];

export interface InvalidCase {
  what: string;
  object: Obj;
  /** The field path the API server's message must name. */
  field: string;
}

const withLimits = (limits: Obj[]) => provider('bad', { ...GLM_SPEC, limits });
const withBudget = (spec: Obj) => budget('bad', { ...SEARCH_BUDGET_SPEC, ...spec });

export const INVALID_CASES: InvalidCase[] = [
  {
    what: 'a window that is not a duration',
    object: withLimits([{ dimension: 'requests', amount: 1, window: '5x' }]),
    field: 'spec.limits[0].window',
  },
  {
    what: 'a window shorter than 1s',
    object: withLimits([{ dimension: 'requests', amount: 1, window: '500ms' }]),
    field: 'spec.limits[0].window',
  },
  {
    what: 'a window longer than 1w',
    object: withLimits([{ dimension: 'requests', amount: 1, window: '8d' }]),
    field: 'spec.limits[0].window',
  },
  {
    what: 'a concurrency limit with a window',
    object: withLimits([{ dimension: 'concurrency', amount: 1, window: '1m' }]),
    field: 'spec.limits[0].window',
  },
  {
    what: 'a rate limit without a window',
    object: withLimits([{ dimension: 'requests', amount: 1 }]),
    field: 'spec.limits[0].window',
  },
  {
    what: 'two limits on the same dimension, window and model',
    object: withLimits([
      { dimension: 'requests', amount: 1, window: '1m' },
      { dimension: 'requests', amount: 2, window: '1m' },
    ]),
    field: 'spec.limits',
  },
  {
    what: 'an unknown dimension',
    object: withLimits([{ dimension: 'tokens', amount: 1, window: '1m' }]),
    field: 'spec.limits[0].dimension',
  },
  {
    what: 'a zero amount',
    object: withLimits([{ dimension: 'requests', amount: 0, window: '1m' }]),
    field: 'spec.limits[0].amount',
  },
  { what: 'an unknown api', object: provider('bad', { ...GLM_SPEC, api: 'grpc' }), field: 'spec.api' },
  {
    what: 'a baseURL that is not http(s)',
    object: provider('bad', { ...GLM_SPEC, baseURL: 'ftp://example.com' }),
    field: 'spec.baseURL',
  },
  {
    what: 'a lease timeout over 1h',
    object: provider('bad', { ...GLM_SPEC, leaseTimeout: '2h' }),
    field: 'spec.leaseTimeout',
  },
  {
    what: 'an allowed namespace that is no namespace',
    object: provider('bad', { ...GLM_SPEC, allowedNamespaces: ['Search Team'] }),
    field: 'spec.allowedNamespaces[0]',
  },
  { what: 'a zero weight', object: withBudget({ weight: 0 }), field: 'spec.weight' },
  {
    what: 'a guaranteed share above 1',
    object: withBudget({ guaranteedShare: 1.5 }),
    field: 'spec.guaranteedShare',
  },
  {
    what: 'a provider reference that is no name',
    object: withBudget({ providerRef: { name: 'Zhipu_Pro' } }),
    field: 'spec.providerRef.name',
  },
  { what: 'an unknown priority name', object: withBudget({ priority: 'urgent' }), field: 'spec.priority' },
  { what: 'a priority above 1000', object: withBudget({ priority: 5000 }), field: 'spec.priority' },
  {
    what: 'duplicate caps',
    object: withBudget({
      caps: [
        { dimension: 'totalTokens', amount: 1, window: '1d', model: 'm' },
        { dimension: 'totalTokens', amount: 2, window: '1d', model: 'm' },
      ],
    }),
    field: 'spec.caps',
  },
  {
    what: 'a fallback delay over 10m',
    object: withBudget({ fallbacks: [{ providerRef: { name: 'deepseek' }, after: '11m' }] }),
    field: 'spec.fallbacks[0].after',
  },
  { what: 'a budget without a provider', object: budget('bad', { weight: 1 }), field: 'spec.providerRef' },
];
