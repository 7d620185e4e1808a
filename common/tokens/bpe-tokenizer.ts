/**
 * Counts byte-pair-encoding tokens the way tiktoken encodes: split the text with the encoding's
 * pre-tokenization regex, then within each piece repeatedly merge the adjacent pair whose bytes
 * have the lowest rank (leftmost on ties) until no pair is a token. Special-token markers are plain
 * text here.
 *
 * The merge keeps its candidate pairs in a binary heap keyed by (rank, position), so a long piece
 * (a run of one letter, a base64 blob) costs O(n log n) instead of the O(n^2) rescans of the usual
 * implementation; the order of merges, and so the result, is the same.
 */
import type { BpeRanks } from './bpe-ranks.ts';

/** Keys pack (rank, position) into one double: rank * 2^32 + position, both below 2^21 / 2^32. */
const POSITION_SPAN = 2 ** 32;
const DEAD = -2;

export class BpeTokenizer {
  readonly #ranks: BpeRanks;
  readonly #split: RegExp;
  readonly #encoder = new TextEncoder();
  // Scratch space reused across calls (grown on demand): pieces are encoded and merged in place.
  #piece = new Uint8Array(1024);
  #next = new Int32Array(1024);
  #prev = new Int32Array(1024);
  #rankAt = new Int32Array(1024);
  #heap = new Float64Array(3 * 1024);

  /** `split` must be a global (`g`) regular expression. */
  constructor(ranks: BpeRanks, split: RegExp) {
    if (!split.global) throw new TypeError('the split regex must have the g flag');
    this.#ranks = ranks;
    this.#split = new RegExp(split.source, split.flags);
  }

  /** Number of tokens of `text`. */
  count(text: string): number {
    return this.#run(text, undefined);
  }

  /** Token ids (ranks) of `text`. */
  encode(text: string): number[] {
    const ids: number[] = [];
    this.#run(text, ids);
    return ids;
  }

  #run(text: string, ids: number[] | undefined): number {
    // One match() call for all the pieces: an exec() loop allocates a match object per piece,
    // which cost more than counting the piece. Every alternative of the split matches at least
    // one character, so there is no empty piece to step over.
    const pieces = text.match(this.#split);
    if (pieces === null) return 0;
    let total = 0;
    for (const piece of pieces) total += this.#countPiece(piece, ids);
    return total;
  }

  #countPiece(piece: string, ids: number[] | undefined): number {
    // UTF-8 is at most 3 bytes per UTF-16 unit; a lone surrogate becomes U+FFFD (3 bytes).
    if (this.#piece.length < piece.length * 3) this.#grow(piece.length * 3);
    const length = this.#utf8(piece);
    // A piece that is one token is one token. One with a lone surrogate is merged from its bytes
    // instead, as gpt-tokenizer (the reference) looks whole pieces up only as well-formed strings.
    // As many bytes as UTF-16 units means ASCII, well-formed without looking.
    const whole = this.#ranks.rank(this.#piece, 0, length);
    if (whole >= 0 && (length === piece.length || piece.isWellFormed())) {
      ids?.push(whole);
      return 1;
    }
    const parts = this.#merge(length);
    if (ids)
      for (let at = 0; at < length; at = this.#next[at]!)
        ids.push(this.#ranks.rank(this.#piece, at, this.#next[at]!));
    return parts;
  }

  /** Writes the piece's UTF-8 into #piece; ASCII by hand, which beats a call into encodeInto. */
  #utf8(piece: string): number {
    const bytes = this.#piece;
    for (let i = 0; i < piece.length; i++) {
      const code = piece.charCodeAt(i);
      if (code >= 0x80) return this.#encoder.encodeInto(piece, bytes).written;
      bytes[i] = code;
    }
    return piece.length;
  }

  /** Merges the piece's bytes #piece[0, length); returns how many parts are left. */
  #merge(length: number): number {
    const next = this.#next;
    const prev = this.#prev;
    const rankAt = this.#rankAt;
    for (let i = 0; i < length; i++) {
      next[i] = i + 1;
      prev[i] = i - 1;
    }
    let heapSize = 0;
    for (let i = 0; i < length; i++) {
      const rank = this.#pairRank(i, length);
      rankAt[i] = rank;
      if (rank >= 0) heapSize = this.#push(heapSize, rank * POSITION_SPAN + i);
    }
    let parts = length;
    while (heapSize > 0) {
      const key = this.#heap[0]!;
      heapSize = this.#pop(heapSize);
      const rank = Math.floor(key / POSITION_SPAN);
      const at = key - rank * POSITION_SPAN;
      if (rankAt[at] !== rank) continue; // stale: the pair at `at` changed or `at` was merged away
      const absorbed = next[at]!;
      const after = next[absorbed]!;
      next[at] = after;
      if (after < length) prev[after] = at;
      rankAt[absorbed] = DEAD;
      parts--;
      const own = this.#pairRank(at, length);
      rankAt[at] = own;
      if (own >= 0) heapSize = this.#push(heapSize, own * POSITION_SPAN + at);
      const before = prev[at]!;
      if (before >= 0) {
        const left = this.#pairRank(before, length);
        rankAt[before] = left;
        if (left >= 0) heapSize = this.#push(heapSize, left * POSITION_SPAN + before);
      }
    }
    return parts;
  }

  /** Rank of the part at `at` joined with the one after it, or -1 (none after it, or not a token). */
  #pairRank(at: number, length: number): number {
    const middle = this.#next[at]!;
    if (middle >= length) return -1;
    return this.#ranks.rank(this.#piece, at, this.#next[middle]!);
  }

  #push(size: number, key: number): number {
    if (size === this.#heap.length) {
      const bigger = new Float64Array(size * 2);
      bigger.set(this.#heap);
      this.#heap = bigger;
    }
    const heap = this.#heap;
    let i = size;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (heap[parent]! <= key) break;
      heap[i] = heap[parent]!;
      i = parent;
    }
    heap[i] = key;
    return size + 1;
  }

  /** Removes the minimum (heap[0]); returns the new size. */
  #pop(size: number): number {
    const heap = this.#heap;
    const last = heap[--size]!;
    let i = 0;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= size) break;
      if (child + 1 < size && heap[child + 1]! < heap[child]!) child++;
      if (heap[child]! >= last) break;
      heap[i] = heap[child]!;
      i = child;
    }
    heap[i] = last;
    return size;
  }

  #grow(bytes: number): void {
    let capacity = this.#piece.length;
    while (capacity < bytes) capacity *= 2;
    this.#piece = new Uint8Array(capacity);
    this.#next = new Int32Array(capacity);
    this.#prev = new Int32Array(capacity);
    this.#rankAt = new Int32Array(capacity);
  }
}
