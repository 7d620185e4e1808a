/** A TCP proxy for tests of what a Redis client does when its connections break at a bad moment. */
import { connect, createServer, type Socket } from 'node:net';
import { redisUrl } from './redis.ts';

/**
 * A TCP proxy to the tests' Redis that can drop every connection, and hold back Redis's answers on
 * the next connection that sends a SUBSCRIBE or PSUBSCRIBE.
 */
export async function startHoldingProxy() {
  const target = new URL(redisUrl());
  const sockets = new Set<Socket>();
  let onSubscribe: (() => void) | undefined;
  const server = createServer((client) => {
    const upstream = connect(Number(target.port || 6379), target.hostname);
    let held = false;
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('error', () => {});
      socket.on('close', () => {
        sockets.delete(socket);
        client.destroy();
        upstream.destroy();
      });
    }
    client.on('data', (chunk: Buffer) => {
      if (onSubscribe && /subscribe/i.test(chunk.toString('latin1'))) {
        held = true;
        onSubscribe();
        onSubscribe = undefined;
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (!held) client.write(chunk);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `redis://127.0.0.1:${(server.address() as { port: number }).port}`,
    /** Resolves once a connection has sent a SUBSCRIBE or PSUBSCRIBE, whose answer it then never gets. */
    holdNextSubscribe: () => new Promise<void>((resolve) => (onSubscribe = resolve)),
    dropAll: () => {
      for (const socket of sockets) socket.destroy();
    },
    close: () => {
      for (const socket of sockets) socket.destroy();
      server.close();
    },
  };
}
