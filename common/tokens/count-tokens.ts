/**
 * Prompt-token estimates for request bodies of the APIs the sidecar speaks. The sidecar reserves
 * with these numbers before a call and the simulated provider charges with the very same ones, so
 * the two agree to the token. Providers without a public tokenizer (GLM, DeepSeek, Qwen, Claude)
 * are estimated with o200k_base too (shared/docs/PROVIDERS.md, "Counting tokens before the call").
 *
 * Counting uses our compact o200k_base table (./o200k-base.ts): gpt-tokenizer's own o200k module
 * holds its ranks in a Map of 200k strings, ~70 MB of RSS per process; the table is ~5 MB and
 * counts the same, bar gpt-tokenizer's lost byte-order-mark tokens (o200k-base.test.ts compares).
 *
 * The counters never throw on odd shapes: validating a body is the caller's job, counting is best
 * effort over whatever text it finds.
 */
import { countO200kTokens } from './o200k-base.ts';

export const REQUEST_APIS = [
  'chat.completions',
  'completions',
  'embeddings',
  'responses',
  'messages',
] as const;
/** Which request body format: OpenAI's four endpoints, or Anthropic messages. */
export type RequestApi = (typeof REQUEST_APIS)[number];

/** Tokens OpenAI's chat format adds around every message (`<|start|>role<|message|>...<|end|>`). */
export const PER_MESSAGE_TOKENS = 3;
/** Tokens that prime the assistant's reply after the last message. */
export const REPLY_PRIMING_TOKENS = 3;
/** A flat estimate for a non-text part (image, audio, file): its bytes are not text tokens. */
export const MEDIA_PART_TOKENS = 85;

/** Texts shorter than this are counted every time: a lookup would save little. */
export const REMEMBERED_MIN_CHARS = 256;

/**
 * The counts of recent long texts, most recently used last, within a bound on the characters they
 * hold. A chat request resends its system prompt, its tool list and every earlier turn, so most
 * of a long prompt's text was counted for the call before; counting runs at ~20-25 MB/s (an 8 KB
 * system prompt is ~0.35 ms of CPU per call), a lookup hashes the string once, ~100x faster.
 */
export class RecentCounts {
  readonly #maxChars: number;
  readonly #counts = new Map<string, number>();
  #chars = 0;

  constructor(maxChars: number) {
    this.#maxChars = maxChars;
  }

  /** Texts remembered now. */
  get size(): number {
    return this.#counts.size;
  }

  count(text: string, counter: (text: string) => number): number {
    const known = this.#counts.get(text);
    if (known !== undefined) {
      this.#counts.delete(text);
      this.#counts.set(text, known);
      return known;
    }
    const tokens = counter(text);
    // One text may take at most a quarter of the bound, so a huge prompt does not flush the rest.
    if (text.length > this.#maxChars / 4) return tokens;
    this.#counts.set(text, tokens);
    this.#chars += text.length;
    for (const oldest of this.#counts.keys()) {
      if (this.#chars <= this.#maxChars) break;
      this.#counts.delete(oldest);
      this.#chars -= oldest.length;
    }
    return tokens;
  }
}

/** ~1M characters (1-2 MB of strings) of recent long texts, in each process that counts. */
const recent = new RecentCounts(1 << 20);

/** Tokens of one string, special-token markers counted as ordinary text. */
export function countTextTokens(text: string): number {
  return text.length < REMEMBERED_MIN_CHARS ? countO200kTokens(text) : recent.count(text, countO200kTokens);
}

/** The API a request path belongs to (`/v1/chat/completions` -> `chat.completions`), if any. */
export function requestApiForPath(path: string): RequestApi | undefined {
  const clean = path.split('?', 1)[0]!.replace(/\/+$/, '');
  if (clean.endsWith('/chat/completions')) return 'chat.completions';
  if (clean.endsWith('/completions')) return 'completions';
  if (clean.endsWith('/embeddings')) return 'embeddings';
  if (clean.endsWith('/responses')) return 'responses';
  if (clean.endsWith('/messages')) return 'messages';
  return undefined;
}

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function jsonTokens(value: unknown): number {
  return value === undefined || value === null ? 0 : countTextTokens(JSON.stringify(value));
}

const TEXT_PART_TYPES = new Set(['text', 'input_text', 'output_text', 'refusal', 'summary_text']);
const MEDIA_PART_TYPES = new Set([
  'image',
  'image_url',
  'input_image',
  'input_audio',
  'audio',
  'file',
  'input_file',
  'document',
]);

/** Content as OpenAI and Anthropic both send it: a string, or an array of typed parts. */
function contentTokens(content: unknown): number {
  if (typeof content === 'string') return countTextTokens(content);
  if (!Array.isArray(content)) return jsonTokens(content);
  let total = 0;
  for (const part of content) total += partTokens(part);
  return total;
}

function partTokens(part: unknown): number {
  if (typeof part === 'string') return countTextTokens(part);
  if (!isObject(part)) return jsonTokens(part);
  const type = typeof part.type === 'string' ? part.type : '';
  if (TEXT_PART_TYPES.has(type) && typeof part.text === 'string') return countTextTokens(part.text);
  if (MEDIA_PART_TYPES.has(type)) return MEDIA_PART_TOKENS;
  switch (type) {
    case 'tool_use':
    case 'server_tool_use':
      return countTextTokens(String(part.name ?? '')) + jsonTokens(part.input);
    case 'tool_result':
      return contentTokens(part.content);
    case 'thinking':
      return countTextTokens(String(part.thinking ?? ''));
    case 'redacted_thinking':
      return countTextTokens(String(part.data ?? ''));
    default:
      return jsonTokens(part);
  }
}

/** One chat message: fixed overhead + role + name + content + tool calls. */
function chatMessageTokens(message: unknown): number {
  if (!isObject(message)) return PER_MESSAGE_TOKENS + jsonTokens(message);
  let total = PER_MESSAGE_TOKENS;
  if (typeof message.role === 'string') total += countTextTokens(message.role);
  if (typeof message.name === 'string') total += 1 + countTextTokens(message.name);
  if (message.content !== undefined && message.content !== null) total += contentTokens(message.content);
  if (message.tool_calls !== undefined) total += jsonTokens(message.tool_calls);
  if (message.function_call !== undefined) total += jsonTokens(message.function_call);
  if (typeof message.tool_call_id === 'string') total += countTextTokens(message.tool_call_id);
  return total;
}

function chatTokens(body: Json): number {
  let total = REPLY_PRIMING_TOKENS;
  if (Array.isArray(body.messages)) for (const message of body.messages) total += chatMessageTokens(message);
  total += jsonTokens(body.tools) + jsonTokens(body.functions);
  return total;
}

/** `prompt` / `input` of completions and embeddings: text, texts, token ids, or arrays of token ids. */
function promptTokens(prompt: unknown): number {
  if (typeof prompt === 'string') return countTextTokens(prompt);
  if (!Array.isArray(prompt)) return 0;
  let total = 0;
  for (const item of prompt) {
    if (typeof item === 'string') total += countTextTokens(item);
    else if (typeof item === 'number') total += 1;
    else if (Array.isArray(item)) total += item.length;
  }
  return total;
}

function responsesItemTokens(item: unknown): number {
  if (typeof item === 'string') return countTextTokens(item);
  if (!isObject(item)) return jsonTokens(item);
  if (item.type === undefined || item.type === 'message') {
    return chatMessageTokens({ role: item.role, content: item.content });
  }
  if (item.type === 'function_call') {
    return countTextTokens(String(item.name ?? '')) + countTextTokens(String(item.arguments ?? ''));
  }
  if (item.type === 'function_call_output') return contentTokens(item.output);
  return jsonTokens(item);
}

function responsesTokens(body: Json): number {
  let total = 0;
  if (typeof body.instructions === 'string') total += PER_MESSAGE_TOKENS + countTextTokens(body.instructions);
  if (typeof body.input === 'string') total += PER_MESSAGE_TOKENS + countTextTokens(body.input);
  else if (Array.isArray(body.input)) for (const item of body.input) total += responsesItemTokens(item);
  return total + REPLY_PRIMING_TOKENS + jsonTokens(body.tools);
}

function messagesTokens(body: Json): number {
  let total = REPLY_PRIMING_TOKENS;
  if (body.system !== undefined && body.system !== null)
    total += PER_MESSAGE_TOKENS + contentTokens(body.system);
  if (Array.isArray(body.messages)) for (const message of body.messages) total += chatMessageTokens(message);
  return total + jsonTokens(body.tools);
}

/** Estimated prompt (input) tokens of a parsed request body. */
export function countPromptTokens(body: unknown, api: RequestApi): number {
  if (!isObject(body)) return 0;
  switch (api) {
    case 'chat.completions':
      return chatTokens(body);
    case 'completions':
      return promptTokens(body.prompt);
    case 'embeddings':
      return promptTokens(body.input);
    case 'responses':
      return responsesTokens(body);
    case 'messages':
      return messagesTokens(body);
  }
}

function positiveInt(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isInteger(value) && value > 0 ? value : undefined;
}

/**
 * The output the request allows itself: `max_completion_tokens` / `max_tokens` (chat, times `n`
 * choices, as OpenAI charges), `max_tokens` (completions, messages), `max_output_tokens`
 * (responses). 0 for embeddings, which produce no output tokens. Undefined when the body names
 * none: the caller applies its configured default allowance.
 */
export function maxOutputTokens(body: unknown, api: RequestApi): number | undefined {
  if (api === 'embeddings') return 0;
  if (!isObject(body)) return undefined;
  let max: number | undefined;
  switch (api) {
    case 'chat.completions':
      max = positiveInt(body.max_completion_tokens) ?? positiveInt(body.max_tokens);
      break;
    case 'completions':
    case 'messages':
      max = positiveInt(body.max_tokens);
      break;
    case 'responses':
      max = positiveInt(body.max_output_tokens);
      break;
  }
  const choices = api === 'messages' || api === 'responses' ? 1 : (positiveInt(body.n) ?? 1);
  return max === undefined ? undefined : max * choices;
}
