import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { BudgetSet } from '../../common/budgets/load-budgets.ts';
import { watchBudgets, type BudgetsWatcher } from './watch-budgets.ts';

function providerYaml(concurrency: number): string {
  return `apiVersion: tokenlease.io/v1alpha1
kind: LLMProvider
metadata: {name: sim, namespace: llm}
spec:
  api: openai
  baseURL: http://127.0.0.1:1/v1
  limits:
    - {dimension: concurrency, amount: ${concurrency}}
`;
}

const concurrencyOf = (budgets: BudgetSet) => budgets.providers.get('llm/sim')?.spec.limits[0]?.amount;

describe('watchBudgets', () => {
  let dir: string;
  let watcher: BudgetsWatcher | undefined;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tokenlease-watch-'));
  });
  afterEach(async () => {
    watcher?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('reloads a file on change, keeps the last good budgets on a bad change, and recovers', async () => {
    const file = join(dir, 'budgets.yaml');
    await writeFile(file, providerYaml(2));
    const reloads: BudgetSet[] = [];
    const errors: unknown[] = [];
    watcher = await watchBudgets(file, {
      debounceMs: 20,
      onReload: (budgets) => reloads.push(budgets),
      onError: (error) => errors.push(error),
    });

    await writeFile(file, providerYaml(3));
    await vi.waitFor(() => expect(reloads.map(concurrencyOf)).toContain(3));

    const before = reloads.length;
    await writeFile(file, `${providerYaml(4)}    - {dimension: requests, amount: -1}\n`);
    await vi.waitFor(() => expect(errors.length).toBeGreaterThan(0));
    expect(reloads.length).toBe(before);
    expect(String((errors[0] as Error).message)).toMatch(/amount/);

    await writeFile(file, '');
    await vi.waitFor(() => expect(errors.some((e) => /no LLMProvider/.test(String(e)))).toBe(true));
    expect(reloads.length).toBe(before);

    // Replaced by rename, as editors and ConfigMap updates do.
    await writeFile(join(dir, '.budgets.yaml.tmp'), providerYaml(5));
    await rename(join(dir, '.budgets.yaml.tmp'), file);
    await vi.waitFor(() => expect(reloads.map(concurrencyOf)).toContain(5));
  });

  it('reloads a folder when a YAML file is added, and ignores other files', async () => {
    await writeFile(join(dir, 'a.yaml'), providerYaml(1));
    const reloads: BudgetSet[] = [];
    watcher = await watchBudgets(dir, {
      debounceMs: 20,
      onReload: (b) => reloads.push(b),
      onError: () => {},
    });
    await writeFile(join(dir, 'notes.txt'), 'not budgets');
    await writeFile(
      join(dir, 'b.yml'),
      'apiVersion: tokenlease.io/v1alpha1\nkind: LLMBudget\nmetadata: {name: team, namespace: llm}\nspec:\n  providerRef: {name: sim}\n',
    );
    await vi.waitFor(() => expect(reloads.at(-1)?.budgets.has('llm/team')).toBe(true));
  });
});
