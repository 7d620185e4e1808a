import { describe, expect, it } from 'vitest';
import { answerForm, cacheKeyOf, canonicalJson, type KeyInput } from './cache-key.ts';

const base: KeyInput = {
  providerId: 'llm/sim',
  scope: 'b:team/app',
  operation: 'chat',
  form: 'json',
  body: { model: 'm', messages: [{ role: 'user', content: 'hi' }], temperature: 0 },
};

describe('cache key', () => {
  it('canonical JSON sorts keys at every level and keeps array order', () => {
    expect(canonicalJson({ b: 1, a: { d: [2, { z: 1, y: 2 }], c: null } })).toBe(
      '{"a":{"c":null,"d":[2,{"y":2,"z":1}]},"b":1}',
    );
    expect(canonicalJson(JSON.parse('{ "x" : 1.0 , "y": "a\\u00e9" }'))).toBe('{"x":1,"y":"aé"}');
  });

  it('canonical JSON is JSON.stringify of the value with its keys sorted, for any JSON value', () => {
    const sorted = (value: unknown): unknown => {
      if (Array.isArray(value)) return value.map(sorted);
      if (value === null || typeof value !== 'object') return value;
      const out: Record<string, unknown> = {};
      for (const name of Object.keys(value).sort())
        out[name] = sorted((value as Record<string, unknown>)[name]);
      return out;
    };
    // A fixed pseudo-random walk over nested objects, arrays, strings (escapes, non-ASCII) and numbers.
    let seed = 7;
    const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const leaf = () => [null, true, false, 0, -1.5, 1e21, 'a', 'é"\\\n\u2028', ''][Math.floor(next() * 9)];
    const random = (depth: number): unknown => {
      const pick = next();
      if (depth > 3 || pick < 0.4) return leaf();
      if (pick < 0.7) return Array.from({ length: Math.floor(next() * 4) }, () => random(depth + 1));
      const object: Record<string, unknown> = {};
      for (let i = Math.floor(next() * 5); i > 0; i--)
        object[`k${Math.floor(next() * 20)}`] = random(depth + 1);
      return object;
    };
    for (let i = 0; i < 500; i++) {
      const value = random(0);
      expect(canonicalJson(value)).toBe(JSON.stringify(sorted(value)));
    }
  });

  it('ignores key order, whitespace and fields that do not change the answer', () => {
    const same = cacheKeyOf({
      ...base,
      body: JSON.parse(
        '{ "temperature": 0, "user": "u1", "metadata": {"k": "v"}, "store": true, "stream": false,\n "messages": [ {"content": "hi", "role": "user"} ], "model": "m" }',
      ),
    });
    expect(same).toEqual(cacheKeyOf(base));
  });

  it('separates what changes the answer or its form', () => {
    const key = cacheKeyOf(base);
    const variants: KeyInput[] = [
      { ...base, providerId: 'llm/other' },
      { ...base, scope: 'b:team/other' },
      { ...base, operation: 'completions' },
      { ...base, form: 'sse' },
      { ...base, body: { ...base.body, model: 'm2' } },
      { ...base, body: { ...base.body, temperature: 0.5 } },
      { ...base, body: { ...base.body, tools: [{ type: 'function', function: { name: 'f' } }] } },
      { ...base, body: { ...base.body, messages: [{ role: 'user', content: 'hi!' }] } },
      { ...base, body: { ...base.body, max_tokens: 10 } },
    ];
    const seen = new Set([`${key.scope}|${key.id}`]);
    for (const variant of variants) {
      const other = cacheKeyOf(variant);
      seen.add(`${other.scope}|${other.id}`);
    }
    expect(seen.size).toBe(variants.length + 1);
    expect(key.scope).toBe('b:team/app@llm/sim');
    expect(key.id).toMatch(/^[0-9a-f]{64}$/);
  });

  it('names the answer form: JSON, a stream, an OpenAI stream with its usage chunk', () => {
    expect(answerForm('chat', {}, false)).toBe('json');
    expect(answerForm('chat', {}, true)).toBe('sse');
    expect(answerForm('chat', { stream_options: { include_usage: true } }, true)).toBe('sse+usage');
    expect(answerForm('completions', { stream_options: { include_usage: false } }, true)).toBe('sse');
    expect(answerForm('messages', {}, true)).toBe('sse');
  });
});
