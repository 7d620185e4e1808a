/**
 * A cached answer as stored: a versioned envelope with a checksum, so that a damaged, truncated or
 * misplaced entry is recognised and never served.
 *
 *   "TLC1" | u32 header length | header JSON | body | u32 CRC-32 of everything before it
 */
import { crc32 } from 'node:zlib';
import type { TokenUsage } from '../../common/quota-api.ts';

const MAGIC = Buffer.from('TLC1', 'latin1');

export interface CacheEntry {
  /** The key id it was stored under, checked on read. */
  id: string;
  storedAtMs: number;
  status: number;
  /** The provider's response headers worth replaying (content type, request id). */
  headers: Record<string, string>;
  /** What the call cost, counted as saved on every hit. */
  usage: TokenUsage;
  body: Buffer;
}

export function encodeEntry(entry: CacheEntry): Buffer {
  const header = Buffer.from(
    JSON.stringify({
      id: entry.id,
      storedAtMs: entry.storedAtMs,
      status: entry.status,
      headers: entry.headers,
      usage: entry.usage,
    }),
  );
  const out = Buffer.allocUnsafe(8 + header.length + entry.body.length + 4);
  MAGIC.copy(out, 0);
  out.writeUInt32BE(header.length, 4);
  header.copy(out, 8);
  entry.body.copy(out, 8 + header.length);
  out.writeUInt32BE(crc32(out.subarray(0, out.length - 4)), out.length - 4);
  return out;
}

/** Size of the envelope around a body, to check the entry size before encoding. */
export function envelopeBytes(entry: Omit<CacheEntry, 'body'>): number {
  return 12 + Buffer.byteLength(JSON.stringify(entry));
}

export class CorruptEntryError extends Error {
  override name = 'CorruptEntryError';
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The entry, or CorruptEntryError saying what is wrong with it. */
export function decodeEntry(bytes: Buffer, expectedId: string): CacheEntry {
  if (bytes.length < 12 || !bytes.subarray(0, 4).equals(MAGIC)) throw new CorruptEntryError('bad magic');
  const headerLength = bytes.readUInt32BE(4);
  if (8 + headerLength + 4 > bytes.length) throw new CorruptEntryError('truncated');
  if (crc32(bytes.subarray(0, bytes.length - 4)) !== bytes.readUInt32BE(bytes.length - 4)) {
    throw new CorruptEntryError('checksum mismatch');
  }
  let header: unknown;
  try {
    header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8'));
  } catch {
    throw new CorruptEntryError('header is not JSON');
  }
  if (
    !isRecord(header) ||
    header.id !== expectedId ||
    typeof header.storedAtMs !== 'number' ||
    typeof header.status !== 'number' ||
    !isRecord(header.headers) ||
    !Object.values(header.headers).every((value) => typeof value === 'string') ||
    !isRecord(header.usage) ||
    typeof header.usage.inputTokens !== 'number' ||
    typeof header.usage.outputTokens !== 'number'
  ) {
    throw new CorruptEntryError(
      header !== null && isRecord(header) && header.id !== expectedId ? 'wrong key' : 'bad header',
    );
  }
  return {
    id: header.id,
    storedAtMs: header.storedAtMs,
    status: header.status,
    headers: header.headers as Record<string, string>,
    usage: { inputTokens: header.usage.inputTokens, outputTokens: header.usage.outputTokens },
    body: bytes.subarray(8 + headerLength, bytes.length - 4),
  };
}
