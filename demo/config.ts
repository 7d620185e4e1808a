/**
 * `tokenlease demo`'s flags, validated once: a bad value throws ConfigError naming the flag.
 * The demo reads no environment variables; `env` is taken for the dispatcher's signature.
 */
import { resolve } from 'node:path';
import { z } from 'zod';
import { parseFlags, parseValue } from '../common/config/flags.ts';
import { parseDuration } from '../common/duration.ts';

export const DEMO_FLAVOURS = ['glm', 'openai', 'anthropic', 'deepseek'] as const;
export type DemoFlavour = (typeof DEMO_FLAVOURS)[number];

export const MAX_TENANTS = 8;

export interface DemoConfig {
  help: boolean;
  /** Length of each of the two load phases (with tokenlease, then without). */
  durationMs: number;
  tenants: number;
  flavour: DemoFlavour;
  /** The quota service's store: undefined for the embedded in-memory one. */
  redisUrl: string | undefined;
  /** Absolute path of the SVG picture. */
  picturePath: string;
  /** A running `tokenlease sim-provider` to use instead of an embedded one. */
  providerUrl: string | undefined;
}

export const USAGE = `Usage: tokenlease demo [flags]

Runs the whole path on this machine -- the quota service (gRPC, on an in-memory store or Redis),
one sidecar per tenant, and a simulated provider that enforces its limits exactly -- under a load of
several tenants at about three times the provider's limit, using the official SDKs. Then replays
the same load with the clients calling the provider directly (with the SDK's own retries), and
prints both side by side: upstream refusals, completed calls, use of the binding limit, fairness.

Flags:
  --duration 20s               length of each of the two load phases (1s to 10m); the whole run
                               takes about twice this plus a few seconds
  --tenants 3                  tenants (1 to ${MAX_TENANTS}); the first three come from the example
                               budgets (weights 2, 1, 1), more are added with weight 1
  --provider-flavour glm       glm | openai | anthropic | deepseek: which example account
                               (examples/demo/<flavour>.yaml) the simulated provider plays
  --redis URL                  run the quota service on this Redis (redis://host:port) instead of
                               the embedded in-memory store; keys get a unique prefix, removed after
  --picture PATH               where to write the SVG picture [./tokenlease-demo.svg]
  --provider-url URL           use a running \`tokenlease sim-provider\` at URL (its limits are set
                               through its admin API) instead of starting one in process
  --help                       show this help

Output: a live table while it runs (plain lines when stdout is not a terminal), the side-by-side
summary, and as the last line one JSON object ("kind": "tokenlease-demo-summary").
`;

const durationFlag = z.string().transform((text, ctx) => {
  // A bare number is seconds: `--duration 10`.
  const ms = /^\d+(\.\d+)?$/.test(text.trim()) ? Number(text) * 1000 : parseDuration(text);
  if (ms === undefined || ms < 1_000 || ms > 600_000) {
    ctx.addIssue({
      code: 'custom',
      message: 'must be a duration from 1s to 10m, such as 20s or 20 (seconds)',
    });
    return z.NEVER;
  }
  return ms;
});

const FLAGS = {
  duration: durationFlag,
  tenants: z
    .string()
    .regex(/^\d+$/, 'must be a whole number')
    .transform(Number)
    .pipe(z.number().int().min(1, 'must be at least 1').max(MAX_TENANTS, `must be at most ${MAX_TENANTS}`)),
  'provider-flavour': z.enum(DEMO_FLAVOURS, { error: `must be one of ${DEMO_FLAVOURS.join(', ')}` }),
  redis: z.url({ protocol: /^rediss?$/, error: 'must be a redis:// or rediss:// URL' }),
  picture: z
    .string()
    .min(1, 'must name a file')
    .refine((path) => path.endsWith('.svg'), 'must end in .svg'),
  'provider-url': z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }),
} as const;

type FlagName = keyof typeof FLAGS;

function parse<N extends FlagName>(name: N, value: string): z.output<(typeof FLAGS)[N]> {
  return parseValue(FLAGS[name], value, `--${name}`) as z.output<(typeof FLAGS)[N]>;
}

export function loadConfig(
  argv: readonly string[],
  _env: Readonly<Record<string, string | undefined>>,
  cwd: string,
): DemoConfig {
  const values = parseFlags(
    argv,
    {
      ...Object.fromEntries(Object.keys(FLAGS).map((name) => [name, { type: 'string' as const }])),
      // The American spelling, as the budgets' `flavor` field is spelled.
      'provider-flavor': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    'demo',
  );
  const text = (name: string) => values[name] as string | undefined;
  const flavourText = text('provider-flavour') ?? text('provider-flavor');
  const duration = text('duration');
  const tenants = text('tenants');
  const redis = text('redis');
  const picture = text('picture');
  const providerUrl = text('provider-url');
  return {
    help: values.help === true,
    durationMs: duration === undefined ? 20_000 : parse('duration', duration),
    tenants: tenants === undefined ? 3 : parse('tenants', tenants),
    flavour: flavourText === undefined ? 'glm' : parse('provider-flavour', flavourText),
    redisUrl: redis === undefined ? undefined : parse('redis', redis),
    picturePath: resolve(cwd, picture === undefined ? 'tokenlease-demo.svg' : parse('picture', picture)),
    providerUrl:
      providerUrl === undefined ? undefined : parse('provider-url', providerUrl).replace(/\/+$/, ''),
  };
}
