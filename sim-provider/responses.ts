/**
 * Successful responses in each API's own shape: JSON bodies, and SSE streams as ordered frames.
 * Each frame records how many output tokens it carries, so a stream cut short (a dropped
 * connection, a client that leaves) is charged exactly what was sent.
 */
import type { RequestApi } from '../common/tokens/count-tokens.ts';
import { embedding, embeddingBase64 } from './generate.ts';

export interface Completion {
  api: RequestApi;
  model: string;
  /** Response id (`chatcmpl-…`, `msg_…`, `resp_…`). */
  id: string;
  /** Epoch seconds. */
  created: number;
  promptTokens: number;
  /** The generated pieces (one token each) of every choice. */
  choices: string[][];
  /** True when generation stopped at the request's max tokens. */
  truncated: boolean;
  /** The parsed request. */
  request: Record<string, unknown>;
}

export interface Frame {
  text: string;
  /** Output tokens carried by this frame. */
  tokens: number;
}

export interface StreamOptions {
  /** OpenAI `stream_options.include_usage`: one extra chunk with `choices: []` before [DONE]. */
  includeUsage: boolean;
  /** Cumulative usage on every chunk (some OpenAI-compatible providers). */
  usageOnEveryChunk: boolean;
}

export function outputTokens(completion: Completion): number {
  let total = 0;
  for (const choice of completion.choices) total += choice.length;
  return total;
}

function openaiUsage(prompt: number, output: number) {
  return { prompt_tokens: prompt, completion_tokens: output, total_tokens: prompt + output };
}

function responsesUsage(prompt: number, output: number) {
  return {
    input_tokens: prompt,
    input_tokens_details: { cached_tokens: 0 },
    output_tokens: output,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: prompt + output,
  };
}

function anthropicUsage(input: number, output: number) {
  return {
    input_tokens: input,
    cache_creation_input_tokens: 0,
    cache_read_input_tokens: 0,
    output_tokens: output,
  };
}

const itemId = (completion: Completion) => `msg_${completion.id.replace(/^resp_/, '')}`;

function responseObject(
  completion: Completion,
  status: 'in_progress' | 'completed',
  text: string | undefined,
) {
  const output =
    text === undefined
      ? []
      : [
          {
            id: itemId(completion),
            type: 'message',
            status: 'completed',
            role: 'assistant',
            content: [{ type: 'output_text', text, annotations: [] }],
          },
        ];
  return {
    id: completion.id,
    object: 'response',
    created_at: completion.created,
    status,
    error: null,
    incomplete_details:
      completion.truncated && status === 'completed' ? { reason: 'max_output_tokens' } : null,
    instructions: completion.request.instructions ?? null,
    max_output_tokens: completion.request.max_output_tokens ?? null,
    model: completion.model,
    output,
    parallel_tool_calls: true,
    temperature: completion.request.temperature ?? 1,
    tool_choice: 'auto',
    tools: [],
    top_p: completion.request.top_p ?? 1,
    usage: status === 'completed' ? responsesUsage(completion.promptTokens, outputTokens(completion)) : null,
  };
}

/** The non-streaming body of a completion. */
export function completionBody(completion: Completion): unknown {
  const { model, id, created, promptTokens, choices } = completion;
  const output = outputTokens(completion);
  const finish = completion.truncated ? 'length' : 'stop';
  switch (completion.api) {
    case 'chat.completions':
      return {
        id,
        object: 'chat.completion',
        created,
        model,
        choices: choices.map((pieces, index) => ({
          index,
          message: { role: 'assistant', content: pieces.join(''), refusal: null, annotations: [] },
          logprobs: null,
          finish_reason: finish,
        })),
        usage: openaiUsage(promptTokens, output),
        system_fingerprint: 'fp_sim',
      };
    case 'completions':
      return {
        id,
        object: 'text_completion',
        created,
        model,
        choices: choices.map((pieces, index) => ({
          text: pieces.join(''),
          index,
          logprobs: null,
          finish_reason: finish,
        })),
        usage: openaiUsage(promptTokens, output),
      };
    case 'responses':
      return responseObject(completion, 'completed', choices[0]!.join(''));
    case 'messages':
      return {
        id,
        type: 'message',
        role: 'assistant',
        model,
        content: [{ type: 'text', text: choices[0]!.join('') }],
        stop_reason: completion.truncated ? 'max_tokens' : 'end_turn',
        stop_sequence: null,
        usage: anthropicUsage(promptTokens, output),
      };
    case 'embeddings':
      throw new TypeError('embeddings have no completion body; use embeddingsBody');
  }
}

/** The embeddings body: one vector per input, floats or base64 as asked. */
export function embeddingsBody(
  request: Record<string, unknown>,
  model: string,
  promptTokens: number,
  dimensions: number,
): unknown {
  const input = request.input;
  const items: unknown[] = Array.isArray(input) ? input : [input];
  const asBase64 = request.encoding_format === 'base64';
  const wanted =
    typeof request.dimensions === 'number' && request.dimensions > 0
      ? Math.min(request.dimensions, 4096)
      : dimensions;
  return {
    object: 'list',
    data: items.map((item, index) => {
      const vector = embedding(typeof item === 'string' ? item : JSON.stringify(item), wanted);
      return {
        object: 'embedding',
        index,
        embedding: asBase64 ? embeddingBase64(vector) : Array.from(vector),
      };
    }),
    model,
    usage: { prompt_tokens: promptTokens, total_tokens: promptTokens },
  };
}

const data = (payload: unknown): string => `data: ${JSON.stringify(payload)}\n\n`;
const event = (name: string, payload: unknown): string =>
  `event: ${name}\ndata: ${JSON.stringify(payload)}\n\n`;

function openaiFrames(completion: Completion, options: StreamOptions): Frame[] {
  const { id, created, model, promptTokens, choices } = completion;
  const chat = completion.api === 'chat.completions';
  const object = chat ? 'chat.completion.chunk' : 'text_completion';
  const finish = completion.truncated ? 'length' : 'stop';
  const frames: Frame[] = [];
  let sent = 0;
  // With include_usage every chunk carries `usage: null` except the final usage chunk.
  const usageField = () =>
    options.usageOnEveryChunk
      ? { usage: openaiUsage(promptTokens, sent) }
      : options.includeUsage
        ? { usage: null }
        : {};
  const chunk = (choice: Record<string, unknown>, tokens: number): Frame => {
    sent += tokens;
    const base = chat
      ? { id, object, created, model, system_fingerprint: 'fp_sim' }
      : { id, object, created, model };
    return { text: data({ ...base, choices: [choice], ...usageField() }), tokens };
  };
  choices.forEach((pieces, index) => {
    if (chat)
      frames.push(
        chunk(
          {
            index,
            delta: { role: 'assistant', content: '', refusal: null },
            logprobs: null,
            finish_reason: null,
          },
          0,
        ),
      );
    for (const piece of pieces) {
      frames.push(
        chat
          ? chunk({ index, delta: { content: piece }, logprobs: null, finish_reason: null }, 1)
          : chunk({ text: piece, index, logprobs: null, finish_reason: null }, 1),
      );
    }
    frames.push(
      chat
        ? chunk({ index, delta: {}, logprobs: null, finish_reason: finish }, 0)
        : chunk({ text: '', index, logprobs: null, finish_reason: finish }, 0),
    );
  });
  if (options.includeUsage) {
    const base = chat
      ? { id, object, created, model, system_fingerprint: 'fp_sim' }
      : { id, object, created, model };
    frames.push({ text: data({ ...base, choices: [], usage: openaiUsage(promptTokens, sent) }), tokens: 0 });
  }
  frames.push({ text: 'data: [DONE]\n\n', tokens: 0 });
  return frames;
}

function anthropicFrames(completion: Completion): Frame[] {
  const { id, model, promptTokens } = completion;
  const pieces = completion.choices[0]!;
  const frames: Frame[] = [
    {
      text: event('message_start', {
        type: 'message_start',
        message: {
          id,
          type: 'message',
          role: 'assistant',
          model,
          content: [],
          stop_reason: null,
          stop_sequence: null,
          usage: anthropicUsage(promptTokens, 1),
        },
      }),
      tokens: 0,
    },
    {
      text: event('content_block_start', {
        type: 'content_block_start',
        index: 0,
        content_block: { type: 'text', text: '' },
      }),
      tokens: 0,
    },
    { text: event('ping', { type: 'ping' }), tokens: 0 },
  ];
  for (const piece of pieces) {
    frames.push({
      text: event('content_block_delta', {
        type: 'content_block_delta',
        index: 0,
        delta: { type: 'text_delta', text: piece },
      }),
      tokens: 1,
    });
  }
  frames.push(
    { text: event('content_block_stop', { type: 'content_block_stop', index: 0 }), tokens: 0 },
    {
      text: event('message_delta', {
        type: 'message_delta',
        delta: { stop_reason: completion.truncated ? 'max_tokens' : 'end_turn', stop_sequence: null },
        usage: { output_tokens: pieces.length },
      }),
      tokens: 0,
    },
    { text: event('message_stop', { type: 'message_stop' }), tokens: 0 },
  );
  return frames;
}

function responsesFrames(completion: Completion): Frame[] {
  const pieces = completion.choices[0]!;
  const item = itemId(completion);
  let sequence = 0;
  const frame = (type: string, payload: Record<string, unknown>, tokens = 0): Frame => ({
    text: event(type, { type, sequence_number: sequence++, ...payload }),
    tokens,
  });
  const text = pieces.join('');
  const part = (value: string) => ({ type: 'output_text', text: value, annotations: [] });
  const frames: Frame[] = [
    frame('response.created', { response: responseObject(completion, 'in_progress', undefined) }),
    frame('response.in_progress', { response: responseObject(completion, 'in_progress', undefined) }),
    frame('response.output_item.added', {
      output_index: 0,
      item: { id: item, type: 'message', status: 'in_progress', role: 'assistant', content: [] },
    }),
    frame('response.content_part.added', {
      item_id: item,
      output_index: 0,
      content_index: 0,
      part: part(''),
    }),
  ];
  for (const piece of pieces) {
    frames.push(
      frame(
        'response.output_text.delta',
        { item_id: item, output_index: 0, content_index: 0, delta: piece, logprobs: [] },
        1,
      ),
    );
  }
  frames.push(
    frame('response.output_text.done', {
      item_id: item,
      output_index: 0,
      content_index: 0,
      text,
      logprobs: [],
    }),
    frame('response.content_part.done', {
      item_id: item,
      output_index: 0,
      content_index: 0,
      part: part(text),
    }),
    frame('response.output_item.done', {
      output_index: 0,
      item: { id: item, type: 'message', status: 'completed', role: 'assistant', content: [part(text)] },
    }),
    frame('response.completed', { response: responseObject(completion, 'completed', text) }),
  );
  return frames;
}

/** The SSE frames of a streamed completion, in order. */
export function streamFrames(completion: Completion, options: StreamOptions): Frame[] {
  switch (completion.api) {
    case 'chat.completions':
    case 'completions':
      return openaiFrames(completion, options);
    case 'messages':
      return anthropicFrames(completion);
    case 'responses':
      return responsesFrames(completion);
    case 'embeddings':
      throw new TypeError('embeddings cannot be streamed');
  }
}
