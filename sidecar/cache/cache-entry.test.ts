import { describe, expect, it } from 'vitest';
import {
  CorruptEntryError,
  decodeEntry,
  encodeEntry,
  envelopeBytes,
  type CacheEntry,
} from './cache-entry.ts';

const entry: CacheEntry = {
  id: 'abc',
  storedAtMs: 1_700_000_000_000,
  status: 200,
  headers: { 'content-type': 'application/json' },
  usage: { inputTokens: 5, outputTokens: 7 },
  body: Buffer.from('{"ok":true,"text":"é"}'),
};

describe('cache entry envelope', () => {
  it('round-trips an entry, body byte for byte', () => {
    const bytes = encodeEntry(entry);
    const { body, ...meta } = entry;
    expect(bytes.length).toBe(envelopeBytes(meta) + body.length);
    const decoded = decodeEntry(bytes, 'abc');
    expect(decoded).toEqual(entry);
  });

  it('refuses any damaged, truncated, foreign or misplaced entry', () => {
    const bytes = encodeEntry(entry);
    const flipped = Buffer.from(bytes);
    flipped[flipped.length - 10]! ^= 1;
    const cases: Array<[Buffer, string]> = [
      [flipped, 'checksum mismatch'],
      [bytes.subarray(0, bytes.length - 3), 'checksum mismatch'],
      [bytes.subarray(0, 10), 'bad magic'],
      [Buffer.from('{"some":"json"}'), 'bad magic'],
      [Buffer.alloc(0), 'bad magic'],
    ];
    for (const [damaged, reason] of cases) {
      expect(() => decodeEntry(damaged, 'abc')).toThrow(CorruptEntryError);
      expect(() => decodeEntry(damaged, 'abc')).toThrow(reason);
    }
    expect(() => decodeEntry(bytes, 'other')).toThrow('wrong key');
  });
});
