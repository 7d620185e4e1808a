/**
 * The real usage of a call, read from the provider's answer: the `usage` of a JSON body, or the
 * usage events of a stream (PROVIDERS.md, "Usage in responses"). When a stream breaks before
 * usage arrives, the text streamed so far is kept so it can be counted.
 */
import type { TokenUsage } from '../../common/quota-api.ts';
import type { Operation } from './routes.ts';
import type { SseEvent } from './sse-splitter.ts';

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function num(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? value : undefined;
}

/** OpenAI chat/completions/embeddings usage. */
function openaiUsage(usage: unknown): TokenUsage | undefined {
  if (!isObject(usage)) return undefined;
  const input = num(usage.prompt_tokens);
  if (input === undefined) return undefined;
  return { inputTokens: input, outputTokens: num(usage.completion_tokens) ?? 0 };
}

/** Responses API usage. */
function responsesUsage(usage: unknown): TokenUsage | undefined {
  if (!isObject(usage)) return undefined;
  const input = num(usage.input_tokens);
  if (input === undefined) return undefined;
  return { inputTokens: input, outputTokens: num(usage.output_tokens) ?? 0 };
}

/**
 * Anthropic input: uncached input plus what was written to the cache (both count towards the
 * input-token rate limit; cache reads do not).
 */
function anthropicInput(usage: Json): number | undefined {
  const input = num(usage.input_tokens);
  if (input === undefined) return undefined;
  return input + (num(usage.cache_creation_input_tokens) ?? 0);
}

/** Usage of a non-streamed JSON answer, or undefined when it states none. */
export function usageFromJson(operation: Operation, body: unknown): TokenUsage | undefined {
  if (!isObject(body)) return undefined;
  switch (operation) {
    case 'chat':
    case 'completions':
    case 'embeddings':
      return openaiUsage(body.usage);
    case 'responses':
      return responsesUsage(body.usage);
    case 'messages': {
      if (!isObject(body.usage)) return undefined;
      const input = anthropicInput(body.usage);
      return input === undefined
        ? undefined
        : { inputTokens: input, outputTokens: num(body.usage.output_tokens) ?? 0 };
    }
  }
}

const COLON = 0x3a;
const USAGE_KEY = '"usage"';
/** Characters of unparsed event data a stream holds before it reads them for their text. */
const MAX_DEFERRED_CHARS = 64 * 1024;

/** An event kept unparsed in its place in the stream's text. */
interface Unread {
  data: string;
}

function isJsonSpace(code: number): boolean {
  return code === 0x20 || code === 0x0a || code === 0x0d || code === 0x09;
}

/**
 * Whether an event's JSON may state usage: it has a `"usage"` key whose value is not null. A
 * string in JSON cannot hold an unescaped quote, so a `"usage"` followed by a colon is a key.
 * False means the event holds no usage; true means it has to be parsed to know.
 */
export function mayStateUsage(data: string): boolean {
  for (let at = data.indexOf(USAGE_KEY); at !== -1; at = data.indexOf(USAGE_KEY, at + USAGE_KEY.length)) {
    let i = at + USAGE_KEY.length;
    while (isJsonSpace(data.charCodeAt(i))) i++;
    if (data.charCodeAt(i) !== COLON) continue;
    i++;
    while (isJsonSpace(data.charCodeAt(i))) i++;
    if (!data.startsWith('null', i)) return true;
  }
  return false;
}

/**
 * Follows one stream's events. `accept` says whether an event goes on to the client: the only
 * event ever held back is the usage chunk we asked for on the client's behalf.
 *
 * Only events that may state usage are parsed as they pass. The others matter for their text
 * alone, which is needed only when the stream ends without usage (or breaks): their data is kept
 * as it came, in its place among the text, and read when the text is asked for or when more than
 * MAX_DEFERRED_CHARS are kept. A stream that ends with its usage, the usual case, parses only its
 * usage events (JSON.parse was most of the cost of an event).
 */
export class StreamUsage {
  readonly #operation: Operation;
  readonly #stripUsageChunk: boolean;
  #usage: TokenUsage | undefined;
  /** The streamed text in order: pieces read, and events kept unread. */
  #text: Array<string | Unread> = [];
  #stripped = false;
  /** Characters of the events kept unread (none is empty: those return before being kept). */
  #unreadChars = 0;

  constructor(operation: Operation, stripUsageChunk: boolean) {
    this.#operation = operation;
    this.#stripUsageChunk = stripUsageChunk;
  }

  /** The last usage the stream stated, if any. */
  get usage(): TokenUsage | undefined {
    return this.#usage;
  }

  /** Output text seen so far, to count when no usage arrives. */
  get text(): string {
    this.#readKept();
    return (this.#text as string[]).join('');
  }

  /**
   * What to settle. A stream that ended normally is trusted for what it stated; a broken one is
   * charged at least the text that was streamed (stated usage may be partial, e.g. Anthropic's
   * message_start before the final message_delta).
   */
  settleUsage(completed: boolean, estimatedInput: number, countTokens: (text: string) => number): TokenUsage {
    const stated = this.#usage;
    if (completed && stated !== undefined) return stated;
    return {
      inputTokens: stated?.inputTokens ?? estimatedInput,
      outputTokens: Math.max(stated?.outputTokens ?? 0, countTokens(this.text)),
    };
  }

  accept(event: SseEvent): boolean {
    const data = event.data;
    if (data === '' || data === '[DONE]') return true;
    if (!mayStateUsage(data)) {
      this.#text.push({ data });
      this.#unreadChars += data.length;
      if (this.#unreadChars > MAX_DEFERRED_CHARS) this.#readKept();
      return true;
    }
    return this.#read(data);
  }

  /** Reads the kept events in their places for their text (none of them states usage). */
  #readKept(): void {
    if (this.#unreadChars === 0) return;
    const parts = this.#text;
    this.#text = [];
    this.#unreadChars = 0;
    for (const part of parts) {
      if (typeof part === 'string') this.#text.push(part);
      else this.#read(part.data);
    }
  }

  /** Parses one event's data: its text and usage; false for the usage chunk to hold back. */
  #read(data: string): boolean {
    let json: unknown;
    try {
      json = JSON.parse(data);
    } catch {
      return true;
    }
    if (!isObject(json)) return true;
    switch (this.#operation) {
      case 'chat':
      case 'completions':
        return this.#openaiChunk(json);
      case 'responses':
        this.#responsesEvent(json);
        return true;
      case 'messages':
        this.#anthropicEvent(json);
        return true;
      case 'embeddings':
        return true;
    }
  }

  #openaiChunk(chunk: Json): boolean {
    const choices = Array.isArray(chunk.choices) ? chunk.choices : [];
    for (const choice of choices) {
      if (!isObject(choice)) continue;
      if (typeof choice.text === 'string') this.#text.push(choice.text);
      const delta = choice.delta;
      if (!isObject(delta)) continue;
      if (typeof delta.content === 'string') this.#text.push(delta.content);
      if (typeof delta.reasoning_content === 'string') this.#text.push(delta.reasoning_content);
      if (Array.isArray(delta.tool_calls)) {
        for (const call of delta.tool_calls) {
          const fn = isObject(call) && isObject(call.function) ? call.function : undefined;
          if (typeof fn?.arguments === 'string') this.#text.push(fn.arguments);
          if (typeof fn?.name === 'string') this.#text.push(fn.name);
        }
      }
    }
    // Some OpenAI-compatible providers put usage on every chunk: the last one wins.
    const usage = openaiUsage(chunk.usage);
    if (usage === undefined) return true;
    this.#usage = usage;
    if (this.#stripUsageChunk && !this.#stripped && choices.length === 0) {
      this.#stripped = true;
      return false;
    }
    return true;
  }

  #responsesEvent(event: Json): void {
    if (typeof event.delta === 'string' && typeof event.type === 'string' && event.type.endsWith('.delta')) {
      this.#text.push(event.delta);
    }
    const usage = isObject(event.response) ? responsesUsage(event.response.usage) : undefined;
    if (usage !== undefined) this.#usage = usage;
  }

  #anthropicEvent(event: Json): void {
    if (event.type === 'message_start' && isObject(event.message) && isObject(event.message.usage)) {
      const usage = event.message.usage;
      this.#usage = { inputTokens: anthropicInput(usage) ?? 0, outputTokens: num(usage.output_tokens) ?? 0 };
    } else if (event.type === 'message_delta' && isObject(event.usage)) {
      // Cumulative counts: keep the latest of each, never add.
      const usage = event.usage;
      this.#usage = {
        inputTokens: anthropicInput(usage) ?? this.#usage?.inputTokens ?? 0,
        outputTokens: num(usage.output_tokens) ?? this.#usage?.outputTokens ?? 0,
      };
    } else if (event.type === 'content_block_delta' && isObject(event.delta)) {
      const delta = event.delta;
      for (const field of ['text', 'partial_json', 'thinking'] as const) {
        if (typeof delta[field] === 'string') this.#text.push(delta[field]);
      }
    }
  }
}
