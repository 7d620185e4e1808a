import { describe, expect, it } from 'vitest';
import { TokenizerDataError } from '../errors/errors.ts';
import { BpeRanks } from './bpe-ranks.ts';

const b64 = (text: string) => Buffer.from(text, 'latin1').toString('base64');
const tiktoken = (lines: string[]) => new TextEncoder().encode(lines.join('\n'));
const bytes = (text: string) => Buffer.from(text, 'latin1');

describe('BpeRanks', () => {
  const ranks = BpeRanks.fromTiktoken(
    tiktoken([
      `${b64('a')} 0`,
      `${b64('b')} 1`,
      `${b64('ab')} 2`,
      `${b64('\xff\x00')} 7`,
      `${b64('abcd')} 3`,
      '',
    ]),
    'test',
  );

  it('finds every token by its bytes, anywhere in a buffer, and nothing else', () => {
    expect(ranks.size).toBe(5);
    expect(ranks.rank(bytes('a'), 0, 1)).toBe(0);
    expect(ranks.rank(bytes('xab'), 1, 3)).toBe(2);
    expect(ranks.rank(bytes('\xff\x00'), 0, 2)).toBe(7);
    expect(ranks.rank(bytes('abcd'), 0, 4)).toBe(3);
    expect(ranks.rank(bytes('abc'), 0, 3)).toBe(-1);
    expect(ranks.rank(bytes('ba'), 0, 2)).toBe(-1);
    expect(ranks.rank(bytes('a'), 0, 0)).toBe(-1);
    expect([...ranks.bytesOfRank(7)!]).toEqual([0xff, 0]);
    expect(ranks.bytesOfRank(4)).toBeUndefined();
  });

  it('accepts CRLF line ends', () => {
    const crlf = BpeRanks.fromTiktoken(
      new TextEncoder().encode(`${b64('a')} 0\r\n${b64('bc')} 1\r\n`),
      'crlf',
    );
    expect(crlf.size).toBe(2);
    expect(crlf.rank(bytes('bc'), 0, 2)).toBe(1);
  });

  it('refuses malformed files with the line that is wrong', () => {
    const parse = (lines: string[]) => () => BpeRanks.fromTiktoken(tiktoken(lines), 'bad.tiktoken');
    expect(parse([`${b64('a')} 0`, `${b64('b')} x`])).toThrow(/bad\.tiktoken:2: invalid rank/);
    expect(parse([`${b64('a')} 0`, `Y*== 1`])).toThrow(TokenizerDataError);
    expect(parse([`${b64('a')}`])).toThrow(/missing rank/);
    expect(parse([`${b64('a')} 0`, `${b64('a')} 1`])).toThrow(/duplicate/);
    expect(() => BpeRanks.fromTiktokenFile('/nonexistent/o200k_base.tiktoken')).toThrow(TokenizerDataError);
  });
});

describe('BpeRanks binary form', () => {
  it('round-trips the whole o200k_base table, unaligned input included', async () => {
    const O200K_RANKS = (await import('./o200k-base.ts')).o200kRanks();
    const binary = O200K_RANKS.toBinary();
    const unaligned = new Uint8Array(binary.length + 1).subarray(1);
    unaligned.set(binary);
    for (const copy of [
      BpeRanks.fromBinary(binary, 'aligned'),
      BpeRanks.fromBinary(unaligned, 'unaligned'),
    ]) {
      expect(copy.size).toBe(O200K_RANKS.size);
      expect(copy.byteLength).toBe(O200K_RANKS.byteLength);
      for (let rank = 0; rank < O200K_RANKS.size; rank += 97) {
        const bytes = O200K_RANKS.bytesOfRank(rank)!;
        expect(copy.rank(bytes, 0, bytes.length)).toBe(rank);
      }
      expect(copy.rank(new Uint8Array([0xff, 0xfe, 0xfd, 0xfc]), 0, 4)).toBe(-1);
    }
  });

  it('refuses a buffer that is not a table or is cut short', async () => {
    const O200K_RANKS = (await import('./o200k-base.ts')).o200kRanks();
    const binary = O200K_RANKS.toBinary();
    expect(() => BpeRanks.fromBinary(new Uint8Array(8), 'tiny')).toThrow(/tiny: too short/);
    expect(() => BpeRanks.fromBinary(new Uint8Array(64), 'zeros')).toThrow(/not a tokenlease rank table/);
    expect(() => BpeRanks.fromBinary(binary.subarray(0, binary.length - 1), 'cut')).toThrow(
      TokenizerDataError,
    );
  });
});
