/**
 * When a provider says to come back: `retry-after-ms`, `retry-after` (seconds, possibly
 * fractional, or an HTTP date), or a delay written in the error message ("Please try again in
 * 1.146s", "retry after 6 seconds").
 */
import { parseDuration } from '../../common/duration.ts';

export type HeaderMap = Record<string, string | string[] | undefined>;

/** One value of a header (lower-case name), the first when repeated. */
export function header(headers: HeaderMap, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** Milliseconds to wait according to the retry headers, or undefined when none is usable. */
export function retryAfterFromHeaders(headers: HeaderMap, nowMs: number): number | undefined {
  const ms = header(headers, 'retry-after-ms');
  if (ms !== undefined) {
    const value = Number(ms);
    if (Number.isFinite(value) && value >= 0) return Math.ceil(value);
  }
  const after = header(headers, 'retry-after')?.trim();
  if (after === undefined || after === '') return undefined;
  if (/^\d+(\.\d+)?$/.test(after)) return Math.ceil(Number(after) * 1000);
  const date = Date.parse(after);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - nowMs);
}

const TRY_AGAIN_DURATION = /try again in ((?:\d+(?:\.\d+)?(?:ms|s|m|h))+)/i;
const RETRY_AFTER_WORDS = /retry after (\d+(?:\.\d+)?) (milliseconds?|seconds?|minutes?)/i;
const WORD_UNIT_MS: Record<string, number> = { millisecond: 1, second: 1000, minute: 60_000 };

/** A delay stated in an error message, in milliseconds. */
export function retryAfterFromMessage(message: string): number | undefined {
  const duration = TRY_AGAIN_DURATION.exec(message);
  if (duration) return parseDuration(duration[1]!);
  const words = RETRY_AFTER_WORDS.exec(message);
  if (words) {
    const unit = words[2]!.toLowerCase().replace(/s$/, '');
    return Math.ceil(Number(words[1]) * WORD_UNIT_MS[unit]!);
  }
  return undefined;
}

const DATE_TIME = /(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2}(?:\.\d+)?)(Z|[+-]\d{2}:?\d{2})?/;

/**
 * A reset time stated in an error message ("... will reset at 2025-09-18 18:03:55"), epoch ms.
 * Zhipu writes local Beijing time without a zone, hence the default offset.
 */
export function resetAtFromMessage(message: string, defaultOffset = '+08:00'): number | undefined {
  const match = DATE_TIME.exec(message);
  if (!match) return undefined;
  const zone = match[3] ?? defaultOffset;
  const normalized = zone === 'Z' || zone.includes(':') ? zone : `${zone.slice(0, 3)}:${zone.slice(3)}`;
  const ms = Date.parse(`${match[1]}T${match[2]}${normalized}`);
  return Number.isNaN(ms) ? undefined : ms;
}
