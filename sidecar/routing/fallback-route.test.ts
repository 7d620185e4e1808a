import { describe, expect, it } from 'vitest';
import { buildBudgetSet, parseObject } from '../../common/budgets/load-budgets.ts';
import { Router } from '../proxy/router.ts';
import { FallbackRoutes } from './fallback-route.ts';

function provider(name: string, spec: Record<string, unknown>) {
  return parseObject(
    { apiVersion: 'tokenlease.io/v1alpha1', kind: 'LLMProvider', metadata: { name, namespace: 'llm' }, spec },
    name,
  );
}

function budget(fallbacks: unknown[]) {
  return parseObject(
    {
      apiVersion: 'tokenlease.io/v1alpha1',
      kind: 'LLMBudget',
      metadata: { name: 'search', namespace: 'team' },
      spec: { providerRef: { name: 'glm', namespace: 'llm' }, fallbacks },
    },
    'budget',
  );
}

const providers = [
  provider('glm', {
    api: 'openai',
    flavor: 'glm',
    baseURL: 'https://glm.example/v4',
    models: ['glm-4.6', 'glm-4.5-air'],
  }),
  provider('deepseek', {
    api: 'openai',
    flavor: 'deepseek',
    baseURL: 'https://ds.example',
    models: ['deepseek-chat'],
  }),
  provider('any', { api: 'openai', baseURL: 'https://any.example/v1' }),
  provider('claude', { api: 'anthropic', baseURL: 'https://claude.example' }),
];

function routesOf(fallbacks: unknown[]) {
  const budgets = buildBudgetSet([...providers, budget(fallbacks)]);
  const router = new Router(budgets, 'team/search');
  const routes = new FallbackRoutes(budgets, 'team/search', router.targets);
  const steps = (api: 'openai' | 'anthropic', model: string) =>
    routes
      .stepsFrom(router.resolve(api, model), model)
      .map((step) => [step.target.providerId, step.model, step.afterMs]);
  return { routes, steps };
}

describe('FallbackRoutes', () => {
  it("primary first, then fallbacks in order with their models; each waits the next one's after", () => {
    const { steps, routes } = routesOf([
      { providerRef: { name: 'deepseek', namespace: 'llm' }, model: 'deepseek-chat', after: '2s' },
      { providerRef: { name: 'glm', namespace: 'llm' }, model: 'glm-4.5-air' },
      { providerRef: { name: 'any', namespace: 'llm' }, after: '500ms' },
    ]);
    expect(steps('openai', 'glm-4.6')).toEqual([
      ['llm/glm', 'glm-4.6', 2_000],
      ['llm/deepseek', 'deepseek-chat', 0],
      ['llm/glm', 'glm-4.5-air', 500],
      ['llm/any', 'glm-4.6', Infinity],
    ]);
    expect(routes.warnings).toEqual([]);
  });

  it('skips fallbacks that do not serve the mapped model', () => {
    const { steps } = routesOf([
      { providerRef: { name: 'deepseek', namespace: 'llm' }, after: '1s' }, // glm-4.6 is not a DeepSeek model
      { providerRef: { name: 'any', namespace: 'llm' }, after: '3s' },
    ]);
    expect(steps('openai', 'glm-4.6')).toEqual([
      ['llm/glm', 'glm-4.6', 3_000],
      ['llm/any', 'glm-4.6', Infinity],
    ]);
  });

  it('a model only a fallback serves starts the route there, asked as requested', () => {
    const { steps } = routesOf([
      { providerRef: { name: 'deepseek', namespace: 'llm' }, model: 'deepseek-chat' },
      { providerRef: { name: 'any', namespace: 'llm' }, model: 'gpt-4o-mini', after: '1s' },
    ]);
    expect(steps('openai', 'deepseek-chat')).toEqual([
      ['llm/deepseek', 'deepseek-chat', 1_000],
      ['llm/any', 'gpt-4o-mini', Infinity],
    ]);
  });

  it("a fallback of the other API is never on the route of the primary's calls, and is reported", () => {
    const { steps, routes } = routesOf([
      { providerRef: { name: 'claude', namespace: 'llm' }, model: 'claude-sonnet-4-5', after: '1s' },
      { providerRef: { name: 'deepseek', namespace: 'llm' }, model: 'deepseek-chat', after: '2s' },
    ]);
    expect(steps('openai', 'glm-4.6')).toEqual([
      ['llm/glm', 'glm-4.6', 2_000],
      ['llm/deepseek', 'deepseek-chat', Infinity],
    ]);
    // Anthropic-API calls can only go to the Anthropic-API provider, with no fallback.
    expect(steps('anthropic', 'claude-opus-4-1')).toEqual([['llm/claude', 'claude-opus-4-1', Infinity]]);
    expect(routes.warnings).toHaveLength(1);
    expect(routes.warnings[0]).toMatch(/spec\.fallbacks\[0\] \(llm\/claude\) speaks the anthropic API/);
  });
});
