/**
 * What the sidecar needs from a request body before it can ask for a lease: the model, whether
 * it streams, the output allowance and the prompt-token estimate (common/tokens, the same count
 * the simulated provider charges). Also rewrites an OpenAI stream to include usage when the
 * client did not ask, so that we can settle.
 */
import { InvalidRequestError } from '../../common/errors/errors.ts';
import { countPromptTokens, type RequestApi } from '../../common/tokens/count-tokens.ts';
import type { Operation } from './routes.ts';

const REQUEST_API: Record<Operation, RequestApi> = {
  chat: 'chat.completions',
  completions: 'completions',
  embeddings: 'embeddings',
  responses: 'responses',
  messages: 'messages',
};

export interface CallRequest {
  model: string;
  stream: boolean;
  /** The body's own output bound (`max_tokens`, `max_completion_tokens`, `max_output_tokens`), times `n`. */
  maxOutputTokens: number | undefined;
  /** Estimated prompt tokens, counted when first read: a call answered from the cache never is. */
  readonly inputTokens: number;
  /** The bytes to send upstream: the client's own unless include_usage had to be added. */
  body: Buffer;
  /** We added `stream_options.include_usage`: remove the extra usage chunk from the stream. */
  stripUsageChunk: boolean;
}

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function optionalCount(body: Json, field: string): number | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) {
    throw new InvalidRequestError(field, 'must be a non-negative integer');
  }
  return value;
}

function requireArray(body: Json, field: string): void {
  if (!Array.isArray(body[field])) throw new InvalidRequestError(field, 'must be an array');
}

function requirePresent(body: Json, field: string): void {
  if (body[field] === undefined || body[field] === null) throw new InvalidRequestError(field, 'is required');
}

function requireModel(body: Json): string {
  const model = body.model;
  if (model === undefined) throw new InvalidRequestError('model', 'is required');
  if (typeof model !== 'string' || model === '' || model.length > 200) {
    throw new InvalidRequestError('model', 'must be a non-empty string of at most 200 characters');
  }
  return model;
}

function streamFlag(body: Json): boolean {
  const stream = body.stream;
  if (stream === undefined || stream === null) return false;
  if (typeof stream !== 'boolean') throw new InvalidRequestError('stream', 'must be a boolean');
  return stream;
}

/** Parses a JSON body already known to be an object. `raw` is sent as is when nothing changes. */
export function parseCallRequest(operation: Operation, json: unknown, raw: Buffer): CallRequest {
  if (!isObject(json)) throw new InvalidRequestError('body', 'must be a JSON object');
  const model = requireModel(json);
  const stream = operation === 'embeddings' ? false : streamFlag(json);
  let maxOutputTokens: number | undefined;
  let body = raw;
  let stripUsageChunk = false;

  switch (operation) {
    case 'chat':
    case 'completions': {
      if (operation === 'chat') requireArray(json, 'messages');
      else requirePresent(json, 'prompt');
      const max =
        (operation === 'chat' ? optionalCount(json, 'max_completion_tokens') : undefined) ??
        optionalCount(json, 'max_tokens');
      const n = optionalCount(json, 'n') ?? 1;
      maxOutputTokens = max === undefined ? undefined : max * Math.max(1, n);
      break;
    }
    case 'embeddings':
      requirePresent(json, 'input');
      maxOutputTokens = 0;
      break;
    case 'responses':
      maxOutputTokens = optionalCount(json, 'max_output_tokens');
      break;
    case 'messages':
      requireArray(json, 'messages');
      maxOutputTokens = optionalCount(json, 'max_tokens');
      break;
  }
  // OpenAI sends stream usage only when asked; ask for our own accounting, and hide it again.
  if (stream && (operation === 'chat' || operation === 'completions')) {
    const options = json.stream_options;
    if (options !== undefined && options !== null && !isObject(options)) {
      throw new InvalidRequestError('stream_options', 'must be an object');
    }
    if (!(isObject(options) && options.include_usage === true)) {
      body = Buffer.from(JSON.stringify({ ...json, stream_options: { ...options, include_usage: true } }));
      stripUsageChunk = true;
    }
  }

  const api = REQUEST_API[operation];
  let inputTokens: number | undefined;
  return {
    model,
    stream,
    maxOutputTokens,
    get inputTokens() {
      return (inputTokens ??= countPromptTokens(json, api));
    },
    body,
    stripUsageChunk,
  };
}
