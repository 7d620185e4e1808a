/**
 * Reads a request body, refusing what is not JSON or is larger than the configured bound before
 * holding more than that in memory.
 */
import type { IncomingMessage } from 'node:http';
import { CancelledError, InvalidRequestError } from '../../common/errors/errors.ts';
import { PayloadTooLargeError, UnsupportedMediaTypeError } from '../errors/sidecar-errors.ts';

export function checkContentType(contentType: string | undefined): void {
  const type = (contentType ?? '').split(';', 1)[0]!.trim().toLowerCase();
  if (type !== 'application/json' && !/^application\/[a-z0-9.+-]+\+json$/.test(type)) {
    throw new UnsupportedMediaTypeError(contentType ?? '');
  }
}

/**
 * The whole body, or PayloadTooLargeError as soon as it passes `maxBytes`. The rest of an
 * oversized body is read and dropped rather than cutting the connection, so the app receives the
 * 413 (and its keep-alive connection survives).
 */
export function readBody(request: IncomingMessage, maxBytes: number): Promise<Buffer> {
  const declared = Number(request.headers['content-length']);
  if (Number.isFinite(declared) && declared > maxBytes)
    return Promise.reject(new PayloadTooLargeError(maxBytes));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let refused = false;
    request.on('data', (chunk: Buffer) => {
      if (refused) return;
      size += chunk.length;
      if (size > maxBytes) {
        refused = true;
        chunks.length = 0;
        reject(new PayloadTooLargeError(maxBytes));
        return;
      }
      chunks.push(chunk);
    });
    request.once('end', () => {
      if (!refused) resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    });
    request.once('error', reject);
    request.once('close', () => {
      if (!request.complete) reject(new CancelledError('the app disconnected while sending the body'));
    });
  });
}

export function parseJson(raw: Buffer): unknown {
  try {
    return JSON.parse(raw.toString('utf8'));
  } catch (error) {
    throw new InvalidRequestError('body', `is not valid JSON (${(error as Error).message})`);
  }
}
