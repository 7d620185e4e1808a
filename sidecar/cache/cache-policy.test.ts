import { describe, expect, it } from 'vitest';
import { parseObject } from '../../common/budgets/load-budgets.ts';
import type { LLMBudget } from '../../common/budgets/types.ts';
import { cacheDirective, cacheSettingsFor, cacheUse, isDeterministic } from './cache-policy.ts';

function budget(cache: Record<string, unknown> | undefined): LLMBudget {
  return parseObject(
    {
      apiVersion: 'tokenlease.io/v1alpha1',
      kind: 'LLMBudget',
      metadata: { name: 'app', namespace: 'team' },
      spec: { providerRef: { name: 'p' }, ...(cache ? { cache } : {}) },
    },
    'test',
  ) as LLMBudget;
}

describe('cache policy', () => {
  it('is off unless the budget (or the model override) enables it', () => {
    expect(cacheSettingsFor(budget(undefined), 'm')).toBeUndefined();
    expect(cacheSettingsFor(budget({}), 'm')).toBeUndefined();
    expect(
      cacheSettingsFor(budget({ enabled: true, models: [{ model: 'm', enabled: false }] }), 'm'),
    ).toBeUndefined();
    expect(cacheSettingsFor(budget({ models: [{ model: 'm', enabled: true }] }), 'm')).toBeDefined();
  });

  it('resolves defaults, model overrides and the scope', () => {
    const settings = cacheSettingsFor(
      budget({ enabled: true, ttl: '10m', models: [{ model: 'm', ttl: '30s', maxEntryBytes: 1000 }] }),
      'm',
    );
    expect(settings).toEqual({
      ttlMs: 30_000,
      maxEntryBytes: 1000,
      maxScopeBytes: 256 * 1024 * 1024,
      requests: 'deterministic',
      allowRequestHeader: true,
      scope: 'b:team/app',
      coalesceWaitMs: 30_000,
    });
    expect(cacheSettingsFor(budget({ enabled: true, ttl: '10m' }), 'other')?.ttlMs).toBe(600_000);
    expect(cacheSettingsFor(budget({ enabled: true, sharedScope: 'pool' }), 'm')?.scope).toBe('s:team/pool');
  });

  it('refuses invalid settings at load', () => {
    expect(() => budget({ enabled: true, ttl: '0s' })).toThrow();
    expect(() => budget({ enabled: true, maxEntryBytes: 0 })).toThrow();
    expect(() => budget({ enabled: true, sharedScope: 'Not A Name' })).toThrow();
    expect(() => budget({ enabled: true, unknown: 1 })).toThrow();
  });

  it('reads the header, refusing values it does not know', () => {
    expect(cacheDirective(undefined)).toBeUndefined();
    expect(cacheDirective(' Refresh ')).toBe('refresh');
    expect(cacheDirective(['off', 'on'])).toBe('off');
    expect(() => cacheDirective('maybe')).toThrow('x-tokenlease-cache');
  });

  it('caches requests deterministic by their parameters by default', () => {
    expect(isDeterministic('embeddings', {})).toBe(true);
    expect(isDeterministic('chat', { temperature: 0 })).toBe(true);
    expect(isDeterministic('chat', { top_p: 0 })).toBe(true);
    expect(isDeterministic('messages', { temperature: 0, max_tokens: 5 })).toBe(true);
    expect(isDeterministic('chat', {})).toBe(false);
    expect(isDeterministic('chat', { temperature: 0.2 })).toBe(false);
    expect(isDeterministic('chat', { top_p: 0.1, seed: 1 })).toBe(false);
  });

  it('applies the header only where the budget allows it', () => {
    const open = cacheSettingsFor(budget({ enabled: true }), 'm');
    const strict = cacheSettingsFor(budget({ enabled: true, allowRequestHeader: false }), 'm');
    const all = cacheSettingsFor(budget({ enabled: true, requests: 'all' }), 'm');
    const random = { temperature: 1 };
    expect(cacheUse(open, undefined, 'chat', random)).toBeUndefined();
    expect(cacheUse(open, 'on', 'chat', random)).toEqual({ lookup: true });
    expect(cacheUse(open, 'refresh', 'chat', { temperature: 0 })).toEqual({ lookup: false });
    expect(cacheUse(open, 'off', 'chat', { temperature: 0 })).toBeUndefined();
    expect(cacheUse(strict, 'off', 'chat', { temperature: 0 })).toEqual({ lookup: true });
    expect(cacheUse(strict, 'on', 'chat', random)).toBeUndefined();
    expect(cacheUse(all, undefined, 'chat', random)).toEqual({ lookup: true });
    expect(cacheUse(undefined, 'on', 'chat', random)).toBeUndefined();
  });
});
