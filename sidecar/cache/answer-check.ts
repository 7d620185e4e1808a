/**
 * Whether a successful answer may be stored: it must be whole (a stream that reached its end
 * marker) and not a refusal by the model (OpenAI `refusal` or `content_filter`, Anthropic
 * `stop_reason: refusal`, Responses refusal content). Errors never get here: only 2xx answers are
 * considered.
 */
import type { Operation } from '../providers/routes.ts';
import { SseSplitter } from '../providers/sse-splitter.ts';
import type { AnswerForm } from './cache-key.ts';

export type AnswerVerdict = 'ok' | 'partial' | 'refusal' | 'invalid';

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function parse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function openaiChoiceRefuses(choice: unknown): boolean {
  if (!isObject(choice)) return false;
  if (choice.finish_reason === 'content_filter') return true;
  const message = isObject(choice.message)
    ? choice.message
    : isObject(choice.delta)
      ? choice.delta
      : undefined;
  return typeof message?.refusal === 'string' && message.refusal !== '';
}

function responsesRefuses(response: unknown): boolean {
  if (!isObject(response) || !Array.isArray(response.output)) return false;
  return response.output.some(
    (item) =>
      isObject(item) &&
      Array.isArray(item.content) &&
      item.content.some((part) => isObject(part) && part.type === 'refusal'),
  );
}

function checkJson(operation: Operation, body: Buffer): AnswerVerdict {
  const json = parse(body.toString('utf8'));
  if (!isObject(json)) return 'invalid';
  switch (operation) {
    case 'chat':
    case 'completions':
      if (!Array.isArray(json.choices)) return 'invalid';
      return json.choices.some(openaiChoiceRefuses) ? 'refusal' : 'ok';
    case 'embeddings':
      return Array.isArray(json.data) ? 'ok' : 'invalid';
    case 'messages':
      if (json.type !== 'message') return 'invalid';
      return json.stop_reason === 'refusal' ? 'refusal' : 'ok';
    case 'responses':
      if (json.status !== 'completed') return 'partial';
      return responsesRefuses(json) ? 'refusal' : 'ok';
  }
}

function checkStream(operation: Operation, body: Buffer): AnswerVerdict {
  const splitter = new SseSplitter();
  const events = splitter.push(body);
  if (splitter.rest().toString('utf8').trim() !== '') return 'partial';
  let ended = false;
  for (const event of events) {
    if (event.event === 'error') return 'invalid';
    if (event.data === '[DONE]') {
      ended = operation === 'chat' || operation === 'completions';
      continue;
    }
    const json = event.data === '' ? undefined : parse(event.data);
    if (!isObject(json)) continue;
    if (json.type === 'error' || isObject(json.error)) return 'invalid';
    switch (operation) {
      case 'chat':
      case 'completions':
        if (Array.isArray(json.choices) && json.choices.some(openaiChoiceRefuses)) return 'refusal';
        break;
      case 'messages':
        if (json.type === 'message_stop') ended = true;
        if (json.type === 'message_delta' && isObject(json.delta) && json.delta.stop_reason === 'refusal') {
          return 'refusal';
        }
        break;
      case 'responses':
        if (typeof json.type === 'string' && json.type.startsWith('response.refusal')) return 'refusal';
        if (json.type === 'response.completed') {
          if (responsesRefuses(json.response)) return 'refusal';
          ended = true;
        }
        break;
      case 'embeddings':
        break;
    }
  }
  return ended ? 'ok' : 'partial';
}

export function checkAnswer(operation: Operation, form: AnswerForm, body: Buffer): AnswerVerdict {
  return form === 'json' ? checkJson(operation, body) : checkStream(operation, body);
}
