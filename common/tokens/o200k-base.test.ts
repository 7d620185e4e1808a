import { describe, expect, it } from 'vitest';
import { countTokens, encode } from 'gpt-tokenizer/encoding/o200k_base';
import { countO200kTokens, encodeO200k, o200kRanks } from './o200k-base.ts';

// gpt-tokenizer is the reference: same split regex, same ranks, a plain Map-based merge.
const PLAIN = { disallowedSpecial: new Set<string>() };
const BOM = '\uFEFF';

/** Text of token ids, from our own table (gpt-tokenizer's decoder also drops a leading BOM). */
function decode(ids: number[]): string {
  return Buffer.concat(ids.map((id) => o200kRanks().bytesOfRank(id)!)).toString('utf8');
}

/** mulberry32: a small seeded PRNG, so the corpus is the same on every run. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WORDS = [
  'the',
  'quota',
  'controller',
  "isn't",
  "we'LL",
  "THEY'RE",
  "it's",
  'Kubernetes',
  'tokenLease',
  'HTTP',
  'naïve',
  'café',
  'résumé',
  'Straße',
  'über',
  'Ωmega',
  'x',
  'I',
  'a',
  'don’t',
  "O'Neil",
  'ALLCAPS',
  'camelCaseWord',
  'snake_case_word',
  'kebab-case-word',
  'e-mail',
  'U.S.A.',
  '3.14159',
  '1,000,000',
  '2024-05-01T12:00:00Z',
  'https://example.com/v1/chat/completions?x=1&y=2',
  'user@example.com',
];
const SCRIPTS = [
  '你好，世界！这是一个测试。',
  '東京都の天気は晴れです。',
  'カタカナとひらがな',
  '안녕하세요 세계',
  'مرحبا بالعالم',
  'नमस्ते दुनिया',
  'สวัสดีชาวโลก',
  'Привет, мир!',
  'Γειά σου Κόσμε',
  'שלום עולם',
  'e\u0301 a\u0308 n\u0303',
  'ḁ̵̡̢̧̛͓̟̱͍̩̭̟̳̞̦͓͔̩̦͚̩̳̔̈́͛̓̅̀̓̋͐̆̿̎̚͝',
];
const EMOJI = ['😀', '👍🏽', '👨‍👩‍👧‍👦', '🇫🇷', '🏳️‍🌈', '❤️', '🤖', '✨', '🔥🔥🔥', '☃', '⌚'];
const SPECIAL = ['<|endoftext|>', '<|im_start|>', '<|im_end|>', '<|fim_prefix|>', '<|endofprompt|>'];
const CODE = [
  'function add(a: number, b: number): number {\n  return a + b;\n}\n',
  'def fib(n):\n\tif n < 2:\n\t\treturn n\n\treturn fib(n - 1) + fib(n - 2)\n',
  'SELECT id, name FROM users WHERE id IN (1, 2, 3) ORDER BY name DESC;',
  '#include <stdio.h>\r\nint main(void) { printf("%d\\n", 42); return 0; }\r\n',
  'const re = /^[a-z]+$/gu; // matches\n/* block */ x ??= y?.z ?? 0;',
  '<div class="a">\n  <span>&nbsp;&lt;&gt;</span>\n</div>',
  "$ kubectl get pods -n llm -o jsonpath='{.items[*].metadata.name}'",
];
const WHITESPACE = [
  ' ',
  '  ',
  '\t',
  '\n',
  '\r\n',
  '\n\n\n',
  '   \n',
  ' \t \n ',
  '\u00a0',
  '\u2003',
  '\u3000',
];

function pick<T>(random: () => number, items: readonly T[]): T {
  return items[Math.floor(random() * items.length)]!;
}

function randomJson(random: () => number, depth: number): unknown {
  const kind = Math.floor(random() * (depth > 2 ? 4 : 6));
  if (kind === 0) return Math.floor(random() * 1e6) / (random() < 0.5 ? 1 : 100);
  if (kind === 1) return pick(random, WORDS) + (random() < 0.3 ? ' ' + pick(random, SCRIPTS) : '');
  if (kind === 2) return random() < 0.5;
  if (kind === 3) return null;
  if (kind === 4)
    return Array.from({ length: Math.floor(random() * 4) }, () => randomJson(random, depth + 1));
  return Object.fromEntries(
    Array.from({ length: Math.floor(random() * 4) }, () => [
      pick(random, WORDS),
      randomJson(random, depth + 1),
    ]),
  );
}

/** Any code point, lone surrogates and non-characters included. */
function randomCodePoint(random: () => number): string {
  const range = random();
  if (range < 0.4) return String.fromCharCode(Math.floor(random() * 0x80));
  if (range < 0.6) return String.fromCharCode(0x80 + Math.floor(random() * 0x780));
  if (range < 0.75) return String.fromCharCode(0x800 + Math.floor(random() * 0xd000));
  if (range < 0.8) return String.fromCharCode(0xd800 + Math.floor(random() * 0x800)); // lone surrogate
  if (range < 0.9) return String.fromCharCode(0xe000 + Math.floor(random() * 0x1ffe));
  return String.fromCodePoint(0x10000 + Math.floor(random() * 0x100000));
}

function randomString(random: () => number): string {
  const parts: string[] = [];
  const length = 1 + Math.floor(random() * 40);
  for (let i = 0; i < length; i++) {
    const kind = Math.floor(random() * 9);
    if (kind === 0) parts.push(pick(random, WORDS));
    else if (kind === 1) parts.push(pick(random, SCRIPTS));
    else if (kind === 2) parts.push(pick(random, EMOJI));
    else if (kind === 3) parts.push(pick(random, WHITESPACE));
    else if (kind === 4) parts.push(pick(random, CODE));
    else if (kind === 5) parts.push(String(Math.floor(random() * 10 ** Math.floor(random() * 12))));
    else if (kind === 6) parts.push(randomCodePoint(random));
    else if (kind === 7) parts.push(pick(random, SPECIAL));
    else parts.push(pick(random, [' ', ', ', '. ', '!', '?', "'", '"', '/', '\\', '...', '--', '$']));
  }
  return parts.join(random() < 0.7 ? ' ' : '');
}

function corpus(): string[] {
  const random = prng(20240501);
  const texts: string[] = [
    '',
    'hello world',
    ...WORDS,
    ...SCRIPTS,
    ...EMOJI,
    ...SPECIAL,
    ...CODE,
    ...WHITESPACE,
    'a'.repeat(2000),
    'ab'.repeat(700),
    '!'.repeat(500),
    ' '.repeat(300) + 'x',
    '\n'.repeat(100),
    '1234567890'.repeat(50),
    '字'.repeat(400),
    '😀'.repeat(200),
    'é'.repeat(300),
    Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 7919) % 256)).toString('base64'),
  ];
  for (let i = 0; i < 1500; i++) texts.push(randomString(random));
  for (let i = 0; i < 300; i++)
    texts.push(JSON.stringify(randomJson(random, 0), null, random() < 0.5 ? 2 : 0));
  for (let i = 0; i < 600; i++) {
    texts.push(Array.from({ length: 1 + Math.floor(random() * 60) }, () => randomCodePoint(random)).join(''));
  }
  for (let i = 0; i < 300; i++) {
    const bytes = Uint8Array.from({ length: 1 + Math.floor(random() * 200) }, () =>
      Math.floor(random() * 256),
    );
    texts.push(random() < 0.5 ? Buffer.from(bytes).toString('utf8') : Buffer.from(bytes).toString('latin1'));
  }
  // The reference mishandles byte-order marks (below): they are compared separately.
  return texts.map((text) => text.replaceAll(BOM, ''));
}

describe('o200k_base counter', () => {
  const texts = corpus();

  it(`counts exactly as gpt-tokenizer over a corpus of ${texts.length} varied texts`, () => {
    const mismatches: Array<{ text: string; ours: number; reference: number }> = [];
    for (const text of texts) {
      const ours = countO200kTokens(text);
      const reference = countTokens(text, PLAIN);
      if (ours !== reference) mismatches.push({ text, ours, reference });
    }
    expect(mismatches.slice(0, 5)).toEqual([]);
  });

  it('encodes to the same token ids as gpt-tokenizer', () => {
    for (const text of texts.slice(0, 800)) expect(encodeO200k(text)).toEqual(encode(text, PLAIN));
  });

  it('counts long runs of one character (a quadratic merge would stall here)', () => {
    const text = 'a'.repeat(200_000);
    const count = countO200kTokens(text);
    expect(count).toBe(countO200kTokens('a'.repeat(100_000)) * 2);
    expect(encodeO200k('a'.repeat(2000))).toEqual(encode('a'.repeat(2000)));
  });

  it('merges byte-order-mark tokens as tiktoken does, where gpt-tokenizer cannot reach them', () => {
    // gpt-tokenizer looks valid UTF-8 up through a TextDecoder that strips a leading U+FEFF, so
    // its 9 tokens that begin with EF BB BF are never found: "\uFEFF" becomes [EF BB][BF].
    const bomRank = o200kRanks().rank(new Uint8Array([0xef, 0xbb, 0xbf]), 0, 3);
    expect(bomRank).toBeGreaterThanOrEqual(0);
    expect(encodeO200k(BOM)).toEqual([bomRank]);
    expect(countTokens(BOM, PLAIN)).toBe(2);
    expect(encodeO200k(`${BOM}hello`)).toEqual([bomRank, ...encode('hello')]);
    // Every encoding is lossless and uses only known tokens, BOMs anywhere included.
    for (const text of [`${BOM}using System;`, `a${BOM}b`, `${BOM}${BOM}\n`, `x ${BOM}// c`]) {
      const ids = encodeO200k(text);
      expect(decode(ids)).toBe(text);
      expect(ids.length).toBe(countO200kTokens(text));
    }
  });

  it('holds the whole o200k_base table: 199,998 ranks in a few MB', () => {
    expect(o200kRanks().size).toBe(199_998);
    expect(o200kRanks().byteLength).toBeLessThan(8 * 1024 * 1024);
  });
});
