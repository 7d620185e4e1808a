/**
 * `tokenlease controller` configuration: flags, each with an environment fallback, validated once
 * at start-up. A bad value throws ConfigError naming the flag or variable it came from, and the
 * binary does not start. An empty environment variable counts as unset.
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { namespaceSchema } from '../../common/budgets/types.ts';
import {
  durationSchema,
  hostPortPartsSchema,
  optionsHelp,
  parseFlags,
  readOption,
  type Env,
  type OptionSpec,
} from '../../common/config/flags.ts';
import { ConfigError } from '../../common/errors/errors.ts';

export type { Env };

const hostPort = hostPortPartsSchema;
const dnsName = z
  .string()
  .min(1)
  .max(253)
  .regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, 'must be a lowercase DNS name');

const OPTIONS = {
  kubeconfig: {
    env: 'TOKENLEASE_KUBECONFIG',
    default: undefined,
    schema: z.string().min(1),
    help: 'kubeconfig file (default: in-cluster, then ~/.kube/config)',
  },
  namespace: {
    env: 'TOKENLEASE_NAMESPACE',
    default: 'tokenlease-system',
    schema: namespaceSchema,
    help: "the controller's namespace (Lease, certificate Secret)",
  },
  identity: {
    env: 'TOKENLEASE_IDENTITY',
    default: undefined,
    schema: z.string().min(1).max(128),
    help: 'leader-election identity (default: hostname + random suffix)',
  },
  'redis-url': {
    env: 'TOKENLEASE_REDIS_URL',
    default: 'redis://127.0.0.1:6379',
    schema: z.url({ protocol: /^rediss?$/, error: 'must be a redis:// or rediss:// URL' }),
    help: "the quota service's Redis",
  },
  'redis-key-prefix': {
    env: 'TOKENLEASE_REDIS_KEY_PREFIX',
    default: 'tl:',
    schema: z
      .string()
      .min(1)
      .max(100)
      .regex(/^[^\s{}]+$/, 'must not contain spaces or braces'),
    help: 'prefix of every Redis key (same as the quota service)',
  },
  'leader-elect-lease-name': {
    env: 'TOKENLEASE_LEADER_ELECT_LEASE_NAME',
    default: 'tokenlease-controller',
    schema: dnsName,
    help: 'name of the coordination.k8s.io Lease',
  },
  'leader-elect-lease-duration': {
    env: 'TOKENLEASE_LEADER_ELECT_LEASE_DURATION',
    default: '60s',
    schema: durationSchema(1_000, 600_000, '60s'),
    help: 'how long a leader that stopped renewing keeps the Lease',
  },
  'leader-elect-renew-deadline': {
    env: 'TOKENLEASE_LEADER_ELECT_RENEW_DEADLINE',
    default: '40s',
    schema: durationSchema(500, 600_000, '40s'),
    help: 'the leader gives up leading when it could not renew for this long',
  },
  'leader-elect-retry-period': {
    env: 'TOKENLEASE_LEADER_ELECT_RETRY_PERIOD',
    default: '15s',
    schema: durationSchema(100, 600_000, '15s'),
    help: 'how often candidates try and the leader renews',
  },
  'status-interval': {
    env: 'TOKENLEASE_STATUS_INTERVAL',
    default: '10s',
    schema: durationSchema(0, 3_600_000, '10s'),
    help: 'usage-only status changes are written at most this often per object',
  },
  resync: {
    env: 'TOKENLEASE_RESYNC',
    default: '15s',
    schema: durationSchema(100, 3_600_000, '15s'),
    help: 'how often Ready objects are reconciled to refresh their usage',
  },
  workers: {
    env: 'TOKENLEASE_WORKERS',
    default: '2',
    schema: z.coerce.number().int().min(1).max(64),
    help: 'reconciles run at once',
  },
  'webhook-listen': {
    env: 'TOKENLEASE_WEBHOOK_LISTEN',
    default: '0.0.0.0:9443',
    schema: z.union([z.literal('off'), hostPort]),
    help: 'host:port of the sidecar-injection webhook (HTTPS), or off',
  },
  'webhook-service': {
    env: 'TOKENLEASE_WEBHOOK_SERVICE',
    default: 'tokenlease-controller',
    schema: dnsName,
    help: 'Service the API server calls the webhook through (names the certificate)',
  },
  'webhook-config-name': {
    env: 'TOKENLEASE_WEBHOOK_CONFIG_NAME',
    default: 'tokenlease-sidecar-injector',
    schema: dnsName,
    help: 'MutatingWebhookConfiguration whose caBundle the controller keeps',
  },
  'webhook-cert-secret': {
    env: 'TOKENLEASE_WEBHOOK_CERT_SECRET',
    default: 'tokenlease-webhook-cert',
    schema: dnsName,
    help: 'Secret holding the webhook serving certificate',
  },
  'sidecar-image': {
    env: 'TOKENLEASE_SIDECAR_IMAGE',
    default: 'ghcr.io/tokenlease/tokenlease:0.1.0',
    schema: z.string().min(1).max(512),
    help: 'image of the injected sidecar',
  },
  'sidecar-port': {
    env: 'TOKENLEASE_SIDECAR_PORT',
    default: '8089',
    schema: z.coerce.number().int().min(1).max(65535),
    help: 'port the sidecar listens on inside the pod',
  },
  'quota-address': {
    env: 'TOKENLEASE_QUOTA_ADDRESS',
    default: undefined,
    schema: hostPort,
    help: 'host:port of the quota service, for injected sidecars (default: tokenlease-quota.<namespace>:7070)',
  },
  'token-audience': {
    env: 'TOKENLEASE_TOKEN_AUDIENCE',
    default: 'tokenlease',
    schema: z.string().min(1).max(253),
    help: "audience of sidecars' projected ServiceAccount tokens",
  },
} as const satisfies Record<string, OptionSpec>;

type OptionName = keyof typeof OPTIONS;

export interface ControllerConfig {
  help: false;
  kubeconfig: string | undefined;
  namespace: string;
  identity: string;
  redisUrl: string;
  keyPrefix: string;
  leaderElection: { name: string; leaseDurationMs: number; renewDeadlineMs: number; retryPeriodMs: number };
  statusIntervalMs: number;
  resyncMs: number;
  workers: number;
  webhook:
    | { enabled: false }
    | {
        enabled: true;
        listen: { host: string; port: number };
        service: string;
        configName: string;
        certSecret: string;
        sidecarImage: string;
        sidecarPort: number;
        quotaAddress: string;
        audience: string;
      };
}

export const USAGE = `Usage: tokenlease controller [flags]

Reconciles LLMProvider and LLMBudget into the quota service's store (while it leads), writes their
status and Events, and serves the sidecar-injection webhook. Stops on SIGTERM or SIGINT.

Flags (each also read from the environment variable shown):
${optionsHelp(OPTIONS, 28, 40)}
  --help${' '.repeat(70)}show this help
`;

export function loadConfig(argv: readonly string[], env: Env): ControllerConfig | { help: true } {
  const values = parseFlags(
    argv,
    {
      help: { type: 'boolean' },
      ...Object.fromEntries(Object.keys(OPTIONS).map((n) => [n, { type: 'string' as const }])),
    },
    'controller',
  );
  if (values.help) return { help: true };

  const sources: Partial<Record<OptionName, string>> = {};
  function read<N extends OptionName>(name: N) {
    const { value, source } = readOption(OPTIONS, values, env, name);
    sources[name] = source;
    return value;
  }

  const namespace = read('namespace')!;
  const leaseDurationMs = read('leader-elect-lease-duration')!;
  const renewDeadlineMs = read('leader-elect-renew-deadline')!;
  const retryPeriodMs = read('leader-elect-retry-period')!;
  if (renewDeadlineMs >= leaseDurationMs) {
    throw new ConfigError(
      sources['leader-elect-renew-deadline']!,
      'must be shorter than --leader-elect-lease-duration',
    );
  }
  if (retryPeriodMs >= renewDeadlineMs) {
    throw new ConfigError(
      sources['leader-elect-retry-period']!,
      'must be shorter than --leader-elect-renew-deadline',
    );
  }
  const listen = read('webhook-listen')!;
  const quota = read('quota-address');
  return {
    help: false,
    kubeconfig: read('kubeconfig'),
    namespace,
    identity: read('identity') ?? `${hostname()}-${randomBytes(3).toString('hex')}`,
    redisUrl: read('redis-url')!,
    keyPrefix: read('redis-key-prefix')!,
    leaderElection: {
      name: read('leader-elect-lease-name')!,
      leaseDurationMs,
      renewDeadlineMs,
      retryPeriodMs,
    },
    statusIntervalMs: read('status-interval')!,
    resyncMs: read('resync')!,
    workers: read('workers')!,
    webhook:
      listen === 'off'
        ? { enabled: false }
        : {
            enabled: true,
            listen,
            service: read('webhook-service')!,
            configName: read('webhook-config-name')!,
            certSecret: read('webhook-cert-secret')!,
            sidecarImage: read('sidecar-image')!,
            sidecarPort: read('sidecar-port')!,
            quotaAddress: quota ? `${quota.host}:${quota.port}` : `tokenlease-quota.${namespace}:7070`,
            audience: read('token-audience')!,
          },
  };
}
