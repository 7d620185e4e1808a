/**
 * A byte-pair rank table in a few typed arrays instead of a JS Map of 200k strings: the token byte
 * strings back to back in one Uint8Array, their offsets, and an open-addressing hash table
 * (FNV-1a, linear probing) from bytes to entry. For o200k_base that is ~5 MB, outside the JS heap's
 * object graph, where gpt-tokenizer's Map costs ~70 MB of RSS.
 *
 * Loaded from the `.tiktoken` format (one `base64 rank` line per token) that OpenAI publishes and
 * packages ship, decoded byte by byte without a string per line; or from its own binary form
 * (toBinary), which is viewed in place.
 */
import { readFileSync } from 'node:fs';
import { TokenizerDataError } from '../errors/errors.ts';

const BASE64_VALUES = (() => {
  const values = new Int8Array(256).fill(-1);
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  for (let i = 0; i < alphabet.length; i++) values[alphabet.charCodeAt(i)] = i;
  return values;
})();
const NEWLINE = 0x0a;
const SPACE = 0x20;
const PAD = 0x3d; // '='
const CR = 0x0d;
/** "TLB1" little-endian: the first word of a binary table. */
const BINARY_MAGIC = 0x31424c54;
const HEADER_WORDS = 4;

function fnv1a(bytes: Uint8Array, start: number, end: number): number {
  let hash = 0x811c9dc5;
  for (let i = start; i < end; i++) hash = Math.imul(hash ^ bytes[i]!, 0x01000193);
  return hash >>> 0;
}

function readTable(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw new TokenizerDataError(`cannot read ${path}`, { cause: error });
  }
}

export class BpeRanks {
  /** Number of tokens in the table. */
  readonly size: number;
  readonly #bytes: Uint8Array;
  /** Entry i's bytes are #bytes[#offsets[i], #offsets[i + 1]). */
  readonly #offsets: Uint32Array;
  readonly #ranks: Uint32Array;
  /** Slot -> entry + 1 (0 = empty). */
  readonly #slots: Uint32Array;
  readonly #mask: number;

  private constructor(bytes: Uint8Array, offsets: Uint32Array, ranks: Uint32Array, slots?: Uint32Array) {
    this.size = ranks.length;
    this.#bytes = bytes;
    this.#offsets = offsets;
    this.#ranks = ranks;
    if (slots) {
      this.#slots = slots;
      this.#mask = slots.length - 1;
      return;
    }
    // At most half full keeps probe sequences short.
    let capacity = 1;
    while (capacity < this.size * 2) capacity *= 2;
    this.#slots = new Uint32Array(capacity);
    this.#mask = capacity - 1;
    for (let entry = 0; entry < this.size; entry++) {
      const start = offsets[entry]!;
      const end = offsets[entry + 1]!;
      if (this.#find(bytes, start, end) >= 0) {
        throw new TokenizerDataError(`duplicate token bytes for rank ${ranks[entry]}`);
      }
      let slot = fnv1a(bytes, start, end) & this.#mask;
      while (this.#slots[slot] !== 0) slot = (slot + 1) & this.#mask;
      this.#slots[slot] = entry + 1;
    }
  }

  /**
   * The table as one buffer (header, offsets, ranks, hash slots, token bytes) that fromBinary maps
   * back without parsing or hashing: `npm run build` writes it beside the compiled code, so a
   * production process neither decodes the `.tiktoken` text nor JIT-compiles the loops that do.
   */
  toBinary(): Uint8Array {
    const words = HEADER_WORDS + this.#offsets.length + this.#ranks.length + this.#slots.length;
    const out = new Uint8Array(words * 4 + this.#bytes.length);
    const view = new Uint32Array(out.buffer, 0, words);
    view.set([BINARY_MAGIC, this.size, this.#slots.length, this.#bytes.length]);
    let at = HEADER_WORDS;
    for (const part of [this.#offsets, this.#ranks, this.#slots]) {
      view.set(part, at);
      at += part.length;
    }
    out.set(this.#bytes, words * 4);
    return out;
  }

  /** A table written by toBinary, viewed in place (copied once only if `data` is misaligned). */
  static fromBinary(data: Uint8Array, source: string): BpeRanks {
    const aligned = data.byteOffset % 4 === 0 ? data : data.slice();
    const fail = (what: string): never => {
      throw new TokenizerDataError(`${source}: ${what}`);
    };
    if (aligned.length < HEADER_WORDS * 4) fail('too short');
    const [magic, size, capacity, byteCount] = new Uint32Array(
      aligned.buffer,
      aligned.byteOffset,
      HEADER_WORDS,
    );
    if (magic !== BINARY_MAGIC) fail('not a tokenlease rank table');
    const words = HEADER_WORDS + size! + 1 + size! + capacity!;
    if (
      aligned.length !== words * 4 + byteCount! ||
      (capacity! & (capacity! - 1)) !== 0 ||
      capacity! < size!
    ) {
      fail('inconsistent sizes');
    }
    let at = aligned.byteOffset + HEADER_WORDS * 4;
    const take = (count: number) => {
      const part = new Uint32Array(aligned.buffer, at, count);
      at += count * 4;
      return part;
    };
    const offsets = take(size! + 1);
    const ranks = take(size!);
    const slots = take(capacity!);
    if (offsets[size!] !== byteCount) fail('inconsistent offsets');
    return new BpeRanks(new Uint8Array(aligned.buffer, at, byteCount), offsets, ranks, slots);
  }

  /** Parses `.tiktoken` content: lines of `<base64 token bytes> <rank>`. */
  static fromTiktoken(data: Uint8Array, source: string): BpeRanks {
    // First pass sizes the arrays exactly, so loading allocates nothing it later throws away.
    let entries = 0;
    let total = 0;
    for (let i = 0; i < data.length;) {
      let symbols = 0;
      for (; i < data.length && data[i] !== SPACE && data[i] !== NEWLINE; i++) {
        if (data[i] !== PAD && data[i] !== CR) symbols++;
      }
      while (i < data.length && data[i] !== NEWLINE) i++;
      i++;
      if (symbols === 0) continue;
      entries++;
      total += Math.floor((symbols * 6) / 8);
    }
    const bytes = new Uint8Array(total);
    const offsets = new Uint32Array(entries + 1);
    const ranks = new Uint32Array(entries);
    let entry = 0;
    let written = 0;
    let line = 1;
    const fail = (what: string): never => {
      throw new TokenizerDataError(`${source}:${line}: ${what}`);
    };
    for (let i = 0; i < data.length;) {
      if (data[i] === NEWLINE || data[i] === CR) {
        if (data[i] === NEWLINE) line++;
        i++;
        continue;
      }
      offsets[entry] = written;
      let bits = 0;
      let bitCount = 0;
      for (; i < data.length && data[i] !== SPACE; i++) {
        const c = data[i]!;
        if (c === PAD) continue;
        const value = BASE64_VALUES[c]!;
        if (value < 0) fail('invalid base64');
        bits = ((bits << 6) | value) & 0xffffff;
        bitCount += 6;
        if (bitCount >= 8) {
          bitCount -= 8;
          bytes[written++] = (bits >> bitCount) & 0xff;
        }
      }
      if (written === offsets[entry]) fail('empty token');
      if (i >= data.length) fail('missing rank');
      i++; // the space
      let rank = 0;
      let digits = 0;
      for (; i < data.length && data[i] !== NEWLINE && data[i] !== CR; i++, digits++) {
        const digit = data[i]! - 0x30;
        if (digit < 0 || digit > 9) fail('invalid rank');
        rank = rank * 10 + digit;
      }
      if (digits === 0 || rank > 0xffffffff) fail('invalid rank');
      ranks[entry++] = rank;
    }
    offsets[entry] = written;
    return new BpeRanks(bytes, offsets, ranks);
  }

  static fromTiktokenFile(path: string): BpeRanks {
    return BpeRanks.fromTiktoken(readTable(path), path);
  }

  static fromBinaryFile(path: string): BpeRanks {
    return BpeRanks.fromBinary(readTable(path), path);
  }

  /** The rank of bytes[start, end), or -1 when they are not a token. */
  rank(bytes: Uint8Array, start: number, end: number): number {
    const entry = this.#find(bytes, start, end);
    return entry < 0 ? -1 : this.#ranks[entry]!;
  }

  /** The bytes of the token with this rank (a scan: for tests and tools, not the hot path). */
  bytesOfRank(rank: number): Uint8Array | undefined {
    const entry = this.#ranks.indexOf(rank);
    return entry < 0 ? undefined : this.#bytes.subarray(this.#offsets[entry]!, this.#offsets[entry + 1]!);
  }

  /** Bytes held by the table's arrays. */
  get byteLength(): number {
    return (
      this.#bytes.byteLength + this.#offsets.byteLength + this.#ranks.byteLength + this.#slots.byteLength
    );
  }

  #find(bytes: Uint8Array, start: number, end: number): number {
    const length = end - start;
    const stored = this.#bytes;
    let slot = fnv1a(bytes, start, end) & this.#mask;
    for (;;) {
      const entry = this.#slots[slot]! - 1;
      if (entry < 0) return -1;
      const from = this.#offsets[entry]!;
      if (this.#offsets[entry + 1]! - from === length) {
        let i = 0;
        while (i < length && stored[from + i] === bytes[start + i]) i++;
        if (i === length) return entry;
      }
      slot = (slot + 1) & this.#mask;
    }
  }
}
