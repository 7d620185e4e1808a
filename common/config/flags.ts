/**
 * Pieces every binary's config loader shares: reading argv strictly, and the schemas of the values
 * several binaries take (durations, host:port). Each binary still has its one loader, which says
 * what it accepts; this module only makes them report bad input the same way: a ConfigError
 * naming the flag or variable at fault.
 */
import { parseArgs, type ParseArgsOptionsConfig } from 'node:util';
import { z } from 'zod';
import { formatDuration, parseDuration } from '../duration.ts';
import { ConfigError } from '../errors/errors.ts';

export type Env = Readonly<Record<string, string | undefined>>;
export type FlagValues = Record<string, string | boolean | undefined>;

/**
 * argv parsed against `options`: unknown flags, missing values and positional arguments are
 * ConfigErrors naming the flag, worded for `command` (e.g. `quota-server`).
 */
export function parseFlags(
  argv: readonly string[],
  options: ParseArgsOptionsConfig,
  command: string,
): FlagValues {
  try {
    return parseArgs({ args: [...argv], options, strict: true, allowPositionals: false })
      .values as FlagValues;
  } catch (error) {
    throw argumentError(error, command);
  }
}

/** parseArgs' errors, reworded to name the flag at fault. */
function argumentError(error: unknown, command: string): ConfigError {
  const code = (error as { code?: string }).code;
  const message = error instanceof Error ? error.message : String(error);
  // "Option '--listen <value>' argument missing", "Unexpected argument 'x'": the first quoted word.
  const named = /'([^' ]+)/.exec(message)?.[1] ?? 'arguments';
  switch (code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return new ConfigError(named, 'unknown flag (see --help)');
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      return /ambiguous/.test(message)
        ? new ConfigError(named, `a value starting with "-" must be written ${named}=VALUE`)
        : new ConfigError(named, 'needs a value');
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return new ConfigError(named, `unexpected argument (${command} takes only flags)`);
    default:
      return new ConfigError('arguments', message);
  }
}

/** `raw` checked by `schema`; a ConfigError naming `source` (the flag or variable) otherwise. */
export function parseValue<S extends z.ZodType>(schema: S, raw: string, source: string): z.output<S> {
  const result = schema.safeParse(raw);
  if (!result.success) throw new ConfigError(source, result.error.issues[0]?.message ?? 'invalid value');
  return result.data;
}

/** A duration flag in milliseconds, from `minMs` to `maxMs`; `example` shows one in the message. */
export function durationSchema(minMs: number, maxMs: number, example: string) {
  return z.string().transform((text, ctx) => {
    const ms = parseDuration(text);
    if (ms === undefined || ms < minMs || ms > maxMs) {
      ctx.addIssue({
        code: 'custom',
        message: `must be a duration from ${formatDuration(minMs)} to ${formatDuration(maxMs)}, such as ${example}`,
      });
      return z.NEVER;
    }
    return ms;
  });
}

/** host:port, the host a DNS name, an IPv4 address or a bracketed IPv6 address. */
export const HOST_PORT = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?):(\d{1,5})$/;

/** A `host:port` string (kept as written), its port 0 to 65535. */
export const hostPortSchema = z
  .string()
  .regex(HOST_PORT, 'must be host:port')
  .refine((value) => Number(HOST_PORT.exec(value)?.[3]) <= 65535, 'port must be 0 to 65535');

/** A `host:port` string parsed into its parts (brackets of an IPv6 host removed). */
export const hostPortPartsSchema = hostPortSchema.transform((text) => {
  const match = HOST_PORT.exec(text)!;
  return { host: match[1]!.replace(/^\[|\]$/g, ''), port: Number(match[3]) };
});

/** A flag with an environment-variable fallback and a default, as quota-server and controller take. */
export interface OptionSpec {
  env: string;
  default: string | undefined;
  schema: z.ZodType;
  help: string;
}

/**
 * The option's value from its flag, else its variable (an empty one counts as unset), else its
 * default; `source` names where it came from, for errors found later.
 */
export function readOption<O extends Record<string, OptionSpec>, N extends keyof O & string>(
  options: O,
  values: FlagValues,
  env: Env,
  name: N,
): { value: z.output<O[N]['schema']> | undefined; source: string } {
  const option: OptionSpec = options[name]!;
  const flag = values[name];
  const fromEnv = env[option.env];
  const [raw, source] =
    typeof flag === 'string'
      ? [flag, `--${name}`]
      : fromEnv !== undefined && fromEnv !== ''
        ? [fromEnv, option.env]
        : [option.default, `--${name}`];
  if (raw === undefined) return { value: undefined, source };
  return { value: parseValue(option.schema, raw, source) as z.output<O[N]['schema']>, source };
}

/** The --help lines of an option table: flag, variable, help and default in aligned columns. */
export function optionsHelp(
  options: Record<string, OptionSpec>,
  flagWidth: number,
  envWidth: number,
): string {
  return Object.entries(options)
    .map(
      ([name, option]) =>
        `  --${name.padEnd(flagWidth)} ${option.env.padEnd(envWidth)} ${option.help}${option.default === undefined ? '' : ` [${option.default}]`}`,
    )
    .join('\n');
}
