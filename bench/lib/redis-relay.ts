/**
 * The latency floor under bench:quota's figures: a process that does nothing but relay each
 * message to Redis (one PING) and answer it, over a plain TCP connection. The same two hops as
 * a quota service call (client -> service -> Redis and back) with no lease logic, no gRPC and no
 * Lua, on the same machine at the same rate: what is left of a p99 here is the machine's.
 *
 * Run as a child process like the CLI's commands (bench/lib/cli-process.ts: `node
 * bench/lib/redis-relay.ts relay --listen 127.0.0.1:0 <redis-url>`, listening on a free port
 * whatever `--listen` says); it logs its port as `{"message":"listening","port":N}`. `RelayClient` sends newline-framed ids and resolves each
 * when the same id comes back.
 */
import { createConnection, createServer, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';

export class RelayClient {
  readonly #socket: Socket;
  readonly #pending = new Map<number, () => void>();
  #next = 0;

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.setNoDelay(true);
    createInterface({ input: socket }).on('line', (line) => {
      const id = Number(line);
      this.#pending.get(id)?.();
      this.#pending.delete(id);
    });
  }

  static connect(port: number): Promise<RelayClient> {
    return new Promise((resolve, reject) => {
      const socket = createConnection({ host: '127.0.0.1', port }, () => resolve(new RelayClient(socket)));
      socket.once('error', reject);
    });
  }

  /** One round trip through the relay and Redis. */
  call(): Promise<void> {
    const id = this.#next++;
    return new Promise((resolve) => {
      this.#pending.set(id, resolve);
      this.#socket.write(`${id}\n`);
    });
  }

  close(): void {
    this.#socket.destroy();
  }
}

function serve(redisUrl: string): void {
  const redis = new Redis(redisUrl);
  const server = createServer((socket) => {
    socket.setNoDelay(true);
    createInterface({ input: socket }).on('line', (id) => {
      redis.ping().then(
        () => socket.write(`${id}\n`),
        () => socket.destroy(),
      );
    });
  });
  server.listen(0, '127.0.0.1', () => {
    const address = server.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    process.stdout.write(`${JSON.stringify({ message: 'listening', port })}\n`);
  });
  process.once('SIGTERM', () => {
    server.close();
    redis.disconnect();
    process.exit(0);
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) serve(process.argv.at(-1)!);
