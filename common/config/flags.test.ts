import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ConfigError } from '../errors/errors.ts';
import {
  durationSchema,
  hostPortPartsSchema,
  hostPortSchema,
  parseFlags,
  parseValue,
  readOption,
} from './flags.ts';

function configError(run: () => unknown): ConfigError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('parseFlags', () => {
  const options = { listen: { type: 'string' }, watch: { type: 'boolean' } } as const;

  it('reads known flags', () => {
    expect(parseFlags(['--listen', 'a:1', '--watch'], options, 'x')).toEqual({ listen: 'a:1', watch: true });
  });

  it('names the flag at fault in each way argv can be wrong', () => {
    expect(configError(() => parseFlags(['--bogus'], options, 'x'))).toMatchObject({
      field: '--bogus',
      message: '--bogus: unknown flag (see --help)',
    });
    expect(configError(() => parseFlags(['--listen'], options, 'x'))).toMatchObject({ field: '--listen' });
    expect(configError(() => parseFlags(['--listen'], options, 'x')).message).toContain('needs a value');
    expect(configError(() => parseFlags(['stray'], options, 'quota-server')).message).toBe(
      'stray: unexpected argument (quota-server takes only flags)',
    );
    expect(configError(() => parseFlags(['--listen', '-1'], options, 'x')).message).toContain(
      'must be written --listen=VALUE',
    );
  });
});

describe('value schemas', () => {
  it('reads durations within bounds and says the bounds otherwise', () => {
    const schema = durationSchema(250, 3_600_000, '2s');
    expect(parseValue(schema, '1m30s', '--interval')).toBe(90_000);
    expect(configError(() => parseValue(schema, '100ms', '--interval')).message).toBe(
      '--interval: must be a duration from 250ms to 1h, such as 2s',
    );
    expect(configError(() => parseValue(schema, 'soon', 'TL_INTERVAL')).field).toBe('TL_INTERVAL');
  });

  it('reads host:port, IPv6 in brackets, and refuses a port out of range', () => {
    expect(parseValue(hostPortSchema, 'quota.llm:7070', '--quota')).toBe('quota.llm:7070');
    expect(parseValue(hostPortPartsSchema, '[::1]:0', '--listen')).toEqual({ host: '::1', port: 0 });
    expect(configError(() => parseValue(hostPortSchema, 'quota', '--quota')).message).toBe(
      '--quota: must be host:port',
    );
    expect(configError(() => parseValue(hostPortSchema, 'a:70000', '--quota')).message).toBe(
      '--quota: port must be 0 to 65535',
    );
  });
});

describe('readOption', () => {
  const options = {
    workers: { env: 'TL_WORKERS', default: '2', schema: z.coerce.number().int().min(1), help: '' },
    name: { env: 'TL_NAME', default: undefined, schema: z.string().min(1), help: '' },
  };

  it('takes the flag, else the variable (empty counts as unset), else the default, and says which', () => {
    expect(readOption(options, { workers: '4' }, { TL_WORKERS: '8' }, 'workers')).toEqual({
      value: 4,
      source: '--workers',
    });
    expect(readOption(options, {}, { TL_WORKERS: '8' }, 'workers')).toEqual({
      value: 8,
      source: 'TL_WORKERS',
    });
    expect(readOption(options, {}, { TL_WORKERS: '' }, 'workers')).toEqual({ value: 2, source: '--workers' });
    expect(readOption(options, {}, {}, 'name')).toEqual({ value: undefined, source: '--name' });
  });

  it('names the variable a bad value came from', () => {
    expect(configError(() => readOption(options, {}, { TL_WORKERS: '0' }, 'workers')).field).toBe(
      'TL_WORKERS',
    );
  });
});
