/**
 * `tokenlease status`'s flags (with TOKENLEASE_QUOTA as the quota service's fallback address),
 * validated once: a bad value throws ConfigError naming the flag.
 */
import { z } from 'zod';
import {
  durationSchema,
  hostPortSchema,
  parseFlags,
  parseValue,
  type Env,
} from '../../common/config/flags.ts';

export type { Env };

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

const FLAGS = {
  quota: hostPortSchema,
  provider: z.string().regex(/^[a-z0-9-]+\/[a-z0-9.-]+$/, 'must be namespace/name'),
  interval: durationSchema(250, 3_600_000, '2s'),
  output: z.enum(['table', 'json'], { error: 'must be table or json' }),
} as const;

type FlagName = keyof typeof FLAGS;

function parse<N extends FlagName>(name: N, value: string, field = `--${name}`): z.output<(typeof FLAGS)[N]> {
  return parseValue(FLAGS[name], value, field) as z.output<(typeof FLAGS)[N]>;
}

export function loadConfig(argv: readonly string[], env: Env): StatusConfig {
  const values = parseFlags(
    argv,
    {
      quota: { type: 'string' },
      provider: { type: 'string' },
      watch: { type: 'boolean' },
      interval: { type: 'string' },
      output: { type: 'string', short: 'o' },
      help: { type: 'boolean', short: 'h' },
    },
    'status',
  );
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
