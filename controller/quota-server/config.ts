/**
 * quota-server's configuration: flags, each with an environment fallback, validated at start-up.
 * A bad value throws ConfigError naming the flag or variable it came from; the binary then stops.
 * An empty environment variable counts as unset.
 */
import { z } from 'zod';
import {
  durationSchema,
  hostPortSchema,
  optionsHelp,
  parseFlags,
  readOption,
  type Env,
  type OptionSpec,
} from '../../common/config/flags.ts';
import { ConfigError } from '../../common/errors/errors.ts';

export type { Env };

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

/** Each option: its flag, environment variable, default, schema and help line. */
const OPTIONS = {
  listen: {
    env: 'TOKENLEASE_LISTEN',
    default: '127.0.0.1:7070',
    schema: hostPortSchema,
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
    default: 'false',
    schema: z
      .enum(['true', 'false'], { error: 'must be true or false' })
      .transform((value) => value === 'true'),
    help: 'ioredis auto-pipelining (bench:quota measures it slower: the store batches its own calls)',
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
    schema: durationSchema(0, 600_000, '10s'),
    help: 'on SIGTERM/SIGINT, how long calls in progress may take to finish',
  },
  'reload-debounce': {
    env: 'TOKENLEASE_RELOAD_DEBOUNCE',
    default: '250ms',
    schema: durationSchema(0, 60_000, '250ms'),
    help: 'quiet time after a budgets file changes before it is reloaded',
  },
  'deadline-margin': {
    env: 'TOKENLEASE_DEADLINE_MARGIN',
    default: '50ms',
    schema: durationSchema(0, 10_000, '50ms'),
    help: "an Acquire stops waiting this long before the caller's deadline",
  },
  'metrics-listen': {
    env: 'TOKENLEASE_METRICS_LISTEN',
    default: undefined,
    schema: hostPortSchema,
    help: 'host:port to serve Prometheus metrics on, at /metrics (off when unset)',
  },
} as const satisfies Record<string, OptionSpec>;

export const USAGE = `Usage: tokenlease quota-server [flags]

Serves tokenlease.v1.QuotaService and grpc.health.v1 over gRPC, granting leases against the limits
of the budgets YAML. Stops gracefully on SIGTERM or SIGINT.

Flags (each also read from the environment variable shown):
${optionsHelp(OPTIONS, 18, 28)}
${'  --help'.padEnd(51)} show this help
`;

export function loadConfig(argv: readonly string[], env: Env): LoadedConfig {
  const values = parseFlags(
    argv,
    {
      help: { type: 'boolean' },
      ...Object.fromEntries(Object.keys(OPTIONS).map((name) => [name, { type: 'string' as const }])),
    },
    'quota-server',
  );
  if (values.help) return { help: true };
  const read = <N extends keyof typeof OPTIONS>(name: N) => readOption(OPTIONS, values, env, name);

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
