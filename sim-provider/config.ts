/**
 * The simulated provider's configuration: one zod schema for the settings (used by the CLI, the
 * programmatic API and the runtime admin API alike) and the one `loadConfig(argv, env)` of the
 * `tokenlease sim-provider` binary. Invalid values throw ConfigError naming the field; nothing
 * falls back to a default.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { DIMENSIONS, FLAVORS, limitSchema, type Limit } from '../common/budgets/types.ts';
import { parseFlags } from '../common/config/flags.ts';
import { ConfigError } from '../common/errors/errors.ts';

export const FAULTS = ['overload', 'modelOverload', 'balance', 'serverError', 'drop', 'hang'] as const;
/** Faults that can be injected on demand: refusals answered before admission, or broken responses after it. */
export type Fault = (typeof FAULTS)[number];

const rate = z.number().min(0).max(1);

/** Everything that can change while the server runs (`setConfig`, `POST /_sim/config`). */
export const simSettingsSchema = z
  .object({
    /** Whose refusals, headers and error bodies to imitate. */
    flavor: z.enum(FLAVORS).default('openai'),
    limits: z.array(limitSchema).max(64).default([]),
    /** Models served; every model when empty. */
    models: z.array(z.string().min(1).max(200)).max(200).default([]),
    /** Output tokens charged at arrival when a request names no max tokens. */
    defaultMaxOutputTokens: z.number().int().positive().max(10_000_000).default(4096),
    /** Tokens generated per choice, at most the request's max tokens. */
    outputTokens: z.number().int().min(0).max(100_000).default(16),
    /** Put cumulative usage on every streamed chunk, as some OpenAI-compatible providers do. */
    usageOnEveryChunk: z.boolean().default(false),
    /** Delay before the first byte of a response. */
    latencyMs: z.number().min(0).max(600_000).default(0),
    /** Delay per generated token (streaming speed; non-streaming responses wait for all of them). */
    perTokenMs: z.number().min(0).max(60_000).default(0),
    /**
     * While a response is delayed, send its status and headers at once and then a keep-alive line
     * this often (blank lines before a JSON body, `: keep-alive` comments in a stream), as DeepSeek
     * does; 0 turns it off.
     */
    keepAliveMs: z.number().min(0).max(600_000).default(0),
    /** Fraction of requests answered with a 500 before admission. */
    errorRate: rate.default(0),
    /** Fraction of requests refused as platform overload (Anthropic 529, GLM 1305, DeepSeek 503). */
    overloadRate: rate.default(0),
    /** Fraction of admitted requests whose connection is cut (mid-stream when streaming). */
    dropRate: rate.default(0),
    /** Fraction of admitted requests never answered. */
    hangRate: rate.default(0),
    /** Refuse every request for lack of balance (OpenAI insufficient_quota, GLM 1113, DeepSeek 402). */
    balanceExhausted: z.boolean().default(false),
    embeddingDimensions: z.number().int().min(1).max(4096).default(16),
    /** Seed of the fault dice, so a run's faults repeat. */
    seed: z.number().int().default(1),
  })
  .strict()
  .superRefine((settings, ctx) => {
    const seen = new Set<string>();
    settings.limits.forEach((limit, index) => {
      const key = `${limit.dimension}|${limit.window ?? ''}|${limit.model ?? ''}`;
      if (seen.has(key))
        ctx.addIssue({
          code: 'custom',
          path: ['limits', index],
          message: 'duplicates an earlier limit (same dimension, window and model)',
        });
      seen.add(key);
    });
  });
export type SimSettings = z.output<typeof simSettingsSchema>;
export type SimSettingsInput = z.input<typeof simSettingsSchema>;

/** Start-up only settings of the server process. */
export const serverSettingsSchema = z
  .object({
    host: z.string().min(1).default('127.0.0.1'),
    port: z.number().int().min(0).max(65_535).default(0),
    /** Larger bodies get 413. */
    maxBodyBytes: z
      .number()
      .int()
      .positive()
      .default(10 * 1024 * 1024),
    /** Ledger entries kept (counters stay exact beyond it). */
    ledgerCapacity: z.number().int().positive().default(100_000),
  })
  .strict();
export type ServerSettings = z.output<typeof serverSettingsSchema>;

function fieldOf(path: readonly PropertyKey[]): string {
  return (
    path
      .map((part) => (typeof part === 'number' ? `[${part}]` : `.${String(part)}`))
      .join('')
      .replace(/^\./, '') || 'config'
  );
}

/** Parses with `schema`, turning the first issue into a ConfigError naming its field. */
export function parseSettings<S extends z.ZodType>(
  schema: S,
  value: unknown,
  names: Record<string, string> = {},
): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const field = fieldOf(issue.path);
  const top = String(issue.path[0] ?? '');
  throw new ConfigError(names[top] ? `${names[top]}${field.slice(top.length)}` : field, issue.message);
}

const INLINE_LIMIT = /^([A-Za-z]+)(?:@([^=]+))?=(\d+)(?:\/([0-9a-z.]+))?$/;

/**
 * Limits written inline: `requests=60/1m,concurrency=5,totalTokens@glm-4.6=1000000/1m`
 * (`dimension[@model]=amount[/window]`, comma-separated).
 */
export function parseInlineLimits(text: string, field = 'limits'): Limit[] {
  return text
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part !== '')
    .map((part, index) => {
      const match = INLINE_LIMIT.exec(part);
      if (!match)
        throw new ConfigError(
          `${field}[${index}]`,
          `expected dimension[@model]=amount[/window] such as requests=60/1m, got ${JSON.stringify(part)}`,
        );
      const [, dimension, model, amount, window] = match;
      if (!(DIMENSIONS as readonly string[]).includes(dimension!)) {
        throw new ConfigError(
          `${field}[${index}].dimension`,
          `must be one of ${DIMENSIONS.join(', ')}, got ${JSON.stringify(dimension)}`,
        );
      }
      const limit: Record<string, unknown> = { dimension, amount: Number(amount) };
      if (window !== undefined) limit.window = window;
      if (model !== undefined) limit.model = model;
      return limit as Limit;
    });
}

/** Limits from a JSON or YAML file: a list, `{limits: [...]}`, or an LLMProvider (`spec.limits`). */
export function readLimitsFile(path: string, field = 'limits'): unknown[] {
  let value: unknown;
  try {
    const text = readFileSync(path, 'utf8');
    value = path.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (error) {
    throw new ConfigError(field, `cannot read limits from ${path}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  const record = value as { limits?: unknown; spec?: { limits?: unknown } } | null;
  const limits = Array.isArray(value) ? value : (record?.limits ?? record?.spec?.limits);
  if (!Array.isArray(limits))
    throw new ConfigError(
      field,
      `${path} holds no list of limits (a list, {limits: [...]}, or an LLMProvider)`,
    );
  return limits;
}

export interface SimProviderConfig {
  server: ServerSettings;
  settings: SimSettings;
  help: boolean;
}

/** Flags, their setting, and how to read them. */
const FLAGS = {
  host: { setting: 'host', kind: 'string' },
  port: { setting: 'port', kind: 'int' },
  flavor: { setting: 'flavor', kind: 'string' },
  limits: { setting: 'limits', kind: 'limits' },
  models: { setting: 'models', kind: 'list' },
  'default-max-output-tokens': { setting: 'defaultMaxOutputTokens', kind: 'number' },
  'output-tokens': { setting: 'outputTokens', kind: 'number' },
  'usage-on-every-chunk': { setting: 'usageOnEveryChunk', kind: 'boolean' },
  'latency-ms': { setting: 'latencyMs', kind: 'number' },
  'per-token-ms': { setting: 'perTokenMs', kind: 'number' },
  'tokens-per-second': { setting: 'perTokenMs', kind: 'tokensPerSecond' },
  'keep-alive-ms': { setting: 'keepAliveMs', kind: 'number' },
  'error-rate': { setting: 'errorRate', kind: 'number' },
  'overload-rate': { setting: 'overloadRate', kind: 'number' },
  'drop-rate': { setting: 'dropRate', kind: 'number' },
  'hang-rate': { setting: 'hangRate', kind: 'number' },
  'balance-exhausted': { setting: 'balanceExhausted', kind: 'boolean' },
  'embedding-dimensions': { setting: 'embeddingDimensions', kind: 'number' },
  seed: { setting: 'seed', kind: 'number' },
  'max-body-bytes': { setting: 'maxBodyBytes', kind: 'number' },
  'ledger-capacity': { setting: 'ledgerCapacity', kind: 'number' },
} as const;
type FlagName = keyof typeof FLAGS;

const SERVER_KEYS = new Set(Object.keys(serverSettingsSchema.shape));

export const HELP = `Usage: tokenlease sim-provider [flags]

A simulated LLM provider (OpenAI-compatible and Anthropic APIs) that enforces its limits exactly,
refuses like the chosen provider, and keeps a ledger (GET /_sim/ledger).

Flags (each also read from TOKENLEASE_SIM_<FLAG>, e.g. TOKENLEASE_SIM_LATENCY_MS; flags win):
  --host HOST                     listen address (default 127.0.0.1)
  --port N                        listen port, 0 for any free one (default 0)
  --flavor NAME                   ${FLAVORS.join(' | ')} (default openai)
  --limits SPEC|FILE              inline "requests=60/1m,concurrency=5,totalTokens@glm-4.6=1000000/1m"
                                  or a JSON/YAML file: a list of limits, {limits: [...]}, or an LLMProvider
  --models A,B                    models served (default: any)
  --default-max-output-tokens N   output charged when a request names no max tokens (default 4096)
  --output-tokens N               tokens generated per choice, at most max tokens (default 16)
  --usage-on-every-chunk          cumulative usage on every streamed chunk
  --latency-ms N                  delay before the first byte (default 0)
  --per-token-ms N                delay per generated token (default 0)
  --tokens-per-second N           the same, as a rate
  --keep-alive-ms N               while delayed, keep-alive lines this often, as DeepSeek (default 0: off)
  --error-rate F                  fraction answered 500 (default 0)
  --overload-rate F               fraction refused as overloaded (default 0)
  --drop-rate F                   fraction of admitted requests whose connection is cut (default 0)
  --hang-rate F                   fraction of admitted requests never answered (default 0)
  --balance-exhausted             refuse everything for lack of balance
  --embedding-dimensions N        embedding length (default 16)
  --seed N                        seed of the fault dice (default 1)
  --max-body-bytes N              larger bodies get 413 (default 10 MiB)
  --ledger-capacity N             ledger entries kept; counters stay exact (default 100000)
  --help                          this text

Admin API: GET /_sim/ledger[?since=ID], GET /_sim/summary, GET|POST /_sim/config,
POST /_sim/reset, POST /_sim/inject {"fault": "${FAULTS.join('|')}", "count": N}.
`;

function envName(flag: string): string {
  return `TOKENLEASE_SIM_${flag.toUpperCase().replaceAll('-', '_')}`;
}

function readFlag(flag: FlagName, raw: string | boolean, field: string): unknown {
  const spec = FLAGS[flag];
  if (spec.kind === 'boolean') {
    if (typeof raw === 'boolean') return raw;
    if (raw === 'true' || raw === '1') return true;
    if (raw === 'false' || raw === '0') return false;
    throw new ConfigError(field, `expected true or false, got ${JSON.stringify(raw)}`);
  }
  const text = String(raw).trim();
  switch (spec.kind) {
    case 'string':
      return text;
    case 'list':
      return text
        .split(',')
        .map((item) => item.trim())
        .filter((item) => item !== '');
    case 'limits':
      return text.includes('=') ? parseInlineLimits(text, field) : readLimitsFile(text, field);
    case 'int':
    case 'number':
    case 'tokensPerSecond': {
      const value = Number(text);
      if (text === '' || !Number.isFinite(value))
        throw new ConfigError(field, `expected a number, got ${JSON.stringify(text)}`);
      if (spec.kind === 'tokensPerSecond') {
        if (value <= 0) throw new ConfigError(field, 'must be greater than 0');
        return 1000 / value;
      }
      return value;
    }
  }
}

/** The sim-provider binary's configuration from its flags and environment. */
export function loadConfig(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>> = process.env,
): SimProviderConfig {
  const options = Object.fromEntries(
    Object.entries(FLAGS).map(([flag, spec]) => [
      flag,
      { type: spec.kind === 'boolean' ? ('boolean' as const) : ('string' as const) },
    ]),
  );
  const values = parseFlags(argv, { ...options, help: { type: 'boolean' } }, 'sim-provider');
  const server: Record<string, unknown> = {};
  const settings: Record<string, unknown> = {};
  const names: Record<string, string> = {};
  for (const flag of Object.keys(FLAGS) as FlagName[]) {
    const fromFlag = values[flag];
    const fromEnv = env[envName(flag)];
    const raw = fromFlag ?? fromEnv;
    if (raw === undefined) continue;
    const setting = FLAGS[flag].setting;
    if (names[setting])
      throw new ConfigError(`--${flag}`, `conflicts with ${names[setting]}; give one of them`);
    names[setting] = fromFlag === undefined ? envName(flag) : `--${flag}`;
    (SERVER_KEYS.has(setting) ? server : settings)[setting] = readFlag(flag, raw, names[setting]);
  }
  return {
    server: parseSettings(serverSettingsSchema, server, names),
    settings: parseSettings(simSettingsSchema, settings, names),
    help: values.help === true,
  };
}
