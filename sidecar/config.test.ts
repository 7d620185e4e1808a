import { describe, expect, it } from 'vitest';
import { ConfigError } from '../common/errors/errors.ts';
import { loadConfig } from './config.ts';

const required = ['--budgets', 'budgets.yaml', '--budget', 'team/app'];

describe('loadConfig', () => {
  it('applies defaults', () => {
    expect(loadConfig(required, {})).toMatchObject({
      host: '127.0.0.1',
      port: 8089,
      budgetsPath: 'budgets.yaml',
      budget: 'team/app',
      quota: { kind: 'embedded' },
      defaultTimeoutMs: 30_000,
      maxBodyBytes: 4 * 1024 * 1024,
      maxRetries: 2,
      localShare: 0.25,
    });
  });

  it('reads flags over the environment', () => {
    const config = loadConfig(
      ['--listen', '0.0.0.0:9000', '--quota', 'quota:50051', '--max-body', '512KiB', ...required],
      {
        TOKENLEASE_LISTEN: '127.0.0.1:1',
        TOKENLEASE_DEFAULT_TIMEOUT: '5s',
      },
    );
    expect(config).toMatchObject({
      host: '0.0.0.0',
      port: 9000,
      quota: { kind: 'grpc', target: 'quota:50051' },
      maxBodyBytes: 524_288,
      defaultTimeoutMs: 5000,
    });
  });

  it.each([
    [['--budget', 'team/app'], '--budgets'],
    [['--budgets', 'b.yaml'], '--budget'],
    [[...required, '--budget', 'no-namespace'], '--budget'],
    [[...required, '--listen', 'nowhere'], '--listen'],
    [[...required, '--default-timeout', 'forever'], '--default-timeout'],
    [[...required, '--max-body', '12 parsecs'], '--max-body'],
    [[...required, '--local-share', '0'], '--local-share'],
    [[...required, '--max-retries=-1'], '--max-retries'],
    [[...required, '--default-timeout', '20m'], '--default-timeout'],
    [[...required, '--unknown', 'x'], '--unknown'],
  ])('%j is refused naming %s', (argv, field) => {
    try {
      loadConfig(argv, {});
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as ConfigError).field.startsWith(field)).toBe(true);
    }
  });
});

describe('identity token', () => {
  it('is optional and read from the flag or TOKENLEASE_IDENTITY_TOKEN_FILE', () => {
    expect(loadConfig(required, {}).identityTokenFile).toBeUndefined();
    expect(loadConfig(required, { TOKENLEASE_IDENTITY_TOKEN_FILE: '/var/run/token' }).identityTokenFile).toBe(
      '/var/run/token',
    );
  });
});

describe('response cache', () => {
  it('is in memory by default, in Redis when a URL is given, and refuses bad values', () => {
    expect(loadConfig(required, {})).toMatchObject({
      cacheRedisUrl: undefined,
      cacheMemoryMaxBytes: 64 * 1024 * 1024,
    });
    expect(
      loadConfig([...required, '--cache-redis', 'redis://cache:6379/2'], {
        TOKENLEASE_CACHE_MEMORY_MAX: '1GiB',
      }),
    ).toMatchObject({ cacheRedisUrl: 'redis://cache:6379/2', cacheMemoryMaxBytes: 1024 ** 3 });
    expect(() => loadConfig([...required, '--cache-redis', 'cache:6379'], {})).toThrow('--cache-redis');
    expect(() => loadConfig([...required, '--cache-memory-max', '1KiB'], {})).toThrow('--cache-memory-max');
  });
});

describe('spare leases', () => {
  it('keeps 2 given back after 1 s by default, and refuses bad values', () => {
    expect(loadConfig(required, {})).toMatchObject({ spareLeases: 2, spareIdleMs: 1_000 });
    expect(
      loadConfig([...required, '--spare-leases', '0'], { TOKENLEASE_SPARE_IDLE: '250ms' }),
    ).toMatchObject({ spareLeases: 0, spareIdleMs: 250 });
    for (const bad of ['-1', '1.5', '17', 'many'])
      expect(() => loadConfig([...required, '--spare-leases', bad], {})).toThrow('--spare-leases');
    expect(() => loadConfig([...required, '--spare-idle', '5'], {})).toThrow('--spare-idle');
    expect(() => loadConfig(required, { TOKENLEASE_SPARE_IDLE: '2h' })).toThrow('TOKENLEASE_SPARE_IDLE');
  });
});
