import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../common/errors/errors.ts';
import { loadConfig, USAGE } from './config.ts';

function configError(argv: string[], env: Record<string, string> = {}): ConfigError {
  try {
    loadConfig(argv, env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error(`expected ConfigError for ${argv.join(' ')}`);
}

describe('quota-server config', () => {
  it('has sensible defaults', () => {
    expect(loadConfig(['--budgets', 'budgets/'], {})).toEqual({
      help: false,
      listen: '127.0.0.1:7070',
      budgets: 'budgets/',
      sources: { listen: '--listen', budgets: '--budgets', metricsListen: '--metrics-listen' },
      metricsListen: undefined,
      store: 'memory',
      redisUrl: 'redis://127.0.0.1:6379',
      redisKeyPrefix: undefined,
      redisCluster: undefined,
      redisAutoPipelining: false,
      identity: 'none',
      identityAudience: 'tokenlease',
      kubeconfig: undefined,
      shutdownGraceMs: 10_000,
      reloadDebounceMs: 250,
      deadlineMarginMs: 50,
    });
  });

  it('reads the identity mode, refusing an unknown one', () => {
    expect(
      loadConfig(['--budgets', 'redis', '--identity', 'kubernetes', '--kubeconfig', '/k'], {}),
    ).toMatchObject({
      budgets: 'redis',
      identity: 'kubernetes',
      kubeconfig: '/k',
    });
    expect(() => loadConfig(['--budgets', 'b.yaml'], { TOKENLEASE_IDENTITY: 'ldap' })).toThrow(
      'TOKENLEASE_IDENTITY: must be none or kubernetes',
    );
  });

  it('reads Redis Cluster seed nodes and the pipelining switch', () => {
    const config = loadConfig(
      [
        '--budgets',
        'b.yaml',
        '--redis-cluster',
        'redis-0.redis:6379,10.0.0.2:7001',
        '--redis-auto-pipelining=true',
      ],
      {},
    );
    expect(config).toMatchObject({
      redisCluster: [
        { host: 'redis-0.redis', port: 6379 },
        { host: '10.0.0.2', port: 7001 },
      ],
      redisAutoPipelining: true,
    });
    expect(() => loadConfig(['--budgets', 'b.yaml', '--redis-cluster', 'nope'], {})).toThrow(
      '--redis-cluster: must be a comma-separated list of host:port seed nodes',
    );
    expect(() => loadConfig(['--budgets', 'b.yaml'], { TOKENLEASE_REDIS_AUTO_PIPELINING: 'yes' })).toThrow(
      'TOKENLEASE_REDIS_AUTO_PIPELINING: must be true or false',
    );
  });

  it('reads every flag, and prefers a flag to its environment variable', () => {
    const config = loadConfig(
      [
        '--listen=0.0.0.0:9000',
        '--budgets',
        'b.yaml',
        '--store',
        'redis',
        '--redis-url',
        'rediss://redis.example:6380/2',
        '--redis-key-prefix',
        'tl:test:',
        '--shutdown-grace',
        '30s',
        '--reload-debounce',
        '1s',
        '--deadline-margin',
        '20ms',
      ],
      { TOKENLEASE_LISTEN: '127.0.0.1:1' },
    );
    expect(config).toMatchObject({
      listen: '0.0.0.0:9000',
      store: 'redis',
      redisUrl: 'rediss://redis.example:6380/2',
      redisKeyPrefix: 'tl:test:',
      shutdownGraceMs: 30_000,
      reloadDebounceMs: 1_000,
      deadlineMarginMs: 20,
    });
  });

  it('falls back to the environment, treating an empty variable as unset', () => {
    const config = loadConfig([], {
      TOKENLEASE_BUDGETS: '/etc/tokenlease',
      TOKENLEASE_LISTEN: '[::]:7070',
      TOKENLEASE_STORE: 'redis',
      TOKENLEASE_REDIS_URL: '',
    });
    expect(config).toMatchObject({
      budgets: '/etc/tokenlease',
      listen: '[::]:7070',
      store: 'redis',
      redisUrl: 'redis://127.0.0.1:6379',
      sources: { listen: 'TOKENLEASE_LISTEN', budgets: 'TOKENLEASE_BUDGETS' },
    });
  });

  it('names the flag of each bad value', () => {
    const cases: Array<[string[], string, RegExp]> = [
      [['--listen', 'localhost'], '--listen', /must be host:port/],
      [['--listen', 'host:99999'], '--listen', /port/],
      [['--listen', 'a b:80'], '--listen', /must be host:port/],
      [[], '--budgets', /is required/],
      [['--budgets', ''], '--budgets', /file/],
      [['--store', 'etcd'], '--store', /memory or redis/],
      [['--redis-url', 'http://redis:6379'], '--redis-url', /redis:\/\//],
      [['--redis-url', 'not a url'], '--redis-url', /redis:\/\//],
      [['--redis-key-prefix', 'a b'], '--redis-key-prefix', /spaces/],
      [['--shutdown-grace', 'forever'], '--shutdown-grace', /duration/],
      [['--shutdown-grace', '11m'], '--shutdown-grace', /duration/],
      [['--reload-debounce=-1s'], '--reload-debounce', /duration/],
      [['--reload-debounce', '-1s'], '--reload-debounce', /--reload-debounce=VALUE/],
      [['--deadline-margin', '1h'], '--deadline-margin', /duration/],
    ];
    for (const [argv, field, message] of cases) {
      const error = configError(
        argv.includes('--budgets') || field === '--budgets' ? argv : [...argv, '--budgets', 'b'],
      );
      expect(error.field, argv.join(' ')).toBe(field);
      expect(error.message).toMatch(message);
    }
  });

  it('names the environment variable when the bad value came from it', () => {
    const error = configError(['--budgets', 'b'], { TOKENLEASE_LISTEN: 'nonsense' });
    expect(error.field).toBe('TOKENLEASE_LISTEN');
    expect(error.message).toBe('TOKENLEASE_LISTEN: must be host:port');
    expect(configError(['--budgets', 'b'], { TOKENLEASE_STORE: 'disk' }).field).toBe('TOKENLEASE_STORE');
  });

  it('refuses unknown flags, missing values and positional arguments', () => {
    expect(configError(['--budgets', 'b', '--lisen', 'x:1'])).toMatchObject({ field: '--lisen' });
    expect(configError(['--budgets'])).toMatchObject({
      field: '--budgets',
      message: '--budgets: needs a value',
    });
    expect(configError(['--budgets', 'b', 'extra'])).toMatchObject({ field: 'extra' });
  });

  it('answers --help before validating anything, and lists every flag with its variable', () => {
    expect(loadConfig(['--help', '--listen', 'bad'], {})).toEqual({ help: true });
    for (const flag of ['--listen', '--budgets', '--store', '--redis-url', '--shutdown-grace']) {
      expect(USAGE).toContain(flag);
    }
    expect(USAGE).toContain('TOKENLEASE_REDIS_URL');
  });
});
