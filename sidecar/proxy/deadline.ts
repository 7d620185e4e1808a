/**
 * How long a call may wait for a lease (and for retries): the caller's header, else the
 * configured default, never more than the configured maximum.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { InvalidRequestError } from '../../common/errors/errors.ts';

/** Absolute epoch milliseconds. */
export const DEADLINE_HEADER = 'x-tokenlease-deadline-ms';
/** Milliseconds from now. */
export const TIMEOUT_HEADER = 'x-tokenlease-timeout-ms';

function numberHeader(headers: IncomingHttpHeaders, name: string): number | undefined {
  const value = headers[name];
  if (value === undefined) return undefined;
  const text = (Array.isArray(value) ? value[0] : value) ?? '';
  const number = text.trim() === '' ? NaN : Number(text);
  if (!Number.isFinite(number) || number < 0)
    throw new InvalidRequestError(name, 'must be a non-negative number of milliseconds');
  return number;
}

/** The call's deadline, epoch ms. */
export function deadlineOf(
  headers: IncomingHttpHeaders,
  nowMs: number,
  defaultTimeoutMs: number,
  maxTimeoutMs: number,
): number {
  const deadline = numberHeader(headers, DEADLINE_HEADER);
  const timeout = numberHeader(headers, TIMEOUT_HEADER);
  const wanted = deadline ?? (timeout === undefined ? nowMs + defaultTimeoutMs : nowMs + timeout);
  return Math.min(wanted, nowMs + maxTimeoutMs);
}
