import { describe, expect, it } from 'vitest';
import { buildBudgetSet, parseObject } from '../../common/budgets/load-budgets.ts';
import { ConfigError, NotFoundError } from '../../common/errors/errors.ts';
import { Router } from './router.ts';

function provider(name: string, spec: Record<string, unknown>) {
  return parseObject(
    { apiVersion: 'tokenlease.io/v1alpha1', kind: 'LLMProvider', metadata: { name, namespace: 'llm' }, spec },
    name,
  );
}

const budgets = buildBudgetSet([
  provider('glm', {
    api: 'openai',
    flavor: 'glm',
    baseURL: 'https://open.bigmodel.cn/api/paas/v4/',
    models: ['glm-4.6'],
  }),
  provider('deepseek', {
    api: 'openai',
    flavor: 'deepseek',
    baseURL: 'https://api.deepseek.com',
    models: ['deepseek-chat'],
  }),
  provider('claude', { api: 'anthropic', baseURL: 'https://api.anthropic.com' }),
  parseObject(
    {
      apiVersion: 'tokenlease.io/v1alpha1',
      kind: 'LLMBudget',
      metadata: { name: 'search', namespace: 'team' },
      spec: {
        providerRef: { name: 'glm', namespace: 'llm' },
        fallbacks: [
          { providerRef: { name: 'deepseek', namespace: 'llm' } },
          { providerRef: { name: 'claude', namespace: 'llm' } },
        ],
      },
    },
    'budget',
  ),
]);

describe('Router', () => {
  const router = new Router(budgets, 'team/search');

  it('routes a model to the budget provider that serves it, primary first', () => {
    expect(router.resolve('openai', 'glm-4.6')).toMatchObject({
      providerId: 'llm/glm',
      flavor: 'glm',
      origin: 'https://open.bigmodel.cn',
      basePath: '/api/paas/v4',
      budgetId: 'team/search',
    });
    expect(router.resolve('openai', 'deepseek-chat')).toMatchObject({
      providerId: 'llm/deepseek',
      basePath: '',
    });
    expect(router.resolve('anthropic', 'claude-any')).toMatchObject({
      providerId: 'llm/claude',
      flavor: 'anthropic',
    });
    expect(router.providerIds).toEqual(['llm/glm', 'llm/deepseek', 'llm/claude']);
  });

  it('refuses a model no provider of the budget serves', () => {
    expect(() => router.resolve('openai', 'gpt-4o')).toThrow(NotFoundError);
  });

  it('refuses to start for a budget that does not exist', () => {
    expect(() => new Router(budgets, 'team/other')).toThrow(ConfigError);
  });
});
