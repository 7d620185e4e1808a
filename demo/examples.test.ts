import { readdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadBudgetFiles } from '../common/budgets/load-budgets.ts';
import { DEMO_FLAVOURS } from './config.ts';
import { EXAMPLES_DIR, loadScenario } from './scenario.ts';

const BUDGETS_DIR = fileURLToPath(new URL('../examples/budgets/', import.meta.url));

describe('example budgets', () => {
  it('the examples/budgets folder validates, references resolving across files', async () => {
    const set = await loadBudgetFiles(BUDGETS_DIR);
    expect([...set.providers.keys()].sort()).toEqual([
      'llm-platform/anthropic',
      'llm-platform/deepseek',
      'llm-platform/openai-prod',
      'llm-platform/zhipu-coding-pro',
    ]);
    expect(set.budgets.size).toBe(6);
  });

  it('there is one demo file per flavour, each a provider and three budgets of its own', async () => {
    expect((await readdir(EXAMPLES_DIR)).sort()).toEqual(
      DEMO_FLAVOURS.map((flavour) => `${flavour}.yaml`).sort(),
    );
    for (const flavour of DEMO_FLAVOURS) {
      const set = await loadBudgetFiles(`${EXAMPLES_DIR}${flavour}.yaml`);
      expect(set.providers.size).toBe(1);
      expect(set.budgets.size).toBe(3);
    }
  });

  it('the demo keeps the first tenants and adds weight-1 ones, pointed at the given URL', async () => {
    const one = await loadScenario('glm', 1, 'http://127.0.0.1:1/api/coding/paas/v4');
    expect(one.tenants.map((tenant) => tenant.name)).toEqual(['search']);
    expect(one.provider.spec.baseURL).toBe('http://127.0.0.1:1/api/coding/paas/v4');
    const five = await loadScenario('glm', 5, 'http://127.0.0.1:1/v1');
    expect(five.tenants.map((tenant) => [tenant.name, tenant.weight])).toEqual([
      ['search', 2],
      ['chat', 1],
      ['reports', 1],
      ['tenant-4', 1],
      ['tenant-5', 1],
    ]);
    expect(five.budgets.budgets.size).toBe(5);
    expect(five.tenants.reduce((sum, tenant) => sum + tenant.expectedShare, 0)).toBeCloseTo(1, 9);
    // The batch-like third tenant brings the most clients.
    expect(five.tenants[2]!.workers).toBeGreaterThan(five.tenants[0]!.workers);
  });
});
