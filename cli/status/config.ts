/**
 * `tokenlease status`'s flags (with TOKENLEASE_QUOTA as the quota service's fallback address),
 * validated once: a bad value throws ConfigError naming the flag.
 */
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { parseDuration } from '../../common/duration.ts';
import { ConfigError } from '../../common/errors/errors.ts';

export type Env = Readonly<Record<string, string | undefined>>;

export interface StatusConfig {
  help: boolean;
  /** `host:port` of the quota service. */
  quota: string;
  /** `namespace/name` of one LLMProvider; every provider when undefined. */
  provider: string | undefined;
  watch: boolean;
  intervalMs: number;
  output: 'table' | 'json';
}

export const USAGE = `Usage: tokenlease status [flags]

Reads GetUsage from a running quota service and prints, per provider, each limit's use against its
declared and effective value, what is in flight and waiting, any closure, and per budget what it
holds, what waits, what it was granted and refused (by class).

Flags:
  --quota host:port        the quota service [TOKENLEASE_QUOTA, else 127.0.0.1:7070]
  --provider ns/name       only this LLMProvider
  --watch                  refresh until interrupted (Ctrl-C)
  --interval 1s            how often --watch refreshes (250ms to 1h)
  --output table|json      table (default), or JSON: the usage snapshot, one object per line
  --help                   show this help
`;

const HOST_PORT = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?):(\d{1,5})$/;

const FLAGS = {
  quota: z
    .string()
    .regex(HOST_PORT, 'must be host:port')
    .refine((value) => Number(HOST_PORT.exec(value)?.[3]) <= 65535, 'port must be 0 to 65535'),
  provider: z.string().regex(/^[a-z0-9-]+\/[a-z0-9.-]+$/, 'must be namespace/name'),
  interval: z.string().transform((text, ctx) => {
    const ms = parseDuration(text);
    if (ms === undefined || ms < 250 || ms > 3_600_000) {
      ctx.addIssue({ code: 'custom', message: 'must be a duration from 250ms to 1h, such as 2s' });
      return z.NEVER;
    }
    return ms;
  }),
  output: z.enum(['table', 'json'], { error: 'must be table or json' }),
} as const;

type FlagName = keyof typeof FLAGS;

function parse<N extends FlagName>(name: N, value: string, field = `--${name}`): z.output<(typeof FLAGS)[N]> {
  const result = FLAGS[name].safeParse(value);
  if (!result.success) throw new ConfigError(field, result.error.issues[0]?.message ?? 'invalid value');
  return result.data as z.output<(typeof FLAGS)[N]>;
}

function argumentError(error: unknown): ConfigError {
  const code = (error as { code?: string }).code;
  const message = error instanceof Error ? error.message : String(error);
  const named = /'([^' ]+)/.exec(message)?.[1] ?? 'arguments';
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') return new ConfigError(named, 'unknown flag (see --help)');
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') return new ConfigError(named, 'needs a value');
  if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
    return new ConfigError(named, 'unexpected argument (status takes only flags)');
  }
  return new ConfigError('arguments', message);
}

export function loadConfig(argv: readonly string[], env: Env): StatusConfig {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        quota: { type: 'string' },
        provider: { type: 'string' },
        watch: { type: 'boolean' },
        interval: { type: 'string' },
        output: { type: 'string', short: 'o' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (error) {
    throw argumentError(error);
  }
  const text = (name: string) => values[name] as string | undefined;
  const envQuota = env.TOKENLEASE_QUOTA?.trim() || undefined;
  const quotaFlag = text('quota');
  return {
    help: values.help === true,
    quota:
      quotaFlag !== undefined
        ? parse('quota', quotaFlag)
        : envQuota !== undefined
          ? parse('quota', envQuota, 'TOKENLEASE_QUOTA')
          : '127.0.0.1:7070',
    provider: text('provider') === undefined ? undefined : parse('provider', text('provider')!),
    watch: values.watch === true,
    intervalMs: text('interval') === undefined ? 1_000 : parse('interval', text('interval')!),
    output: text('output') === undefined ? 'table' : parse('output', text('output')!),
  };
}
