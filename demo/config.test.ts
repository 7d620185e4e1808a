import { describe, expect, it } from 'vitest';
import { ConfigError } from '../common/errors/errors.ts';
import { loadConfig } from './config.ts';

const load = (...argv: string[]) => loadConfig(argv, {}, '/work/here');

function fieldOf(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).field;
  }
  throw new Error('expected a ConfigError');
}

describe('demo config', () => {
  it('has defaults for a one-minute run', () => {
    expect(load()).toEqual({
      help: false,
      durationMs: 20_000,
      tenants: 3,
      flavour: 'glm',
      redisUrl: undefined,
      picturePath: '/work/here/tokenlease-demo.svg',
      providerUrl: undefined,
    });
  });

  it('reads every flag; a bare duration is seconds', () => {
    expect(
      load(
        '--duration',
        '10',
        '--tenants',
        '5',
        '--provider-flavour',
        'anthropic',
        '--redis',
        'redis://127.0.0.1:6379',
        '--picture',
        'out/demo.svg',
        '--provider-url',
        'http://127.0.0.1:9000/',
      ),
    ).toMatchObject({
      durationMs: 10_000,
      tenants: 5,
      flavour: 'anthropic',
      redisUrl: 'redis://127.0.0.1:6379',
      picturePath: '/work/here/out/demo.svg',
      providerUrl: 'http://127.0.0.1:9000',
    });
    expect(load('--duration', '1m30s').durationMs).toBe(90_000);
    expect(load('--provider-flavor', 'deepseek').flavour).toBe('deepseek');
  });

  it('names the flag at fault', () => {
    expect(fieldOf(() => load('--duration', 'soon'))).toBe('--duration');
    expect(fieldOf(() => load('--duration', '0.5'))).toBe('--duration');
    expect(fieldOf(() => load('--tenants', '0'))).toBe('--tenants');
    expect(fieldOf(() => load('--tenants', '9'))).toBe('--tenants');
    expect(fieldOf(() => load('--tenants', 'two'))).toBe('--tenants');
    expect(fieldOf(() => load('--provider-flavour', 'gemini'))).toBe('--provider-flavour');
    expect(fieldOf(() => load('--redis', 'http://x'))).toBe('--redis');
    expect(fieldOf(() => load('--picture', 'demo.png'))).toBe('--picture');
    expect(fieldOf(() => load('--provider-url', 'nope'))).toBe('--provider-url');
    expect(fieldOf(() => load('--bogus'))).toBe('--bogus');
    expect(fieldOf(() => load('--tenants'))).toBe('--tenants');
    expect(fieldOf(() => load('extra'))).toBe('extra');
  });
});
