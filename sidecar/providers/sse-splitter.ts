/**
 * Splits a server-sent-events byte stream into whole events without changing a byte: each event
 * keeps its raw bytes (so it can be forwarded as it came) next to its parsed `event` and `data`
 * fields. Works on bytes, so a UTF-8 character split across chunks is never decoded half.
 */

export interface SseEvent {
  /** The event's bytes, including the blank line that ends it. */
  raw: Buffer;
  /** The `event:` field; empty when absent. */
  event: string;
  /** The `data:` lines joined by newlines. */
  data: string;
}

const LF = 0x0a;
const CR = 0x0d;
const LF_LF = Buffer.from('\n\n');

/**
 * Where the event that starts at 0 ends (just past its blank line), or -1 when incomplete.
 * `firstCr`: the first CR at or after `from`, or -1.
 */
function eventEnd(buffer: Buffer, from: number, firstCr: number): number {
  // With no CR ahead only LF LF can end an event, and a native search finds it; an LF LF before
  // the first CR ends the event too, since every other ending contains a CR and starts at most
  // one byte before it. Otherwise scan byte by byte from there.
  const lfLf = buffer.indexOf(LF_LF, from);
  if (firstCr === -1) return lfLf === -1 ? -1 : lfLf + 2;
  if (lfLf !== -1 && lfLf < firstCr) return lfLf + 2;
  for (let i = Math.max(from, firstCr - 1); i < buffer.length; i++) {
    const byte = buffer[i];
    if (byte === LF) {
      const next = buffer[i + 1];
      if (next === LF) return i + 2;
      if (next === CR) {
        if (i + 2 >= buffer.length) return -1;
        if (buffer[i + 2] === LF) return i + 3;
      }
    } else if (byte === CR && buffer[i + 1] === CR) return i + 2;
  }
  return -1;
}

const DATA_PREFIX = 'data: ';

export function parseEventFields(text: string): { event: string; data: string } {
  // Almost every event is one `data: ...` line ended by LF LF: read that without splitting lines.
  const lastLine = text.length - 2;
  if (
    text.startsWith(DATA_PREFIX) &&
    text.indexOf('\n') === lastLine &&
    text.charCodeAt(lastLine + 1) === LF &&
    text.indexOf('\r') === -1
  ) {
    return { event: '', data: text.slice(DATA_PREFIX.length, lastLine) };
  }
  let event = '';
  const data: string[] = [];
  for (const line of text.split(/\r\n|\r|\n/)) {
    if (line === '' || line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') event = value;
    else if (field === 'data') data.push(value);
  }
  return { event, data: data.join('\n') };
}

export class SseSplitter {
  #pending: Buffer = Buffer.alloc(0);
  /** Where to resume looking for an event's end in #pending, so scanning stays linear. */
  #resume = 0;

  /** Whole events completed by `chunk`. */
  push(chunk: Buffer): SseEvent[] {
    this.#pending = this.#pending.length === 0 ? chunk : Buffer.concat([this.#pending, chunk]);
    const events: SseEvent[] = [];
    let start = 0;
    let from = this.#resume;
    // Searched again only once passed, so a chunk of many events is not rescanned per event.
    let firstCr = this.#pending.indexOf(CR, from);
    for (;;) {
      if (firstCr !== -1 && firstCr < from) firstCr = this.#pending.indexOf(CR, from);
      const end = eventEnd(this.#pending, from, firstCr);
      if (end === -1) break;
      const raw = this.#pending.subarray(start, end);
      const { event, data } = parseEventFields(raw.toString('utf8'));
      events.push({ raw, event, data });
      start = end;
      from = end;
    }
    this.#pending = this.#pending.subarray(start);
    // An end marker is at most 3 bytes: the last 2 may still be completed by the next chunk.
    this.#resume = Math.max(0, this.#pending.length - 2);
    return events;
  }

  /** Bytes of an event the stream never finished. */
  rest(): Buffer {
    return this.#pending;
  }
}
