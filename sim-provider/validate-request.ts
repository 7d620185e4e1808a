/**
 * Request validation as the real APIs do it, reduced to what a client can get wrong in a way that
 * matters to a proxy: missing or mistyped required fields. Returns the first problem, or undefined.
 */
import type { RequestApi } from '../common/tokens/count-tokens.ts';

export interface RequestProblem {
  message: string;
  param: string;
}

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const problem = (param: string, message: string): RequestProblem => ({ param, message });

function positiveIntField(body: Json, field: string): RequestProblem | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    return problem(
      field,
      `Invalid '${field}': expected an integer of at least 1, got ${JSON.stringify(value)}.`,
    );
  }
  return undefined;
}

function commonFields(body: Json): RequestProblem | undefined {
  if (typeof body.model !== 'string' || body.model === '') {
    return problem(
      'model',
      body.model === undefined
        ? 'you must provide a model parameter'
        : "Invalid 'model': expected a non-empty string.",
    );
  }
  if (body.stream !== undefined && body.stream !== null && typeof body.stream !== 'boolean') {
    return problem('stream', "Invalid 'stream': expected a boolean.");
  }
  if (body.stream_options !== undefined && body.stream_options !== null && !isObject(body.stream_options)) {
    return problem('stream_options', "Invalid 'stream_options': expected an object.");
  }
  return undefined;
}

const CHAT_ROLES = new Set(['system', 'developer', 'user', 'assistant', 'tool', 'function']);

function chat(body: Json): RequestProblem | undefined {
  if (!Array.isArray(body.messages)) return problem('messages', "Missing required parameter: 'messages'.");
  if (body.messages.length === 0)
    return problem('messages', "Invalid 'messages': empty array. Expected an array with minimum length 1.");
  for (let i = 0; i < body.messages.length; i++) {
    const message: unknown = body.messages[i];
    if (!isObject(message) || typeof message.role !== 'string' || !CHAT_ROLES.has(message.role)) {
      return problem(
        `messages[${i}].role`,
        `Invalid value for 'messages[${i}].role': expected one of ${[...CHAT_ROLES].join(', ')}.`,
      );
    }
  }
  const n = body.n;
  if (n !== undefined && n !== null && (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 128)) {
    return problem('n', "Invalid 'n': expected an integer between 1 and 128.");
  }
  return positiveIntField(body, 'max_tokens') ?? positiveIntField(body, 'max_completion_tokens');
}

function textOrArray(body: Json, field: string): RequestProblem | undefined {
  const value = body[field];
  if (value === undefined || value === null) return problem(field, `Missing required parameter: '${field}'.`);
  if (typeof value === 'string')
    return value === '' && field === 'input'
      ? problem(field, `Invalid '${field}': empty string.`)
      : undefined;
  if (Array.isArray(value))
    return value.length === 0 ? problem(field, `Invalid '${field}': empty array.`) : undefined;
  return problem(field, `Invalid '${field}': expected a string or an array.`);
}

function anthropicMessages(body: Json): RequestProblem | undefined {
  if (body.max_tokens === undefined) return problem('max_tokens', 'max_tokens: Field required');
  const max = positiveIntField(body, 'max_tokens');
  if (max) return { param: 'max_tokens', message: 'max_tokens: Input should be an integer of at least 1' };
  if (!Array.isArray(body.messages)) return problem('messages', 'messages: Field required');
  if (body.messages.length === 0) return problem('messages', 'messages: at least one message is required');
  for (let i = 0; i < body.messages.length; i++) {
    const message: unknown = body.messages[i];
    if (!isObject(message) || (message.role !== 'user' && message.role !== 'assistant')) {
      return problem(`messages.${i}.role`, `messages.${i}.role: Input should be 'user' or 'assistant'`);
    }
    if (typeof message.content !== 'string' && !Array.isArray(message.content)) {
      return problem(`messages.${i}.content`, `messages.${i}.content: Field required`);
    }
  }
  if (body.system !== undefined && typeof body.system !== 'string' && !Array.isArray(body.system)) {
    return problem('system', 'system: Input should be a valid string or a list of text blocks');
  }
  return undefined;
}

/** The first problem with a parsed body for `api`, or undefined when it is acceptable. */
export function validateRequest(body: unknown, api: RequestApi): RequestProblem | undefined {
  if (!isObject(body)) return problem('body', 'The request body must be a JSON object.');
  const common = commonFields(body);
  if (common)
    return api === 'messages' && common.param === 'model'
      ? problem('model', 'model: Field required')
      : common;
  switch (api) {
    case 'chat.completions':
      return chat(body);
    case 'completions':
      return textOrArray(body, 'prompt') ?? positiveIntField(body, 'max_tokens');
    case 'embeddings':
      return textOrArray(body, 'input');
    case 'responses':
      return textOrArray(body, 'input') ?? positiveIntField(body, 'max_output_tokens');
    case 'messages':
      return anthropicMessages(body);
  }
}
