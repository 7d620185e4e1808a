/**
 * Reads LLMProvider / LLMBudget objects from YAML (files, a folder of files, or text), validates
 * them with the one schema, and checks references between them.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import type { z } from 'zod';
import { BudgetValidationError } from '../errors/errors.ts';
import { budgetSchema, objectId, providerSchema, type LLMBudget, type LLMProvider } from './types.ts';

export interface BudgetSet {
  providers: Map<string, LLMProvider>;
  budgets: Map<string, LLMBudget>;
}

function formatIssues(error: z.ZodError, prefix: string): string[] {
  return error.issues.map((issue) => {
    const path = issue.path
      .map((part) => (typeof part === 'number' ? `[${part}]` : `.${String(part)}`))
      .join('');
    return `${prefix}${path}: ${issue.message}`;
  });
}

/** Validates one parsed object; `where` names it in messages (file and document index). */
export function parseObject(value: unknown, where: string): LLMProvider | LLMBudget {
  const kind = (value as { kind?: unknown } | null)?.kind;
  if (kind === 'LLMProvider') {
    const result = providerSchema.safeParse(value);
    if (!result.success) throw new BudgetValidationError(where, formatIssues(result.error, 'LLMProvider'));
    return result.data;
  }
  if (kind === 'LLMBudget') {
    const result = budgetSchema.safeParse(value);
    if (!result.success) throw new BudgetValidationError(where, formatIssues(result.error, 'LLMBudget'));
    return result.data;
  }
  throw new BudgetValidationError(where, [
    `kind: must be LLMProvider or LLMBudget, got ${JSON.stringify(kind)}`,
  ]);
}

/** Every object in a YAML text (documents separated by `---`; empty documents skipped). */
export function parseBudgetsYaml(text: string, source: string): Array<LLMProvider | LLMBudget> {
  const objects: Array<LLMProvider | LLMBudget> = [];
  parseAllDocuments(text).forEach((doc, index) => {
    const where = `${source} document ${index + 1}`;
    if (doc.errors.length > 0) {
      throw new BudgetValidationError(
        where,
        doc.errors.map((e) => `YAML: ${e.message.split('\n')[0]}`),
      );
    }
    const value = doc.toJS();
    if (value === null || value === undefined) return;
    objects.push(parseObject(value, where));
  });
  return objects;
}

/** Indexes objects by id and checks that every reference resolves. */
export function buildBudgetSet(objects: Array<LLMProvider | LLMBudget>): BudgetSet {
  const providers = new Map<string, LLMProvider>();
  const budgets = new Map<string, LLMBudget>();
  const issues: string[] = [];
  for (const object of objects) {
    const id = objectId(object.metadata);
    const into = object.kind === 'LLMProvider' ? providers : budgets;
    if (into.has(id)) issues.push(`${object.kind} ${id} is defined twice`);
    (into as Map<string, LLMProvider | LLMBudget>).set(id, object);
  }
  for (const [id, budget] of budgets) {
    const ref = objectId(budget.spec.providerRef, budget.metadata.namespace);
    if (!providers.has(ref))
      issues.push(`LLMBudget ${id}: spec.providerRef names unknown LLMProvider ${ref}`);
    budget.spec.fallbacks?.forEach((fallback, index) => {
      const fallbackRef = objectId(fallback.providerRef, budget.metadata.namespace);
      if (!providers.has(fallbackRef)) {
        issues.push(
          `LLMBudget ${id}: spec.fallbacks[${index}].providerRef names unknown LLMProvider ${fallbackRef}`,
        );
      }
    });
  }
  if (issues.length > 0) throw new BudgetValidationError('budgets', issues);
  return { providers, budgets };
}

/** YAML files named by `path`: one file, or every *.yaml / *.yml in a folder (not recursive). */
export async function loadBudgetFiles(path: string): Promise<BudgetSet> {
  const info = await stat(path);
  const files = info.isDirectory()
    ? (await readdir(path))
        .filter((name) => /\.ya?ml$/.test(name))
        .sort()
        .map((name) => join(path, name))
    : [path];
  const objects: Array<LLMProvider | LLMBudget> = [];
  for (const file of files) objects.push(...parseBudgetsYaml(await readFile(file, 'utf8'), file));
  return buildBudgetSet(objects);
}
