/**
 * A client of the standard grpc.health.v1 service (as served by the quota service), for probes,
 * `tokenlease status` and tests.
 */
import { credentials, loadPackageDefinition, type Client, type ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { protoPath } from 'grpc-health-check';
import { PROTO_LOADER_OPTIONS } from './proto-options.ts';

export type ServingStatus = 'UNKNOWN' | 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';

interface HealthClient extends Client {
  Watch(request: { service: string }): NodeJS.EventEmitter & { cancel(): void };
  Check(
    request: { service: string },
    options: { deadline: Date },
    callback: (error: ServiceError | null, response?: { status: ServingStatus }) => void,
  ): void;
}

type HealthClientConstructor = new (
  target: string,
  creds: ReturnType<typeof credentials.createInsecure>,
) => HealthClient;

function healthClientConstructor(): HealthClientConstructor {
  const loaded = loadPackageDefinition(loadSync(protoPath, PROTO_LOADER_OPTIONS)) as unknown as {
    grpc: { health: { v1: { Health: HealthClientConstructor } } };
  };
  return loaded.grpc.health.v1.Health;
}

/**
 * One Check of `service` ('' for the whole server). Rejects with the gRPC error when the server
 * cannot be reached or does not know the service.
 */
export async function checkHealth(target: string, options: { service?: string; deadlineMs?: number } = {}) {
  const Health = healthClientConstructor();
  const client = new Health(target, credentials.createInsecure());
  try {
    return await new Promise<ServingStatus>((resolve, reject) => {
      client.Check(
        { service: options.service ?? '' },
        { deadline: new Date(Date.now() + (options.deadlineMs ?? 2_000)) },
        (error, response) =>
          error || !response ? reject(error ?? new Error('empty health answer')) : resolve(response.status),
      );
    });
  } finally {
    client.close();
  }
}

/**
 * Follows `service`'s status with the streaming Watch call: `onStatus` gets the current status,
 * then every change. `close()` ends the stream.
 */
export function watchHealth(
  target: string,
  service: string,
  onStatus: (status: ServingStatus) => void,
): { close(): void } {
  const Health = healthClientConstructor();
  const client = new Health(target, credentials.createInsecure());
  const stream = client.Watch({ service });
  stream.on('data', (message: { status: ServingStatus }) => onStatus(message.status));
  // The stream ends with an error when the server goes away or the watch is cancelled.
  stream.on('error', () => {});
  return {
    close() {
      stream.cancel();
      client.close();
    },
  };
}
