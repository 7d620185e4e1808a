import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../common/errors/errors.ts';
import { loadConfig } from './config.ts';

describe('status config', () => {
  it('defaults to the quota-server default address, once, as a table', () => {
    expect(loadConfig([], {})).toEqual({
      help: false,
      quota: '127.0.0.1:7070',
      provider: undefined,
      watch: false,
      intervalMs: 1000,
      output: 'table',
    });
  });

  it('reads flags, with TOKENLEASE_QUOTA as the fallback address', () => {
    expect(loadConfig([], { TOKENLEASE_QUOTA: 'quota:7070' }).quota).toBe('quota:7070');
    expect(
      loadConfig(
        ['--quota', '10.0.0.1:9000', '--provider', 'llm/glm', '--watch', '--interval', '2s', '-o', 'json'],
        {
          TOKENLEASE_QUOTA: 'quota:7070',
        },
      ),
    ).toEqual({
      help: false,
      quota: '10.0.0.1:9000',
      provider: 'llm/glm',
      watch: true,
      intervalMs: 2000,
      output: 'json',
    });
  });

  it('names the flag or variable at fault', () => {
    const field = (argv: string[], env = {}) => {
      try {
        loadConfig(argv, env);
      } catch (error) {
        expect(error).toBeInstanceOf(ConfigError);
        return (error as ConfigError).field;
      }
      return 'no error';
    };
    expect(field(['--quota', 'nope'])).toBe('--quota');
    expect(field([], { TOKENLEASE_QUOTA: 'x:99999' })).toBe('TOKENLEASE_QUOTA');
    expect(field(['--output', 'yaml'])).toBe('--output');
    expect(field(['--interval', '10ms'])).toBe('--interval');
    expect(field(['--provider', 'glm'])).toBe('--provider');
    expect(field(['--nope'])).toBe('--nope');
  });
});
