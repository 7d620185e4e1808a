/**
 * quota-server's configuration: flags, each with an environment fallback, validated at start-up.
 * A bad value throws ConfigError naming the flag or variable it came from; the binary then stops.
 * An empty environment variable counts as unset.
 */
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { parseDuration } from '../../common/duration.ts';
import { ConfigError } from '../../common/errors/errors.ts';

export type Env = Readonly<Record<string, string | undefined>>;

export interface QuotaServerConfig {
  help: false;
  /** `host:port` to listen on. */
  listen: string;
  /** A budgets YAML file or a folder of them. */
  budgets: string;
  /** The flag or variable each value came from, to name it in errors found after loading. */
  sources: { listen: string; budgets: string; metricsListen: string };
  store: 'memory' | 'redis';
  redisUrl: string;
  /** Prefix of every Redis key; the engine's own when unset. */
  redisKeyPrefix: string | undefined;
  /** Redis Cluster seed nodes; a single server at redisUrl when undefined. */
  redisCluster: Array<{ host: string; port: number }> | undefined;
  redisAutoPipelining: boolean;
  identity: 'none' | 'kubernetes';
  identityAudience: string;
  kubeconfig: string | undefined;
  shutdownGraceMs: number;
  reloadDebounceMs: number;
  deadlineMarginMs: number;
  /** `host:port` to serve Prometheus metrics on; none when undefined. */
  metricsListen: string | undefined;
}

export type LoadedConfig = { help: true } | QuotaServerConfig;

function duration(minMs: number, maxMs: number) {
  return z.string().transform((text, ctx) => {
    const ms = parseDuration(text);
    if (ms === undefined || ms < minMs || ms > maxMs) {
      ctx.addIssue({
        code: 'custom',
        message: `must be a duration from ${minMs}ms to ${maxMs}ms, such as 250ms or 10s`,
      });
      return z.NEVER;
    }
    return ms;
  });
}

const HOST_PORT = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?):(\d{1,5})$/;

/** Each option: its flag, environment variable, default, schema and help line. */
const OPTIONS = {
  listen: {
    env: 'TOKENLEASE_LISTEN',
    default: '127.0.0.1:7070',
    schema: z
      .string()
      .regex(HOST_PORT, 'must be host:port')
      .refine((value) => Number(HOST_PORT.exec(value)?.[3]) <= 65535, 'port must be 0 to 65535'),
    help: 'host:port to serve gRPC on (port 0: any free port)',
  },
  budgets: {
    env: 'TOKENLEASE_BUDGETS',
    default: undefined,
    schema: z.string().min(1, 'must name a YAML file or a folder of them, or be redis'),
    help: 'LLMProvider/LLMBudget YAML: a file or a folder of *.yaml, reloaded on change; or `redis`: what the controller publishes there (required)',
  },
  store: {
    env: 'TOKENLEASE_STORE',
    default: 'memory',
    schema: z.enum(['memory', 'redis'], { error: 'must be memory or redis' }),
    help: 'memory (one replica, state lost on exit) or redis',
  },
  'redis-url': {
    env: 'TOKENLEASE_REDIS_URL',
    default: 'redis://127.0.0.1:6379',
    schema: z.url({ protocol: /^rediss?$/, error: 'must be a redis:// or rediss:// URL' }),
    help: 'Redis to use with --store redis',
  },
  'redis-key-prefix': {
    env: 'TOKENLEASE_REDIS_KEY_PREFIX',
    default: undefined,
    schema: z
      .string()
      .min(1)
      .max(100)
      .regex(/^[^\s{}]+$/, 'must not contain spaces or braces'),
    help: 'prefix of every Redis key (to share one Redis between installations)',
  },
  'redis-cluster': {
    env: 'TOKENLEASE_REDIS_CLUSTER',
    default: undefined,
    schema: z
      .string()
      .regex(
        /^[A-Za-z0-9.-]+:\d{1,5}(,[A-Za-z0-9.-]+:\d{1,5})*$/,
        'must be a comma-separated list of host:port seed nodes',
      )
      .transform((text) =>
        text.split(',').map((node) => {
          const at = node.lastIndexOf(':');
          return { host: node.slice(0, at), port: Number(node.slice(at + 1)) };
        }),
      ),
    help: 'Redis Cluster seed nodes (host:port,...); used instead of --redis-url',
  },
  'redis-auto-pipelining': {
    env: 'TOKENLEASE_REDIS_AUTO_PIPELINING',
    default: 'true',
    schema: z
      .enum(['true', 'false'], { error: 'must be true or false' })
      .transform((value) => value === 'true'),
    help: 'batch concurrent Redis calls into pipelines (measured faster by bench:quota)',
  },
  identity: {
    env: 'TOKENLEASE_IDENTITY',
    default: 'none',
    schema: z.enum(['none', 'kubernetes'], { error: 'must be none or kubernetes' }),
    help: "kubernetes: an Acquire must carry its pod's ServiceAccount token, checked by TokenReview",
  },
  'identity-audience': {
    env: 'TOKENLEASE_IDENTITY_AUDIENCE',
    default: 'tokenlease',
    schema: z.string().min(1).max(253),
    help: 'the audience the ServiceAccount tokens must be issued for',
  },
  kubeconfig: {
    env: 'KUBECONFIG',
    default: undefined,
    schema: z.string().min(1),
    help: 'kubeconfig for --identity kubernetes (in-cluster credentials when unset)',
  },
  'shutdown-grace': {
    env: 'TOKENLEASE_SHUTDOWN_GRACE',
    default: '10s',
    schema: duration(0, 600_000),
    help: 'on SIGTERM/SIGINT, how long calls in progress may take to finish',
  },
  'reload-debounce': {
    env: 'TOKENLEASE_RELOAD_DEBOUNCE',
    default: '250ms',
    schema: duration(0, 60_000),
    help: 'quiet time after a budgets file changes before it is reloaded',
  },
  'deadline-margin': {
    env: 'TOKENLEASE_DEADLINE_MARGIN',
    default: '50ms',
    schema: duration(0, 10_000),
    help: "an Acquire stops waiting this long before the caller's deadline",
  },
  'metrics-listen': {
    env: 'TOKENLEASE_METRICS_LISTEN',
    default: undefined,
    schema: z
      .string()
      .regex(HOST_PORT, 'must be host:port')
      .refine((value) => Number(HOST_PORT.exec(value)?.[3]) <= 65535, 'port must be 0 to 65535'),
    help: 'host:port to serve Prometheus metrics on, at /metrics (off when unset)',
  },
} as const;

type OptionName = keyof typeof OPTIONS;

export const USAGE = `Usage: tokenlease quota-server [flags]

Serves tokenlease.v1.QuotaService and grpc.health.v1 over gRPC, granting leases against the limits
of the budgets YAML. Stops gracefully on SIGTERM or SIGINT.

Flags (each also read from the environment variable shown):
${Object.entries(OPTIONS)
  .map(
    ([name, option]) =>
      `  --${name.padEnd(18)} ${option.env.padEnd(28)} ${option.help}${option.default === undefined ? '' : ` [${option.default}]`}`,
  )
  .join('\n')}
${'  --help'.padEnd(51)} show this help
`;

/** parseArgs' errors, reworded to name the flag at fault. */
function argumentError(error: unknown): ConfigError {
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
      return new ConfigError(named, 'unexpected argument (quota-server takes only flags)');
    default:
      return new ConfigError('arguments', message);
  }
}

export function loadConfig(argv: readonly string[], env: Env): LoadedConfig {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        help: { type: 'boolean' },
        ...Object.fromEntries(Object.keys(OPTIONS).map((name) => [name, { type: 'string' as const }])),
      },
    }));
  } catch (error) {
    throw argumentError(error);
  }
  if (values.help) return { help: true };

  /** The option's value from its flag, else its variable, else its default; `source` names where from. */
  function read<N extends OptionName>(
    name: N,
  ): { value: z.output<(typeof OPTIONS)[N]['schema']> | undefined; source: string } {
    const option = OPTIONS[name];
    const flag = values[name];
    const fromEnv = env[option.env];
    const [raw, source] =
      typeof flag === 'string'
        ? [flag, `--${name}`]
        : fromEnv !== undefined && fromEnv !== ''
          ? [fromEnv, option.env]
          : [option.default, `--${name}`];
    if (raw === undefined) return { value: undefined, source };
    const result = option.schema.safeParse(raw);
    if (!result.success) throw new ConfigError(source, result.error.issues[0]?.message ?? 'invalid value');
    return { value: result.data as z.output<(typeof OPTIONS)[N]['schema']>, source };
  }

  // Checked in the order of --help, so the first bad value reported is the first one listed.
  const listen = read('listen');
  const budgets = read('budgets');
  if (budgets.value === undefined) {
    throw new ConfigError('--budgets', `is required (or set ${OPTIONS.budgets.env})`);
  }
  const metricsListen = read('metrics-listen');
  return {
    help: false,
    listen: listen.value!,
    budgets: budgets.value,
    sources: { listen: listen.source, budgets: budgets.source, metricsListen: metricsListen.source },
    store: read('store').value!,
    redisUrl: read('redis-url').value!,
    redisKeyPrefix: read('redis-key-prefix').value,
    redisCluster: read('redis-cluster').value,
    redisAutoPipelining: read('redis-auto-pipelining').value!,
    identity: read('identity').value!,
    identityAudience: read('identity-audience').value!,
    kubeconfig: read('kubeconfig').value,
    shutdownGraceMs: read('shutdown-grace').value!,
    reloadDebounceMs: read('reload-debounce').value!,
    deadlineMarginMs: read('deadline-margin').value!,
    metricsListen: metricsListen.value,
  };
}
