import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createUpstreamAgent, undiciErrors } from './upstream.ts';
import { readBounded, UpstreamExchange, type BodySink } from './upstream-exchange.ts';

/** What each path answers; `/parts` sends three chunks and waits for `/release` between them. */
let server: Server;
let origin: string;
let release: (() => void) | undefined;
const agent = createUpstreamAgent({ connectTimeoutMs: 1_000, headersTimeoutMs: 1_000, bodyTimeoutMs: 300 });

beforeAll(async () => {
  server = createServer((request, response: ServerResponse) => {
    request.resume();
    switch (request.url) {
      case '/json':
        response.writeHead(200, { 'content-type': 'application/json', 'x-answer': 'yes' });
        response.end('{"ok":true}');
        return;
      case '/parts':
        response.writeHead(200, { 'content-type': 'text/plain' });
        response.write('one,');
        release = () => {
          response.write('two,');
          release = () => response.end('three');
        };
        return;
      case '/stall':
        response.writeHead(200, { 'content-type': 'text/plain' });
        response.write('started');
        return; // never ends: undici's body timeout breaks it
      case '/big':
        response.writeHead(500, { 'content-type': 'text/plain' });
        response.end('x'.repeat(100_000));
        return;
      default:
        response.writeHead(404);
        response.end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await agent.close();
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

function send(path: string, signal = new AbortController().signal) {
  return UpstreamExchange.send(
    agent,
    {
      origin,
      path,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: Buffer.from('{}'),
    },
    signal,
  );
}

/** A sink that records what it is handed, in order. */
function recording(): BodySink & { events: string[]; settled: Promise<void> } {
  const events: string[] = [];
  let done!: () => void;
  const settled = new Promise<void>((resolve) => (done = resolve));
  return {
    events,
    settled,
    data: (chunk) => void events.push(`data:${chunk.toString()}`),
    end() {
      events.push('end');
      done();
    },
    error(error) {
      events.push(`error:${error.name}`);
      done();
    },
  };
}

describe('UpstreamExchange', () => {
  it('resolves with the head and hands a body that arrived before anyone read it', async () => {
    const response = await send('/json');
    expect(response.statusCode).toBe(200);
    expect(response.headers['x-answer']).toBe('yes');
    // The whole body is in by now; nothing was lost waiting for the consumer.
    await new Promise((resolve) => setTimeout(resolve, 20));
    const sink = recording();
    response.body.consume(sink);
    await sink.settled;
    expect(sink.events).toEqual(['data:{"ok":true}', 'end']);
  });

  it('holds chunks while paused and hands them over in order on resume', async () => {
    const response = await send('/parts');
    const sink = recording();
    response.body.consume(sink);
    await expect.poll(() => sink.events).toEqual(['data:one,']);
    response.body.pause();
    release!();
    await new Promise((resolve) => setTimeout(resolve, 20));
    release!();
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(sink.events).toEqual(['data:one,']);
    response.body.resume();
    await sink.settled;
    expect(sink.events.join('')).toBe('data:one,data:two,data:threeend');
  });

  it("reports a body the provider breaks off as undici's error", async () => {
    const response = await send('/stall');
    const sink = recording();
    response.body.consume(sink);
    await sink.settled;
    expect(sink.events).toEqual(['data:started', 'error:BodyTimeoutError']);
  });

  it('rejects with the reason when the caller gives up before the head', async () => {
    const abort = new AbortController();
    const pending = send('/parts', abort.signal);
    abort.abort(new Error('app left'));
    await expect(pending).rejects.toThrow('app left');
    release = undefined;
  });

  it('hands the error to the reader when the caller gives up mid-body', async () => {
    const abort = new AbortController();
    const response = await send('/parts', abort.signal);
    const sink = recording();
    response.body.consume(sink);
    await expect.poll(() => sink.events).toEqual(['data:one,']);
    abort.abort(new undiciErrors.RequestAbortedError());
    await sink.settled;
    expect(sink.events).toEqual(['data:one,', 'error:AbortError']);
  });

  it('readBounded cuts a body at the bound', async () => {
    const response = await send('/big');
    expect(response.statusCode).toBe(500);
    const body = await readBounded(response.body, 1_000);
    expect(body.length).toBe(1_000);
  });
});
