/**
 * Writes docs/configuration.md: every field of LLMProvider and LLMBudget (types, defaults and
 * bounds from the zod schemas in common/budgets/types.ts, descriptions from the comments above each
 * field there), then each command's flags from its own --help text. With --check, writes nothing and
 * fails when the file differs from a fresh generation (CI).
 */
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { z } from 'zod';
import { budgetSpecSchema, DURATION_META_KEY, providerSpecSchema } from '../common/budgets/types.ts';
import { formatDuration } from '../common/duration.ts';
import { USAGE as STATUS_USAGE } from '../cli/status/config.ts';
import { USAGE as QUOTA_SERVER_USAGE } from '../controller/quota-server/config.ts';
import { USAGE as DEMO_USAGE } from '../demo/config.ts';
import { USAGE as SIDECAR_USAGE } from '../sidecar/main.ts';
import { HELP as SIM_PROVIDER_HELP } from '../sim-provider/config.ts';

const TYPES_FILE = fileURLToPath(new URL('../common/budgets/types.ts', import.meta.url));
const OUT = fileURLToPath(new URL('../docs/configuration.md', import.meta.url));

type JsonSchema = {
  type?: string;
  enum?: unknown[];
  default?: unknown;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  anyOf?: JsonSchema[];
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  minLength?: number;
  maxLength?: number;
  maxItems?: number;
  pattern?: string;
  format?: string;
  additionalProperties?: JsonSchema | boolean;
  [DURATION_META_KEY]?: { minMs: number; maxMs: number };
};

/**
 * The comment above each property of each `z.object({...})` in types.ts, keyed by the object's
 * sorted property names (which identify it in the JSON schema too) and the property name.
 */
function fieldComments(source: string): Map<string, string> {
  const file = ts.createSourceFile(TYPES_FILE, source, ts.ScriptTarget.Latest, true);
  const comments = new Map<string, string>();
  const visit = (node: ts.Node) => {
    if (
      ts.isCallExpression(node) &&
      ts.isPropertyAccessExpression(node.expression) &&
      node.expression.name.text === 'object' &&
      node.arguments[0] &&
      ts.isObjectLiteralExpression(node.arguments[0])
    ) {
      const properties = node.arguments[0].properties.filter(ts.isPropertyAssignment);
      const names = properties.map((property) => property.name.getText(file));
      const signature = [...names].sort().join(',');
      for (const property of properties) {
        const text = ts
          .getLeadingCommentRanges(source, property.getFullStart())
          ?.map((range) => source.slice(range.pos, range.end))
          .join('\n');
        if (!text) continue;
        const cleaned = text
          .replace(/^\s*\/\*\*?|\*\/\s*$/g, '')
          .split('\n')
          .map((line) => line.replace(/^\s*\*\s?|^\s*\/\/\s?/, '').trim())
          .filter((line) => line !== '')
          .join(' ');
        comments.set(`${signature}|${property.name.getText(file)}`, cleaned);
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(file);
  return comments;
}

/** For fields types.ts leaves uncommented (their meaning is in PRODUCT.md / PROVIDERS.md). */
const NOTES: Record<string, string> = {
  'provider.api': 'Wire format the sidecar speaks upstream (and serves to apps).',
  'provider.baseURL':
    'The provider endpoint; the API path is appended (`/chat/completions`, `/v1/messages`).',
  'provider.credentials':
    'Where the sidecar reads the provider key from (one of secretRef, file, env); apps never see it.',
  'provider.limits':
    'What the provider enforces; a lease reserves against every limit that applies, all or nothing.',
  'provider.limits[].dimension': 'What is counted; concurrency is requests in flight.',
  'provider.limits[].amount': 'How many per window (or at once, for concurrency).',
  'provider.failureMode':
    'When the quota service cannot be reached: refuse (closed), enforce a conservative local share (localShare), or pass calls unmetered (open).',
  'provider.adaptation.enabled': 'Learn from refusals and rate-limit headers.',
  'provider.adaptation.probeInterval': 'Time without a refusal before the effective limit steps back up.',
  'provider.adaptation.maxProbeInterval': 'Longest probe interval after repeated refused probes.',
  'budget.providerRef': 'The LLMProvider this budget draws on.',
  'budget.workloads': 'Which pods may use this budget (their ServiceAccounts, or a pod label selector).',
  'budget.priority':
    'Order of waiting calls within the budget; batch (0) is served only when no other budget waits.',
  'budget.caps': "The budget's own ceilings, applied on top of the provider's limits.",
  'budget.fallbacks': 'Providers to use, in order, when the one before cannot grant in time.',
  'budget.failureMode': "Overrides the provider's failureMode for this budget.",
};

function typeOf(schema: JsonSchema): string {
  if (schema.enum) return schema.enum.map((value) => `\`${String(value)}\``).join(' \\| ');
  if (schema.anyOf) return schema.anyOf.map(typeOf).join(' or ');
  if (schema[DURATION_META_KEY]) return 'duration';
  if (schema.type === 'array') return `list of ${schema.items ? typeOf(schema.items) : 'values'}`;
  if (schema.type === 'object' && !schema.properties) return 'map of string to string';
  if (schema.format === 'uri') return 'URL';
  return schema.type ?? 'any';
}

function boundsOf(schema: JsonSchema): string {
  const parts: string[] = [];
  const duration = schema[DURATION_META_KEY];
  if (duration) parts.push(`${formatDuration(duration.minMs)} to ${formatDuration(duration.maxMs)}`);
  if (schema.exclusiveMinimum !== undefined) parts.push(`> ${schema.exclusiveMinimum}`);
  if (schema.minimum !== undefined) parts.push(`>= ${schema.minimum}`);
  if (schema.maximum !== undefined) parts.push(`<= ${schema.maximum}`);
  if (schema.maxLength !== undefined) parts.push(`at most ${schema.maxLength} characters`);
  if (schema.maxItems !== undefined) parts.push(`at most ${schema.maxItems} items`);
  return parts.join(', ');
}

interface Row {
  path: string;
  type: string;
  required: boolean;
  default: string;
  bounds: string;
  description: string;
}

function rows(
  schema: JsonSchema,
  prefix: string,
  comments: Map<string, string>,
  out: Row[],
  kind: 'provider' | 'budget',
): Row[] {
  const properties = schema.properties ?? {};
  const signature = Object.keys(properties).sort().join(',');
  for (const [name, child] of Object.entries(properties)) {
    const path = `${prefix}${name}`;
    const element = child.type === 'array' && child.items?.properties ? child.items : undefined;
    out.push({
      path,
      type: element ? 'list of objects' : child.properties ? 'object' : typeOf(child),
      required: schema.required?.includes(name) === true && child.default === undefined,
      default: child.default === undefined ? '' : `\`${JSON.stringify(child.default)}\``,
      bounds: boundsOf(child),
      description: comments.get(`${signature}|${name}`) ?? NOTES[`${kind}.${path}`] ?? '',
    });
    if (child.properties) rows(child, `${path}.`, comments, out, kind);
    if (element) rows(element, `${path}[].`, comments, out, kind);
  }
  return out;
}

function table(list: Row[]): string {
  const escape = (text: string) => text.replace(/\|/g, '\\|');
  return [
    '| Field | Type | Required | Default | Bounds | Description |',
    '|---|---|---|---|---|---|',
    ...list.map(
      (row) =>
        `| \`${row.path}\` | ${row.type} | ${row.required ? 'yes' : ''} | ${row.default} | ${escape(row.bounds)} | ${escape(row.description)} |`,
    ),
  ].join('\n');
}

export async function generate(): Promise<string> {
  const comments = fieldComments(await readFile(TYPES_FILE, 'utf8'));
  const json = (schema: z.ZodType) =>
    z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as JsonSchema;
  const help = (title: string, text: string) =>
    `### \`tokenlease ${title}\`\n\n\`\`\`text\n${text.trimEnd()}\n\`\`\``;
  return `<!-- Generated by scripts/gen-config-reference.ts from common/budgets/types.ts and each command's --help. DO NOT EDIT: run \`npm run gen:config-reference\`. -->

# Configuration reference

## Budgets: LLMProvider and LLMBudget

Both are Kubernetes custom resources (\`apiVersion: tokenlease.io/v1alpha1\`) and, outside a
cluster, YAML documents in the files given to \`--budgets\`. Each has \`metadata.name\` and
\`metadata.namespace\` (default \`default\`); references without a namespace mean the referring
object's own. Durations are written \`250ms\`, \`1s\`, \`1m\`, \`5h\`, \`1d\`, \`1w\` or compounds such as
\`1m30s\`. Fields marked "yes" are required; unknown fields are refused.

### LLMProvider \`spec\`: one provider account

${table(rows(json(providerSpecSchema), '', comments, [], 'provider'))}

### LLMBudget \`spec\`: one tenant's share of a provider

${table(rows(json(budgetSpecSchema), '', comments, [], 'budget'))}

## Commands

Each binary reads its flags (and, where shown, environment variables) once at start-up and refuses
to start on a bad value, naming the flag: exit code 2.

${help('quota-server', QUOTA_SERVER_USAGE)}

${help('sidecar', SIDECAR_USAGE)}

${help('status', STATUS_USAGE)}

${help('demo', DEMO_USAGE)}

${help('sim-provider', SIM_PROVIDER_HELP)}
`;
}

const check = process.argv.includes('--check');
const text = await generate();
const current = await readFile(OUT, 'utf8').catch(() => '');
if (current === text) {
  console.log(`${OUT} is up to date`);
} else if (check) {
  console.error(`${OUT} is out of date: run npm run gen:config-reference`);
  process.exitCode = 1;
} else {
  await writeFile(OUT, text);
  console.log(`wrote ${OUT}`);
}
