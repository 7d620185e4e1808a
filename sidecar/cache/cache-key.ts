/**
 * What an answer depends on, hashed: the operation, the wire form the client asked for, and the
 * request body canonicalised (object keys sorted, no whitespace, numbers as JSON writes them), less
 * the fields that do not change the answer.
 *
 * Left out of the hash: `user`, `safety_identifier`, `metadata`, `store`, `prompt_cache_key` (they
 * label or route the call, the model never sees them), and `stream` / `stream_options` (they change
 * only the wire form, which the form tag carries instead). The form is part of the key because
 * answers are replayed like for like: a stream is only ever answered with the bytes of a stream
 * the provider sent, never synthesised from a JSON answer, so a hit is always byte for byte what
 * the provider said. OpenAI streams with and without `include_usage` differ by one chunk and are
 * two forms.
 *
 * Provider and scope (budget, or a scope budgets share) are not hashed but make the store's
 * CacheKey.scope, so two budgets never meet in the store unless they share a scope.
 */
import { createHash } from 'node:crypto';
import type { Operation } from '../providers/routes.ts';
import type { CacheKey } from './cache-store.ts';

export const IGNORED_FIELDS: ReadonlySet<string> = new Set([
  'stream',
  'stream_options',
  'user',
  'safety_identifier',
  'metadata',
  'store',
  'prompt_cache_key',
]);

/** `json`: a JSON answer; `sse`: a stream; `sse+usage`: an OpenAI stream with its usage chunk. */
export type AnswerForm = 'json' | 'sse' | 'sse+usage';

/** JSON with object keys sorted at every level and no whitespace. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const object = value as Record<string, unknown>;
  const parts: string[] = [];
  for (const name of Object.keys(object).sort()) {
    if (object[name] === undefined) continue;
    parts.push(`${JSON.stringify(name)}:${canonicalJson(object[name])}`);
  }
  return `{${parts.join(',')}}`;
}

export function answerForm(operation: Operation, body: Record<string, unknown>, stream: boolean): AnswerForm {
  if (!stream) return 'json';
  if (operation !== 'chat' && operation !== 'completions') return 'sse';
  const options = body.stream_options;
  const withUsage =
    typeof options === 'object' &&
    options !== null &&
    (options as Record<string, unknown>).include_usage === true;
  return withUsage ? 'sse+usage' : 'sse';
}

export interface KeyInput {
  providerId: string;
  /** `b:<budget id>` or `s:<namespace>/<shared scope>`. */
  scope: string;
  operation: Operation;
  form: AnswerForm;
  body: Record<string, unknown>;
}

export function cacheKeyOf(input: KeyInput): CacheKey {
  const content: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(input.body)) {
    if (!IGNORED_FIELDS.has(name)) content[name] = value;
  }
  const id = createHash('sha256')
    .update(`${input.operation}\n${input.form}\n`)
    .update(canonicalJson(content))
    .digest('hex');
  return { scope: `${input.scope}@${input.providerId}`, id };
}
