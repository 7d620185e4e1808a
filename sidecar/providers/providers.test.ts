import { describe, expect, it } from 'vitest';
import { InvalidRequestError } from '../../common/errors/errors.ts';
import { countPromptTokens } from '../../common/tokens/count-tokens.ts';
import { parseCallRequest } from './parse-request.ts';
import { matchRoute } from './routes.ts';
import { parseEventFields, SseSplitter } from './sse-splitter.ts';
import { mayStateUsage, StreamUsage, usageFromJson } from './usage.ts';

const words = (text: string) => (text === '' ? 0 : text.split(/\s+/).length);

function parse(operation: Parameters<typeof parseCallRequest>[0], json: unknown) {
  const raw = Buffer.from(JSON.stringify(json));
  return parseCallRequest(operation, json, raw);
}

describe('matchRoute', () => {
  it.each([
    ['/v1/chat/completions', 'openai', 'chat', '/chat/completions'],
    ['/chat/completions', 'openai', 'chat', '/chat/completions'],
    ['/v1/completions', 'openai', 'completions', '/completions'],
    ['/v1/embeddings/', 'openai', 'embeddings', '/embeddings'],
    ['/v1/responses', 'openai', 'responses', '/responses'],
    ['/v1/messages', 'anthropic', 'messages', '/v1/messages'],
  ])('%s', (path, api, operation, upstreamPath) => {
    expect(matchRoute('POST', path)).toEqual({ api, operation, upstreamPath });
  });

  it('serves nothing else', () => {
    expect(matchRoute('GET', '/v1/chat/completions')).toBeUndefined();
    expect(matchRoute('POST', '/v1/models')).toBeUndefined();
    expect(matchRoute('POST', '/v2/chat/completions')).toBeUndefined();
  });
});

describe('parseCallRequest', () => {
  it('reads a chat request and leaves its bytes alone when not streaming', () => {
    const json = { model: 'm', messages: [{ role: 'user', content: 'hello there' }], max_tokens: 10, n: 2 };
    const call = parse('chat', json);
    expect(call).toMatchObject({ model: 'm', stream: false, maxOutputTokens: 20, stripUsageChunk: false });
    expect(call.inputTokens).toBe(countPromptTokens(json, 'chat.completions'));
    expect(call.body.toString()).toBe(JSON.stringify(json));
  });

  it('prefers max_completion_tokens', () => {
    const call = parse('chat', { model: 'm', max_tokens: 5, max_completion_tokens: 7, messages: [] });
    expect(call.maxOutputTokens).toBe(7);
  });

  it('adds include_usage to a stream that did not ask, keeping other stream options', () => {
    const call = parse('chat', { model: 'm', messages: [], stream: true, stream_options: { foo: 1 } });
    expect(call.stripUsageChunk).toBe(true);
    expect(JSON.parse(call.body.toString()).stream_options).toEqual({ foo: 1, include_usage: true });
  });

  it('does not touch a stream that asked for usage', () => {
    const json = { model: 'm', messages: [], stream: true, stream_options: { include_usage: true } };
    const call = parse('chat', json);
    expect(call.stripUsageChunk).toBe(false);
    expect(call.body.toString()).toBe(JSON.stringify(json));
  });

  it('reads embeddings, responses and Anthropic messages', () => {
    expect(parse('embeddings', { model: 'e', input: ['a b', 'c'] })).toMatchObject({
      maxOutputTokens: 0,
      inputTokens: countPromptTokens({ input: ['a b', 'c'] }, 'embeddings'),
    });
    expect(
      parse('responses', {
        model: 'r',
        instructions: 'be brief',
        input: 'hi',
        max_output_tokens: 9,
        stream: true,
      }),
    ).toMatchObject({
      stream: true,
      maxOutputTokens: 9,
      stripUsageChunk: false,
    });
    expect(
      parse('messages', {
        model: 'c',
        system: [{ type: 'text', text: 'sys' }],
        messages: [{ role: 'user', content: 'yo' }],
        max_tokens: 3,
      }),
    ).toMatchObject({ maxOutputTokens: 3 });
  });

  it.each([
    ['chat', { messages: [] }, 'model'],
    ['chat', { model: 1, messages: [] }, 'model'],
    ['chat', { model: 'm' }, 'messages'],
    ['chat', { model: 'm', messages: [], max_tokens: -1 }, 'max_tokens'],
    ['chat', { model: 'm', messages: [], stream: 'yes' }, 'stream'],
    ['embeddings', { model: 'm' }, 'input'],
    ['completions', { model: 'm' }, 'prompt'],
    ['messages', { model: 'm', messages: {} }, 'messages'],
  ] as const)('%s %j is refused naming %s', (operation, json, field) => {
    expect(() => parse(operation, json)).toThrow(InvalidRequestError);
    try {
      parse(operation, json);
    } catch (error) {
      expect((error as InvalidRequestError).field).toBe(field);
    }
  });

  it('refuses a body that is not an object', () => {
    expect(() => parseCallRequest('chat', [1], Buffer.from('[1]'))).toThrow(InvalidRequestError);
  });
});

describe('SseSplitter', () => {
  const stream = 'event: a\ndata: {"x":1}\n\n: comment\ndata: line1\ndata: line2\n\r\ndata: [DONE]\n\n';

  it('splits events without changing a byte, however the bytes are chunked', () => {
    const bytes = Buffer.from(stream);
    for (let size = 1; size <= bytes.length; size++) {
      const splitter = new SseSplitter();
      const events = [];
      for (let at = 0; at < bytes.length; at += size)
        events.push(...splitter.push(bytes.subarray(at, at + size)));
      expect(Buffer.concat(events.map((e) => e.raw)).toString()).toBe(stream);
      expect(events.map((e) => [e.event, e.data])).toEqual([
        ['a', '{"x":1}'],
        ['', 'line1\nline2'],
        ['', '[DONE]'],
      ]);
      expect(splitter.rest().length).toBe(0);
    }
  });

  it('keeps a multi-byte character split across chunks whole', () => {
    const bytes = Buffer.from('data: 你好\n\n');
    const splitter = new SseSplitter();
    expect(splitter.push(bytes.subarray(0, 8))).toEqual([]);
    expect(splitter.push(bytes.subarray(8))[0]?.data).toBe('你好');
  });

  it('reads the fields of an event as the SSE format defines them', () => {
    expect(parseEventFields('data: {"a":1}\n\n')).toEqual({ event: '', data: '{"a":1}' });
    expect(parseEventFields('event: x\r\ndata:one\rdata:  two\r\n\r\n')).toEqual({
      event: 'x',
      data: 'one\n two',
    });
    expect(parseEventFields(': comment\nevent: a\nevent: b\ndata\nid: 7\ndata: c:d\n\n')).toEqual({
      event: 'b',
      data: '\nc:d',
    });
    expect(parseEventFields(': only a comment\n\n')).toEqual({ event: '', data: '' });
  });

  it('keeps an unfinished event as the rest', () => {
    const splitter = new SseSplitter();
    splitter.push(Buffer.from('data: a\n\ndata: b'));
    expect(splitter.rest().toString()).toBe('data: b');
  });
});

function feed(usage: StreamUsage, text: string): string {
  const kept = new SseSplitter().push(Buffer.from(text)).filter((event) => usage.accept(event));
  return Buffer.concat(kept.map((e) => e.raw)).toString();
}

describe('usage', () => {
  it('reads JSON usage of each API', () => {
    expect(usageFromJson('chat', { usage: { prompt_tokens: 3, completion_tokens: 4 } })).toEqual({
      inputTokens: 3,
      outputTokens: 4,
    });
    expect(usageFromJson('embeddings', { usage: { prompt_tokens: 3, total_tokens: 3 } })).toEqual({
      inputTokens: 3,
      outputTokens: 0,
    });
    expect(usageFromJson('responses', { usage: { input_tokens: 5, output_tokens: 6 } })).toEqual({
      inputTokens: 5,
      outputTokens: 6,
    });
    expect(
      usageFromJson('messages', {
        usage: { input_tokens: 5, cache_creation_input_tokens: 2, output_tokens: 6 },
      }),
    ).toEqual({
      inputTokens: 7,
      outputTokens: 6,
    });
    expect(usageFromJson('chat', { choices: [] })).toBeUndefined();
  });

  const chat =
    'data: {"choices":[{"delta":{"content":"one two"}}],"usage":null}\n\n' +
    'data: {"choices":[{"delta":{"content":" three"}}],"usage":null}\n\n';
  const usageChunk = 'data: {"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":3}}\n\n';

  it('strips only the usage chunk it asked for, and reads it', () => {
    const usage = new StreamUsage('chat', true);
    expect(feed(usage, chat + usageChunk + 'data: [DONE]\n\n')).toBe(chat + 'data: [DONE]\n\n');
    expect(usage.usage).toEqual({ inputTokens: 9, outputTokens: 3 });
    expect(usage.settleUsage(true, 100, words)).toEqual({ inputTokens: 9, outputTokens: 3 });
  });

  it('forwards the usage chunk when the client asked for it', () => {
    const usage = new StreamUsage('chat', false);
    expect(feed(usage, chat + usageChunk)).toBe(chat + usageChunk);
    expect(usage.usage).toEqual({ inputTokens: 9, outputTokens: 3 });
  });

  it('takes the last usage when a provider sends it on every chunk', () => {
    const usage = new StreamUsage('chat', true);
    const text =
      'data: {"choices":[{"delta":{"content":"a"}}],"usage":{"prompt_tokens":9,"completion_tokens":1}}\n\n' +
      'data: {"choices":[{"delta":{"content":"b"}}],"usage":{"prompt_tokens":9,"completion_tokens":2}}\n\n';
    expect(feed(usage, text)).toBe(text);
    expect(usage.usage).toEqual({ inputTokens: 9, outputTokens: 2 });
  });

  it('counts the streamed text when a stream breaks before usage', () => {
    const usage = new StreamUsage('chat', true);
    feed(usage, chat);
    expect(usage.settleUsage(false, 42, words)).toEqual({ inputTokens: 42, outputTokens: 3 });
  });

  it('keeps the text in stream order when events stating usage come between the others', () => {
    const usage = new StreamUsage('chat', false);
    feed(
      usage,
      'data: {"choices":[{"delta":{"content":"one"}}],"usage":null}\n\n' +
        'data: {"choices":[{"delta":{"content":" two"}}],"usage":{"prompt_tokens":9,"completion_tokens":2}}\n\n' +
        'data: {"choices":[{"delta":{"content":" three"}}]}\n\n',
    );
    expect(usage.usage).toEqual({ inputTokens: 9, outputTokens: 2 });
    expect(usage.text).toBe('one two three');
    expect(usage.settleUsage(false, 42, words)).toEqual({ inputTokens: 9, outputTokens: 3 });
  });

  it('keeps all the text of a long stream that breaks before usage', () => {
    const usage = new StreamUsage('chat', true);
    const event = (i: number) =>
      `data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":" w${i}"}}],"usage":null}\n\n`;
    const count = 3000; // ~300 KB of events, past what a stream keeps unread
    feed(usage, Array.from({ length: count }, (_, i) => event(i)).join(''));
    const text = Array.from({ length: count }, (_, i) => ` w${i}`).join('');
    expect(usage.text).toBe(text);
    expect(usage.settleUsage(false, 1, words)).toEqual({ inputTokens: 1, outputTokens: words(text) });
  });

  it('tells events that may state usage from those that cannot', () => {
    expect(mayStateUsage('{"choices":[],"usage":{"prompt_tokens":1}}')).toBe(true);
    expect(mayStateUsage('{"usage" : \n {"prompt_tokens":1}}')).toBe(true);
    expect(mayStateUsage('{"type":"response.completed","response":{"usage":{"input_tokens":4}}}')).toBe(true);
    expect(mayStateUsage('{"usage":0}')).toBe(true); // parsed, then found to state nothing
    expect(mayStateUsage('{"choices":[{"delta":{"content":"x"}}],"usage":null}')).toBe(false);
    expect(mayStateUsage('{"choices":[],"usage" :  null}')).toBe(false);
    expect(mayStateUsage('{"choices":[{"delta":{"content":"usage"}}]}')).toBe(false);
    expect(mayStateUsage('{"choices":[{"delta":{"content":"the \\"usage\\": {1}"}}]}')).toBe(false);
    expect(mayStateUsage('{"type":"content_block_delta","delta":{"text":"hi"}}')).toBe(false);
  });

  it('keeps the latest Anthropic usage without summing', () => {
    const usage = new StreamUsage('messages', false);
    feed(
      usage,
      'event: message_start\ndata: {"type":"message_start","message":{"usage":{"input_tokens":12,"output_tokens":1}}}\n\n' +
        'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"type":"text_delta","text":"hi there you"}}\n\n',
    );
    // Broken after message_start: at least the streamed text.
    expect(usage.settleUsage(false, 99, words)).toEqual({ inputTokens: 12, outputTokens: 3 });
    feed(usage, 'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":5}}\n\n');
    feed(usage, 'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":7}}\n\n');
    expect(usage.settleUsage(true, 99, words)).toEqual({ inputTokens: 12, outputTokens: 7 });
  });

  it('reads responses usage from response.completed', () => {
    const usage = new StreamUsage('responses', false);
    feed(
      usage,
      'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"x y"}\n\n' +
        'event: response.completed\ndata: {"type":"response.completed","response":{"usage":{"input_tokens":4,"output_tokens":2}}}\n\n',
    );
    expect(usage.text).toBe('x y');
    expect(usage.settleUsage(true, 0, words)).toEqual({ inputTokens: 4, outputTokens: 2 });
  });
});
