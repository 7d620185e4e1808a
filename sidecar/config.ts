/**
 * The sidecar's configuration: flags, else TOKENLEASE_* environment variables, else defaults;
 * validated once at start-up. A bad value stops the sidecar with a ConfigError naming the field.
 */
import { z } from 'zod';
import { durationSchema, parseFlags } from '../common/config/flags.ts';
import { ConfigError } from '../common/errors/errors.ts';

export type QuotaTarget = { kind: 'embedded' } | { kind: 'grpc'; target: string };

export interface SidecarConfig {
  host: string;
  port: number;
  /** A budgets YAML file or folder. */
  budgetsPath: string;
  /** `namespace/name` of the LLMBudget this sidecar draws on. */
  budget: string;
  quota: QuotaTarget;
  defaultTimeoutMs: number;
  maxTimeoutMs: number;
  maxBodyBytes: number;
  connectTimeoutMs: number;
  headersTimeoutMs: number;
  bodyTimeoutMs: number;
  maxRetries: number;
  /** Fraction of each limit enforced locally in failure mode localShare. */
  localShare: number;
  probeIntervalMs: number;
  secretsDir: string;
  /** The workload's identity token for the quota service (a projected ServiceAccount token). */
  identityTokenFile: string | undefined;
  /** The shared response cache's Redis; undefined: a private in-memory cache. */
  cacheRedisUrl: string | undefined;
  /** Bound of the in-memory cache. */
  cacheMemoryMaxBytes: number;
  /** Spare leases kept per provider, model, budget and priority, with a remote quota service. */
  spareLeases: number;
  /** A spare lease no call took for this long is given back. */
  spareIdleMs: number;
  /** Environment for provider keys named by `credentials.env`. */
  env: Record<string, string | undefined>;
}

/** flag name -> [environment variable, default] */
const FIELDS = {
  listen: ['TOKENLEASE_LISTEN', '127.0.0.1:8089'],
  budgets: ['TOKENLEASE_BUDGETS', undefined],
  budget: ['TOKENLEASE_BUDGET', undefined],
  quota: ['TOKENLEASE_QUOTA', 'embedded'],
  'default-timeout': ['TOKENLEASE_DEFAULT_TIMEOUT', '30s'],
  'max-timeout': ['TOKENLEASE_MAX_TIMEOUT', '10m'],
  'max-body': ['TOKENLEASE_MAX_BODY', '4MiB'],
  'upstream-connect-timeout': ['TOKENLEASE_UPSTREAM_CONNECT_TIMEOUT', '10s'],
  'upstream-headers-timeout': ['TOKENLEASE_UPSTREAM_HEADERS_TIMEOUT', '5m'],
  'upstream-body-timeout': ['TOKENLEASE_UPSTREAM_BODY_TIMEOUT', '5m'],
  'max-retries': ['TOKENLEASE_MAX_RETRIES', '2'],
  'local-share': ['TOKENLEASE_LOCAL_SHARE', '0.25'],
  'probe-interval': ['TOKENLEASE_PROBE_INTERVAL', '2s'],
  'secrets-dir': ['TOKENLEASE_SECRETS_DIR', '/var/run/tokenlease/secrets'],
  'identity-token-file': ['TOKENLEASE_IDENTITY_TOKEN_FILE', undefined],
  'cache-redis': ['TOKENLEASE_CACHE_REDIS', undefined],
  'cache-memory-max': ['TOKENLEASE_CACHE_MEMORY_MAX', '64MiB'],
  'spare-leases': ['TOKENLEASE_SPARE_LEASES', '2'],
  'spare-idle': ['TOKENLEASE_SPARE_IDLE', '1s'],
} as const satisfies Record<string, readonly [string, string | undefined]>;
type Field = keyof typeof FIELDS;

const BYTE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  kb: 1e3,
  mb: 1e6,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
};

function bytes(text: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text.trim());
  const unit = match ? BYTE_UNITS[match[2]!.toLowerCase()] : undefined;
  return match && unit !== undefined ? Math.floor(Number(match[1]) * unit) : undefined;
}

const duration = (minMs: number, maxMs: number) => durationSchema(minMs, maxMs, '500ms, 30s or 5m');

const size = (min: number, max: number, example: string) =>
  z.string().transform((text, ctx) => {
    const value = bytes(text);
    if (value === undefined || value < min || value > max) {
      ctx.addIssue({
        code: 'custom',
        message: `must be a size between ${min} and ${max} bytes, such as ${example}`,
      });
      return z.NEVER;
    }
    return value;
  });

const schema = z.object({
  listen: z.string().transform((text, ctx) => {
    const match = /^(.+):(\d{1,5})$/.exec(text);
    const port = match ? Number(match[2]) : NaN;
    if (!match || port > 65535) {
      ctx.addIssue({
        code: 'custom',
        message: 'must be host:port, such as 127.0.0.1:8089 (port 0 picks a free one)',
      });
      return z.NEVER;
    }
    return { host: match[1]!.replace(/^\[(.*)\]$/, '$1'), port };
  }),
  budgets: z.string({ error: 'is required (a budgets YAML file or folder)' }).min(1),
  budget: z
    .string({ error: 'is required (namespace/name of the LLMBudget)' })
    .regex(/^[a-z0-9-]+\/[a-z0-9.-]+$/, 'must be namespace/name'),
  quota: z
    .string()
    .min(1)
    .transform((text): QuotaTarget =>
      text === 'embedded' ? { kind: 'embedded' } : { kind: 'grpc', target: text },
    ),
  'default-timeout': duration(0, 3_600_000),
  'max-timeout': duration(0, 3_600_000),
  'max-body': z.string().transform((text, ctx) => {
    const value = bytes(text);
    if (value === undefined || value < 1024 || value > 1024 ** 3) {
      ctx.addIssue({ code: 'custom', message: 'must be a size between 1KiB and 1GiB, such as 4MiB' });
      return z.NEVER;
    }
    return value;
  }),
  'upstream-connect-timeout': duration(1, 600_000),
  'upstream-headers-timeout': duration(1, 3_600_000),
  'upstream-body-timeout': duration(1, 3_600_000),
  'max-retries': z.coerce.number().int().min(0).max(10),
  'local-share': z.coerce.number().gt(0).max(1),
  'probe-interval': duration(10, 600_000),
  'secrets-dir': z.string().min(1),
  'identity-token-file': z.string().min(1).optional(),
  'cache-redis': z
    .string()
    .regex(/^rediss?:\/\/.+/, 'must be a redis:// or rediss:// URL')
    .optional(),
  'cache-memory-max': size(1024 * 1024, 64 * 1024 ** 3, '64MiB'),
  'spare-leases': z.coerce.number().int().min(0).max(16),
  'spare-idle': duration(10, 60_000),
});

/** The one reader of the sidecar's flags and environment. */
export function loadConfig(argv: readonly string[], env: Record<string, string | undefined>): SidecarConfig {
  const options = Object.fromEntries(Object.keys(FIELDS).map((name) => [name, { type: 'string' as const }]));
  const values = parseFlags(argv, options, 'sidecar');
  const raw: Partial<Record<Field, string>> = {};
  for (const [name, [variable, fallback]] of Object.entries(FIELDS) as Array<
    [Field, readonly [string, string | undefined]]
  >) {
    const value = values[name] ?? env[variable] ?? fallback;
    if (typeof value === 'string') raw[name] = value;
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const field = String(issue.path[0] ?? 'config');
    const variable = FIELDS[field as Field]?.[0];
    throw new ConfigError(`--${field}${variable ? ` (${variable})` : ''}`, issue.message);
  }
  const config = parsed.data;
  if (config['default-timeout'] > config['max-timeout']) {
    throw new ConfigError('--default-timeout', 'must not exceed --max-timeout');
  }
  return {
    host: config.listen.host,
    port: config.listen.port,
    budgetsPath: config.budgets,
    budget: config.budget,
    quota: config.quota,
    defaultTimeoutMs: config['default-timeout'],
    maxTimeoutMs: config['max-timeout'],
    maxBodyBytes: config['max-body'],
    connectTimeoutMs: config['upstream-connect-timeout'],
    headersTimeoutMs: config['upstream-headers-timeout'],
    bodyTimeoutMs: config['upstream-body-timeout'],
    maxRetries: config['max-retries'],
    localShare: config['local-share'],
    probeIntervalMs: config['probe-interval'],
    secretsDir: config['secrets-dir'],
    identityTokenFile: config['identity-token-file'],
    cacheRedisUrl: config['cache-redis'],
    cacheMemoryMaxBytes: config['cache-memory-max'],
    spareLeases: config['spare-leases'],
    spareIdleMs: config['spare-idle'],
    env,
  };
}
