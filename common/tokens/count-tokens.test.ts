import { describe, expect, it } from 'vitest';
import { encode } from 'gpt-tokenizer/encoding/o200k_base';
import {
  MEDIA_PART_TOKENS,
  PER_MESSAGE_TOKENS,
  REMEMBERED_MIN_CHARS,
  REPLY_PRIMING_TOKENS,
  RecentCounts,
  countPromptTokens,
  countTextTokens,
  maxOutputTokens,
  requestApiForPath,
} from './count-tokens.ts';

const t = (text: string) => encode(text).length;

describe('countTextTokens', () => {
  it('counts o200k_base tokens', () => {
    expect(countTextTokens('')).toBe(0);
    expect(countTextTokens('hello world')).toBe(2);
    expect(countTextTokens('The quick brown fox jumps over the lazy dog.')).toBe(
      t('The quick brown fox jumps over the lazy dog.'),
    );
  });

  it('treats special-token markers in user text as plain text instead of throwing', () => {
    expect(countTextTokens('a <|endoftext|> b')).toBeGreaterThan(3);
  });

  it('counts a long text the same when it is counted again', () => {
    const text = `${'The system prompt of a chat app, resent with every call. '.repeat(20)}42`;
    expect(text.length).toBeGreaterThanOrEqual(REMEMBERED_MIN_CHARS);
    expect(countTextTokens(text)).toBe(t(text));
    expect(countTextTokens(text)).toBe(t(text));
    expect(countTextTokens(`${text}3`)).toBe(t(`${text}3`));
  });
});

describe('RecentCounts', () => {
  it('answers repeated texts without counting, and forgets the least recently used past its bound', () => {
    const counted: string[] = [];
    const counter = (text: string) => {
      counted.push(text);
      return t(text);
    };
    const recent = new RecentCounts(400);
    // 100 characters each: four fill the bound exactly.
    const texts = ['alpha ', 'bravo ', 'charlie ', 'delta '].map((word) => word.repeat(20).slice(0, 100));
    for (const text of texts) expect(recent.count(text, counter)).toBe(t(text));
    expect(recent.count(texts[0]!, counter)).toBe(t(texts[0]!)); // remembered, and now most recent
    expect(counted).toHaveLength(4);
    const echo = 'echo '.repeat(20);
    expect(echo).toHaveLength(100);
    expect(recent.count(echo, counter)).toBe(t(echo)); // 500 chars: bravo, now the oldest, goes
    expect(recent.size).toBe(4);
    expect(recent.count(texts[0]!, counter)).toBe(t(texts[0]!));
    expect(counted).toHaveLength(5);
    expect(recent.count(texts[1]!, counter)).toBe(t(texts[1]!));
    expect(counted).toHaveLength(6);
  });

  it('does not keep a text larger than a quarter of its bound', () => {
    const recent = new RecentCounts(400);
    const big = 'x y '.repeat(30);
    let calls = 0;
    const counter = (text: string) => (calls++, t(text));
    expect(recent.count(big, counter)).toBe(t(big));
    expect(recent.count(big, counter)).toBe(t(big));
    expect(calls).toBe(2);
    expect(recent.size).toBe(0);
  });
});

describe('countPromptTokens', () => {
  it('chat: per-message overhead, role, name, string and part content, tool calls and tools', () => {
    const tools = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object' } } }];
    const toolCalls = [
      { id: 'c1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
    ];
    const body = {
      model: 'gpt-4o',
      messages: [
        { role: 'system', content: 'You are terse.' },
        {
          role: 'user',
          name: 'ann',
          content: [
            { type: 'text', text: 'Weather in Paris?' },
            { type: 'image_url', image_url: { url: 'data:...' } },
          ],
        },
        { role: 'assistant', content: null, tool_calls: toolCalls },
        { role: 'tool', tool_call_id: 'c1', content: 'sunny' },
      ],
      tools,
    };
    const expected =
      REPLY_PRIMING_TOKENS +
      (PER_MESSAGE_TOKENS + t('system') + t('You are terse.')) +
      (PER_MESSAGE_TOKENS + t('user') + 1 + t('ann') + t('Weather in Paris?') + MEDIA_PART_TOKENS) +
      (PER_MESSAGE_TOKENS + t('assistant') + t(JSON.stringify(toolCalls))) +
      (PER_MESSAGE_TOKENS + t('tool') + t('sunny') + t('c1')) +
      t(JSON.stringify(tools));
    expect(countPromptTokens(body, 'chat.completions')).toBe(expected);
  });

  it('completions and embeddings: text, text arrays and token arrays, no overhead', () => {
    expect(countPromptTokens({ prompt: 'hello world' }, 'completions')).toBe(2);
    expect(countPromptTokens({ prompt: ['hello', 'hello world'] }, 'completions')).toBe(3);
    expect(countPromptTokens({ input: [1, 2, 3] }, 'embeddings')).toBe(3);
    expect(countPromptTokens({ input: [[1, 2], [3]] }, 'embeddings')).toBe(3);
    expect(countPromptTokens({ input: 'hello world' }, 'embeddings')).toBe(2);
  });

  it('responses: instructions, string input and item input', () => {
    expect(countPromptTokens({ instructions: 'Be brief.', input: 'hello world' }, 'responses')).toBe(
      PER_MESSAGE_TOKENS + t('Be brief.') + PER_MESSAGE_TOKENS + 2 + REPLY_PRIMING_TOKENS,
    );
    const items = { input: [{ role: 'user', content: [{ type: 'input_text', text: 'hello world' }] }] };
    expect(countPromptTokens(items, 'responses')).toBe(
      PER_MESSAGE_TOKENS + t('user') + 2 + REPLY_PRIMING_TOKENS,
    );
  });

  it('messages: system string or blocks, tool_use input, tool_result content, tools', () => {
    const tools = [{ name: 'lookup', input_schema: { type: 'object' } }];
    const body = {
      model: 'claude-sonnet-4-5',
      max_tokens: 100,
      system: [{ type: 'text', text: 'Be brief.' }],
      messages: [
        { role: 'user', content: 'hello world' },
        { role: 'assistant', content: [{ type: 'tool_use', id: 't1', name: 'lookup', input: { q: 'x' } }] },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: 't1', content: 'found' }] },
      ],
      tools,
    };
    const expected =
      REPLY_PRIMING_TOKENS +
      (PER_MESSAGE_TOKENS + t('Be brief.')) +
      (PER_MESSAGE_TOKENS + t('user') + 2) +
      (PER_MESSAGE_TOKENS + t('assistant') + t('lookup') + t('{"q":"x"}')) +
      (PER_MESSAGE_TOKENS + t('user') + t('found')) +
      t(JSON.stringify(tools));
    expect(countPromptTokens(body, 'messages')).toBe(expected);
    expect(countPromptTokens({ ...body, system: 'Be brief.' }, 'messages')).toBe(expected);
  });

  it('never throws on malformed shapes', () => {
    expect(countPromptTokens(null, 'chat.completions')).toBe(0);
    expect(countPromptTokens({ messages: 'oops' }, 'chat.completions')).toBe(REPLY_PRIMING_TOKENS);
    expect(countPromptTokens({ messages: [42, { content: { odd: true } }] }, 'messages')).toBeGreaterThan(0);
  });
});

describe('maxOutputTokens', () => {
  it('reads each API field, multiplies chat and completions by n, and is undefined when absent', () => {
    expect(maxOutputTokens({ max_tokens: 50 }, 'chat.completions')).toBe(50);
    expect(maxOutputTokens({ max_tokens: 50, max_completion_tokens: 70 }, 'chat.completions')).toBe(70);
    expect(maxOutputTokens({ max_tokens: 50, n: 3 }, 'chat.completions')).toBe(150);
    expect(maxOutputTokens({ max_tokens: 16 }, 'completions')).toBe(16);
    expect(maxOutputTokens({ max_output_tokens: 99 }, 'responses')).toBe(99);
    expect(maxOutputTokens({ max_tokens: 1024 }, 'messages')).toBe(1024);
    expect(maxOutputTokens({ input: 'x' }, 'embeddings')).toBe(0);
    expect(maxOutputTokens({}, 'chat.completions')).toBeUndefined();
    expect(maxOutputTokens({ max_tokens: -1 }, 'chat.completions')).toBeUndefined();
    expect(maxOutputTokens({ max_tokens: 1.5 }, 'messages')).toBeUndefined();
  });
});

describe('requestApiForPath', () => {
  it('maps provider paths, with or without a version prefix or query', () => {
    expect(requestApiForPath('/v1/chat/completions')).toBe('chat.completions');
    expect(requestApiForPath('/api/paas/v4/chat/completions?x=1')).toBe('chat.completions');
    expect(requestApiForPath('/v1/completions')).toBe('completions');
    expect(requestApiForPath('/v1/embeddings/')).toBe('embeddings');
    expect(requestApiForPath('/v1/responses')).toBe('responses');
    expect(requestApiForPath('/v1/messages')).toBe('messages');
    expect(requestApiForPath('/v1/models')).toBeUndefined();
  });
});
