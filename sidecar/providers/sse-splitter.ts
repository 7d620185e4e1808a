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

/** Where the event that starts at 0 ends (just past its blank line), or -1 when incomplete. */
function eventEnd(buffer: Buffer, from: number): number {
  for (let i = from; i < buffer.length; i++) {
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

export function parseEventFields(text: string): { event: string; data: string } {
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
    for (;;) {
      const end = eventEnd(this.#pending, from);
      if (end === -1) break;
      const raw = this.#pending.subarray(start, end);
      events.push({ raw, ...parseEventFields(raw.toString('utf8')) });
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
