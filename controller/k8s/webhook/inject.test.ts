import type { V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { buildBudgetSet } from '../../../common/budgets/load-budgets.ts';
import { budgetSchema, providerSchema } from '../../../common/budgets/types.ts';
import { injectionPatch, injectSidecar, SIDECAR_NODE_OPTIONS } from './inject.ts';

const config = {
  image: 'img',
  port: 8089,
  quotaAddress: 'q:7070',
  audience: 'tokenlease',
  tokenExpirationSeconds: 3600,
};
const provider = (name: string, secret: string) =>
  providerSchema.parse({
    apiVersion: 'tokenlease.io/v1alpha1',
    kind: 'LLMProvider',
    metadata: { name, namespace: 'team' },
    spec: {
      api: 'openai',
      baseURL: `https://${name}.example`,
      credentials: { secretRef: { name: secret, key: 'apiKey' } },
    },
  });
const budget = (name: string, accounts?: string[]) =>
  budgetSchema.parse({
    apiVersion: 'tokenlease.io/v1alpha1',
    kind: 'LLMBudget',
    metadata: { name, namespace: 'team' },
    spec: {
      providerRef: { name: 'openai' },
      fallbacks: [{ providerRef: { name: 'deepseek' } }],
      ...(accounts ? { workloads: { serviceAccounts: accounts } } : {}),
    },
  });
const budgets = buildBudgetSet([
  provider('openai', 'openai-key'),
  provider('deepseek', 'deepseek-key'),
  budget('search', ['api']),
  budget('batch', ['worker']),
]);
const pod = (annotations: Record<string, string>, serviceAccountName = 'api'): V1Pod => ({
  metadata: { name: 'p', annotations },
  spec: {
    serviceAccountName,
    containers: [
      { name: 'app', image: 'app' },
      { name: 'helper', image: 'h' },
    ],
  },
});

describe('injectSidecar', () => {
  it('mounts every provider key of the budget (primary and fallbacks) into the sidecar only', () => {
    const result = injectSidecar(pod({ 'tokenlease.io/inject': 'true' }), 'team', budgets, config);
    if (result.kind !== 'inject') throw new Error(result.kind);
    expect(result.budget).toBe('team/search');
    const keys = result.pod.spec?.volumes?.find((v) => v.name === 'tokenlease-keys');
    expect(keys?.projected?.sources?.map((s) => s.secret?.name)).toEqual(['openai-key', 'deepseek-key']);
    for (const app of result.pod.spec!.containers) {
      expect(app.volumeMounts ?? []).toEqual([]);
      expect(app.env?.map((e) => e.name)).toEqual(['OPENAI_BASE_URL', 'ANTHROPIC_BASE_URL']);
    }
    // The sidecar runs with the V8 flags bench:memory measures it with (they cannot be set later).
    const sidecar = result.pod.spec?.initContainers?.find((c) => c.name === 'tokenlease-sidecar');
    expect(sidecar?.args).toEqual(['sidecar']);
    expect(sidecar?.env?.find((e) => e.name === 'NODE_OPTIONS')?.value).toBe(SIDECAR_NODE_OPTIONS);
    expect(SIDECAR_NODE_OPTIONS).toContain('--max-semi-space-size=2');
    const yaml = result.pod.metadata?.annotations?.['tokenlease.io/budgets'];
    expect(yaml).toContain('name: deepseek');
    expect(yaml).toContain('name: search');
    expect(
      injectionPatch(pod({}), result.pod).map(
        (op) => (op as { op: string; path: string }).op + ' ' + (op as { path: string }).path,
      ),
    ).toEqual([
      'replace /metadata/annotations',
      'add /spec/initContainers',
      'replace /spec/containers',
      'add /spec/volumes',
    ]);
  });

  it('picks the budget named by annotation, and refuses one that does not select the ServiceAccount', () => {
    const named = injectSidecar(
      pod({ 'tokenlease.io/inject': 'true', 'tokenlease.io/budget': 'batch' }, 'worker'),
      'team',
      budgets,
      config,
    );
    expect(named.kind === 'inject' && named.budget).toBe('team/batch');
    const wrong = injectSidecar(
      pod({ 'tokenlease.io/inject': 'true', 'tokenlease.io/budget': 'batch' }, 'api'),
      'team',
      budgets,
      config,
    );
    expect(wrong).toEqual({
      kind: 'deny',
      message: 'tokenlease.io/budget: LLMBudget team/batch does not select ServiceAccount api',
    });
  });

  it('skips pods without the annotation and pods already injected; refuses ambiguity', () => {
    expect(injectSidecar(pod({}), 'team', budgets, config).kind).toBe('skip');
    expect(injectSidecar(pod({ 'tokenlease.io/inject': 'false' }), 'team', budgets, config).kind).toBe(
      'skip',
    );
    expect(
      injectSidecar(
        pod({ 'tokenlease.io/inject': 'true', 'tokenlease.io/injected': 'team/search' }),
        'team',
        budgets,
        config,
      ).kind,
    ).toBe('skip');
    const open = buildBudgetSet([
      provider('openai', 'k'),
      provider('deepseek', 'd'),
      budget('a'),
      budget('b'),
    ]);
    const ambiguous = injectSidecar(pod({ 'tokenlease.io/inject': 'true' }), 'team', open, config);
    expect(ambiguous.kind === 'deny' && ambiguous.message).toMatch(
      /several LLMBudgets select ServiceAccount api \(a, b\)/,
    );
  });
});
