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
  return appendCanonical('', value, undefined);
}

/**
 * Appends the canonical JSON of `value` to `out`, leaving out the top-level fields in `skip`. One
 * growing string rather than an array and a join per level: this runs for every cacheable call,
 * hits included.
 */
function appendCanonical(out: string, value: unknown, skip: ReadonlySet<string> | undefined): string {
  if (value === null || typeof value !== 'object') return out + (JSON.stringify(value) ?? 'null');
  if (Array.isArray(value)) {
    out += '[';
    for (let i = 0; i < value.length; i++)
      out = appendCanonical(i === 0 ? out : `${out},`, value[i], undefined);
    return `${out}]`;
  }
  const object = value as Record<string, unknown>;
  const names = Object.keys(object).sort();
  let separator = '{';
  for (const name of names) {
    const item = object[name];
    if (item === undefined || skip?.has(name)) continue;
    out = appendCanonical(`${out}${separator}${JSON.stringify(name)}:`, item, undefined);
    separator = ',';
  }
  return separator === '{' ? `${out}{}` : `${out}}`;
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
  const id = createHash('sha256')
    .update(appendCanonical(`${input.operation}\n${input.form}\n`, input.body, IGNORED_FIELDS))
    .digest('hex');
  return { scope: `${input.scope}@${input.providerId}`, id };
}
