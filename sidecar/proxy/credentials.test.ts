import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildBudgetSet, parseObject } from '../../common/budgets/load-budgets.ts';
import { ConfigError } from '../../common/errors/errors.ts';
import { authHeader, loadProviderKeys } from './credentials.ts';

function provider(name: string, spec: Record<string, unknown>) {
  return parseObject(
    { apiVersion: 'tokenlease.io/v1alpha1', kind: 'LLMProvider', metadata: { name, namespace: 'llm' }, spec },
    name,
  );
}

describe('provider keys', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tokenlease-keys-'));
  writeFileSync(join(dir, 'file-key'), 'sk-from-file\n');
  mkdirSync(join(dir, 'secrets', 'zhipu-key'), { recursive: true });
  writeFileSync(join(dir, 'secrets', 'zhipu-key', 'apiKey'), 'sk-from-secret');
  const budgets = buildBudgetSet([
    provider('a', {
      api: 'openai',
      baseURL: 'https://a.test/v1',
      credentials: { file: join(dir, 'file-key') },
    }),
    provider('b', {
      api: 'openai',
      flavor: 'glm',
      baseURL: 'https://b.test/v1',
      credentials: { secretRef: { name: 'zhipu-key', key: 'apiKey' } },
    }),
    provider('c', { api: 'anthropic', baseURL: 'https://c.test', credentials: { env: 'C_KEY' } }),
    provider('d', { api: 'openai', baseURL: 'https://d.test/v1' }),
    provider('e', { api: 'openai', baseURL: 'https://e.test/v1', credentials: { env: 'MISSING' } }),
  ]);

  it('reads keys from a file, a mounted Secret and the environment, only for the providers asked', async () => {
    const keys = await loadProviderKeys(budgets, ['llm/a', 'llm/b', 'llm/c', 'llm/d'], {
      env: { C_KEY: 'sk-from-env' },
      secretsDir: join(dir, 'secrets'),
    });
    expect(Object.fromEntries(keys)).toEqual({
      'llm/a': 'sk-from-file',
      'llm/b': 'sk-from-secret',
      'llm/c': 'sk-from-env',
    });
  });

  it('refuses to start when a key cannot be read, naming the provider field', async () => {
    await expect(loadProviderKeys(budgets, ['llm/e'], { env: {}, secretsDir: dir })).rejects.toThrow(
      ConfigError,
    );
    await expect(
      loadProviderKeys(budgets, ['llm/b'], { env: {}, secretsDir: join(dir, 'nowhere') }),
    ).rejects.toThrow(/LLMProvider llm\/b spec\.credentials/);
  });

  it('writes the key in the API own header', () => {
    const a = budgets.providers.get('llm/a')!;
    const c = budgets.providers.get('llm/c')!;
    const azure = provider('z', { api: 'openai', flavor: 'azure', baseURL: 'https://z.test' });
    expect(authHeader(a, 'k')).toEqual(['authorization', 'Bearer k']);
    expect(authHeader(c, 'k')).toEqual(['x-api-key', 'k']);
    expect(authHeader(azure as typeof a, 'k')).toEqual(['api-key', 'k']);
  });
});
