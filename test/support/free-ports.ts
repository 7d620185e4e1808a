/** Free loopback TCP ports, for the servers tests and benchmarks start on ports of their own. */
import { createServer, type Server } from 'node:net';

/**
 * `count` ports nothing listens on right now, all different: every listener stays open until each
 * port is known, so none is handed out twice. (Another process may still take one before use.)
 */
export async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<Server>((resolve, reject) => {
          const server = createServer();
          server.once('error', reject);
          server.listen(0, '127.0.0.1', () => resolve(server));
        }),
    ),
  );
  const ports = servers.map((server) => {
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('no TCP port assigned');
    return address.port;
  });
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  return ports;
}

/** One port nothing listens on right now. */
export async function freePort(): Promise<number> {
  return (await freePorts(1))[0]!;
}
