/**
 * The o200k_base encoding (GPT-4o and later) as a token counter. Its ranks are read from the
 * `.tiktoken` file gpt-tokenizer ships (`data/o200k_base.tiktoken`, the file OpenAI publishes) into
 * a compact table; gpt-tokenizer's own JS modules are not loaded at run time, only in tests, where
 * they are the reference this counter must agree with on every input.
 *
 * `npm run build` also writes the parsed table beside the compiled module (o200k_base.bpe, see
 * BpeRanks.toBinary); when it is there it is read as is, a ~5 MB file read (~10 ms on a busy 2-core
 * machine), instead of parsing the ranks (~100 ms, and ~10 MB of RSS left behind by the
 * JIT-compiled parse loop). Either way once per process, and only when the first text is counted,
 * not when this module is imported: a process that has the counter but has not counted yet (an
 * idle sidecar) does not hold the ~5 MB table. The first count pays for the read.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { BpeTokenizer } from './bpe-tokenizer.ts';
import { BpeRanks } from './bpe-ranks.ts';

// tiktoken's o200k_base pattern, as gpt-tokenizer spells it (contractions case-insensitive).
const CONTRACTION = String.raw`(?:'(?:[sS]|[dD]|[mM]|[tT]|[lL][lL]|[vV][eE]|[rR][eE]))?`;
export const O200K_SPLIT = new RegExp(
  [
    String.raw`[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+${CONTRACTION}`,
    String.raw`[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*${CONTRACTION}`,
    String.raw`\p{N}{1,3}`,
    String.raw` ?[^\s\p{L}\p{N}]+[\r\n/]*`,
    String.raw`\s*[\r\n]+`,
    String.raw`\s+(?!\S)`,
    String.raw`\s+`,
  ].join('|'),
  'gu',
);

/** Where the installed gpt-tokenizer keeps the o200k_base ranks (its `data/` sits beside `cjs/`). */
export function o200kRanksPath(): string {
  const entry = createRequire(import.meta.url).resolve('gpt-tokenizer');
  return fileURLToPath(new URL('../data/o200k_base.tiktoken', pathToFileURL(entry)));
}

/** Where `npm run build` puts the compiled table: beside this module in dist/. */
export const O200K_BINARY_NAME = 'o200k_base.bpe';
const BINARY = fileURLToPath(new URL(`./${O200K_BINARY_NAME}`, import.meta.url));

/** `make()`, called on the first call only; later calls return the same value. */
function once<T>(make: () => T): () => T {
  let value: T | undefined;
  return () => (value ??= make());
}

/** The o200k_base rank table, read on first use (see the module comment for why not at import). */
export const o200kRanks = once(() =>
  existsSync(BINARY) ? BpeRanks.fromBinaryFile(BINARY) : BpeRanks.fromTiktokenFile(o200kRanksPath()),
);
const o200k = once(() => new BpeTokenizer(o200kRanks(), O200K_SPLIT));

/** o200k_base tokens of `text`, special-token markers (`<|endoftext|>`) counted as plain text. */
export function countO200kTokens(text: string): number {
  return o200k().count(text);
}

/** o200k_base token ids of `text`, special-token markers encoded as plain text. */
export function encodeO200k(text: string): number[] {
  return o200k().encode(text);
}
