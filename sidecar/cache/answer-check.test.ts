import { describe, expect, it } from 'vitest';
import { checkAnswer } from './answer-check.ts';

const json = (value: unknown) => Buffer.from(JSON.stringify(value));
const sse = (...events: string[]) => Buffer.from(events.map((event) => `${event}\n\n`).join(''));
const chunk = (choice: unknown) => `data: ${JSON.stringify({ choices: [choice] })}`;

describe('answer check', () => {
  it('accepts whole answers', () => {
    expect(
      checkAnswer(
        'chat',
        'json',
        json({ choices: [{ message: { content: 'x', refusal: null }, finish_reason: 'stop' }] }),
      ),
    ).toBe('ok');
    expect(checkAnswer('embeddings', 'json', json({ data: [{ embedding: [1] }] }))).toBe('ok');
    expect(checkAnswer('messages', 'json', json({ type: 'message', stop_reason: 'end_turn' }))).toBe('ok');
    expect(checkAnswer('responses', 'json', json({ status: 'completed', output: [] }))).toBe('ok');
    expect(checkAnswer('chat', 'sse', sse(chunk({ delta: { content: 'x' } }), 'data: [DONE]'))).toBe('ok');
    expect(
      checkAnswer(
        'messages',
        'sse',
        sse(
          'event: message_start\ndata: {"type":"message_start"}',
          'event: message_stop\ndata: {"type":"message_stop"}',
        ),
      ),
    ).toBe('ok');
    expect(
      checkAnswer(
        'responses',
        'sse',
        sse('event: response.completed\ndata: {"type":"response.completed","response":{"output":[]}}'),
      ),
    ).toBe('ok');
  });

  it('refuses model refusals', () => {
    expect(
      checkAnswer('chat', 'json', json({ choices: [{ message: { content: null, refusal: 'I cannot' } }] })),
    ).toBe('refusal');
    expect(
      checkAnswer(
        'chat',
        'json',
        json({ choices: [{ message: { content: '' }, finish_reason: 'content_filter' }] }),
      ),
    ).toBe('refusal');
    expect(checkAnswer('messages', 'json', json({ type: 'message', stop_reason: 'refusal' }))).toBe(
      'refusal',
    );
    expect(
      checkAnswer(
        'responses',
        'json',
        json({ status: 'completed', output: [{ content: [{ type: 'refusal', refusal: 'no' }] }] }),
      ),
    ).toBe('refusal');
    expect(checkAnswer('chat', 'sse', sse(chunk({ delta: { refusal: 'no' } }), 'data: [DONE]'))).toBe(
      'refusal',
    );
    expect(
      checkAnswer(
        'messages',
        'sse',
        sse(
          'data: {"type":"message_delta","delta":{"stop_reason":"refusal"}}',
          'data: {"type":"message_stop"}',
        ),
      ),
    ).toBe('refusal');
  });

  it('refuses partial and malformed answers', () => {
    expect(checkAnswer('chat', 'sse', sse(chunk({ delta: { content: 'x' } })))).toBe('partial');
    expect(checkAnswer('chat', 'sse', Buffer.from('data: [DONE]\n\ndata: {"cho'))).toBe('partial');
    expect(checkAnswer('messages', 'sse', sse('data: {"type":"message_start"}'))).toBe('partial');
    expect(checkAnswer('responses', 'json', json({ status: 'incomplete' }))).toBe('partial');
    expect(checkAnswer('chat', 'json', Buffer.from('{"choices":'))).toBe('invalid');
    expect(
      checkAnswer(
        'messages',
        'sse',
        sse('event: error\ndata: {"type":"error"}', 'data: {"type":"message_stop"}'),
      ),
    ).toBe('invalid');
  });
});
