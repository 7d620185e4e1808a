/**
 * Deterministic fake output: the same prompt always yields the same text, and a text of N words
 * is exactly N o200k_base tokens (each word is one token with its leading space, and the
 * tokenizer's pre-split keeps space-led words apart), so usage is predictable to the token.
 */
import { countTextTokens } from '../common/tokens/count-tokens.ts';

const CANDIDATES = [
  'the',
  'quick',
  'brown',
  'fox',
  'jumps',
  'over',
  'lazy',
  'dog',
  'river',
  'stone',
  'light',
  'green',
  'house',
  'small',
  'water',
  'early',
  'morning',
  'wind',
  'road',
  'music',
  'paper',
  'story',
  'bright',
  'north',
  'south',
  'field',
  'clear',
  'sound',
  'table',
  'window',
  'garden',
  'yellow',
  'winter',
  'summer',
  'forest',
  'simple',
  'market',
  'silver',
  'mountain',
  'ocean',
  'city',
  'night',
  'quiet',
  'warm',
  'cold',
  'open',
  'letter',
  'number',
  'answer',
  'question',
  'system',
  'model',
  'token',
  'lease',
  'quota',
  'limit',
];

/** Words that are one token each with a leading space; checked once at load, not assumed. */
const WORDS = CANDIDATES.map((word) => ` ${word}`).filter((word) => countTextTokens(word) === 1);

/** FNV-1a, 32 bit: a cheap, stable seed from the prompt. */
export function hashText(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

/** The `count` one-token pieces of a reply to a prompt hashing to `seed` (choice `index`). */
export function replyTokens(seed: number, count: number, index = 0): string[] {
  const start = (seed + index * 7919) % WORDS.length;
  const pieces = new Array<string>(count);
  for (let i = 0; i < count; i++) pieces[i] = WORDS[(start + i * 5) % WORDS.length]!;
  return pieces;
}

/** A small deterministic PRNG (mulberry32), for embeddings and fault dice. */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A unit-length embedding derived from the text. */
export function embedding(text: string, dimensions: number): Float32Array {
  const random = mulberry32(hashText(text));
  const vector = new Float32Array(dimensions);
  let norm = 0;
  for (let i = 0; i < dimensions; i++) {
    const value = random() * 2 - 1;
    vector[i] = value;
    norm += value * value;
  }
  const scale = norm > 0 ? 1 / Math.sqrt(norm) : 0;
  for (let i = 0; i < dimensions; i++) vector[i] = vector[i]! * scale;
  return vector;
}

/** Little-endian float32 bytes in base64: OpenAI's `encoding_format: "base64"`. */
export function embeddingBase64(vector: Float32Array): string {
  return Buffer.from(vector.buffer, vector.byteOffset, vector.byteLength).toString('base64');
}
