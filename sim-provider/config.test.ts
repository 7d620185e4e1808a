import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../common/errors/errors.ts';
import { loadConfig, parseInlineLimits } from './config.ts';

function configError(run: () => unknown): ConfigError {
  try {
    run();
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig', () => {
  it('defaults', () => {
    const config = loadConfig([], {});
    expect(config.server).toEqual({
      host: '127.0.0.1',
      port: 0,
      maxBodyBytes: 10 * 1024 * 1024,
      ledgerCapacity: 100_000,
    });
    expect(config.settings).toMatchObject({ flavor: 'openai', limits: [], outputTokens: 16, latencyMs: 0 });
    expect(config.help).toBe(false);
  });

  it('reads flags, environment variables (flags win) and inline limits', () => {
    const config = loadConfig(
      [
        '--flavor',
        'glm',
        '--limits',
        'requests=600/5h,concurrency=5,totalTokens@glm-4.6=1000000/1m',
        '--tokens-per-second',
        '50',
        '--usage-on-every-chunk',
      ],
      { TOKENLEASE_SIM_FLAVOR: 'anthropic', TOKENLEASE_SIM_PORT: '8090', TOKENLEASE_SIM_ERROR_RATE: '0.1' },
    );
    expect(config.settings.flavor).toBe('glm');
    expect(config.server.port).toBe(8090);
    expect(config.settings.errorRate).toBe(0.1);
    expect(config.settings.perTokenMs).toBe(20);
    expect(config.settings.usageOnEveryChunk).toBe(true);
    expect(config.settings.limits).toEqual([
      { dimension: 'requests', amount: 600, window: '5h' },
      { dimension: 'concurrency', amount: 5 },
      { dimension: 'totalTokens', amount: 1_000_000, window: '1m', model: 'glm-4.6' },
    ]);
  });

  it('reads limits from YAML (an LLMProvider) and JSON files', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sim-config-'));
    const yamlPath = join(dir, 'provider.yaml');
    writeFileSync(
      yamlPath,
      'apiVersion: tokenlease.io/v1alpha1\nkind: LLMProvider\nmetadata: {name: glm}\nspec:\n  limits:\n    - {dimension: concurrency, amount: 5}\n',
    );
    expect(loadConfig(['--limits', yamlPath], {}).settings.limits).toEqual([
      { dimension: 'concurrency', amount: 5 },
    ]);
    const jsonPath = join(dir, 'limits.json');
    writeFileSync(
      jsonPath,
      JSON.stringify({ limits: [{ dimension: 'requests', amount: 60, window: '1m' }] }),
    );
    expect(loadConfig(['--limits', jsonPath], {}).settings.limits).toEqual([
      { dimension: 'requests', amount: 60, window: '1m' },
    ]);
    expect(configError(() => loadConfig(['--limits', join(dir, 'missing.yaml')], {})).field).toBe('--limits');
  });

  it('refuses bad values naming the field', () => {
    expect(configError(() => loadConfig(['--flavor', 'acme'], {})).field).toBe('--flavor');
    expect(configError(() => loadConfig(['--latency-ms', 'soon'], {})).field).toBe('--latency-ms');
    expect(configError(() => loadConfig(['--error-rate', '2'], {})).field).toBe('--error-rate');
    expect(configError(() => loadConfig([], { TOKENLEASE_SIM_PORT: '70000' })).field).toBe(
      'TOKENLEASE_SIM_PORT',
    );
    expect(configError(() => loadConfig(['--limits', 'requests=5'], {})).field).toBe('--limits[0].window');
    expect(configError(() => loadConfig(['--limits', 'concurrency=5/1m'], {})).field).toBe(
      '--limits[0].window',
    );
    expect(configError(() => loadConfig(['--limits', 'requests=5/1m,requests=6/1m'], {})).field).toBe(
      '--limits[1]',
    );
    expect(configError(() => loadConfig(['--bogus'], {})).field).toBe('--bogus');
    expect(configError(() => loadConfig(['--per-token-ms', '1', '--tokens-per-second', '5'], {})).field).toBe(
      '--tokens-per-second',
    );
  });

  it('--help', () => {
    expect(loadConfig(['--help'], {}).help).toBe(true);
  });
});

describe('parseInlineLimits', () => {
  it('rejects unknown dimensions and malformed parts', () => {
    expect(configError(() => parseInlineLimits('tokens=5/1m')).field).toBe('limits[0].dimension');
    expect(configError(() => parseInlineLimits('requests=60/1m,garbage')).field).toBe('limits[1]');
  });
});
