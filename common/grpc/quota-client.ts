/**
 * The quota service's gRPC client, implementing QuotaApi: a sidecar uses it exactly as it would
 * use the in-process lease engine, and it throws the same typed errors (./status-errors.ts).
 */
import {
  credentials as grpcCredentials,
  Metadata,
  type ChannelCredentials,
  type ChannelOptions,
} from '@grpc/grpc-js';
import type { ServiceError } from '@grpc/grpc-js';
import type { QuotaServiceClient } from '../../proto/gen/tokenlease/v1/QuotaService.ts';
import type {
  AcquireInput,
  Grant,
  HeartbeatInput,
  QuotaApi,
  SettleInput,
  SettleResult,
  UsageSnapshot,
} from '../quota-api.ts';
import type { AcquireRequest } from '../../proto/gen/tokenlease/v1/AcquireRequest.ts';
import type { AcquireResponse__Output } from '../../proto/gen/tokenlease/v1/AcquireResponse.ts';
import type { GetUsageRequest } from '../../proto/gen/tokenlease/v1/GetUsageRequest.ts';
import type { GetUsageResponse__Output } from '../../proto/gen/tokenlease/v1/GetUsageResponse.ts';
import type { HeartbeatRequest } from '../../proto/gen/tokenlease/v1/HeartbeatRequest.ts';
import type { HeartbeatResponse__Output } from '../../proto/gen/tokenlease/v1/HeartbeatResponse.ts';
import type { SettleRequest } from '../../proto/gen/tokenlease/v1/SettleRequest.ts';
import type { SettleResponse__Output } from '../../proto/gen/tokenlease/v1/SettleResponse.ts';
import { CancelledError, StoreUnavailableError } from '../errors/errors.ts';
import { loadQuotaProto } from './load-quota-proto.ts';
import { QuotaSession } from './session-client.ts';
import { errorFromStatus } from './status-errors.ts';
import {
  acquireToWire,
  grantFromWire,
  heartbeatToWire,
  settleResultFromWire,
  settleToWire,
  usageSnapshotFromWire,
} from './wire.ts';

export interface QuotaClientOptions {
  /** `host:port`, or `dns:///name:port` to balance over every address of a headless Service. */
  target: string;
  /**
   * Deadline of each Settle, Heartbeat and GetUsage call; an Acquire gets its maxWaitMs plus this
   * much, since the server may hold it for up to maxWaitMs. Default 2000 ms.
   */
  defaultDeadlineMs?: number;
  /** Insecure by default: in a pod the service is reached over the cluster network (or a mesh). */
  credentials?: ChannelCredentials;
  /** Merged over DEFAULT_CHANNEL_OPTIONS. */
  channelOptions?: ChannelOptions;
  /**
   * `session` (default): Acquire, Settle and Heartbeat as messages on one Session stream, several
   * times cheaper per lease; `unary`: one call each. Both answer alike.
   */
  transport?: 'session' | 'unary';
  /**
   * The caller's identity (on Kubernetes, the pod's projected ServiceAccount token), sent as
   * `authorization: Bearer` metadata; read again for each call or session stream, so a rotated
   * token is picked up.
   */
  identityToken?: () => string | undefined;
  /** Age at which a session stream is replaced by a fresh one (DEFAULT_SESSION_MAX_AGE_MS). */
  sessionMaxAgeMs?: number;
}

export type QuotaClient = QuotaApi & { close(): void };

export const DEFAULT_DEADLINE_MS = 2_000;

export const DEFAULT_CHANNEL_OPTIONS: ChannelOptions = {
  // Ping an idle connection every 30 s and drop it when a ping goes 10 s unanswered, so a replica
  // that vanished without closing its connections (node lost, network partition) is noticed before
  // the next Acquire instead of costing that call its whole deadline. Our grpc-js server does not
  // police ping frequency, so pinging without calls is allowed.
  'grpc.keepalive_time_ms': 30_000,
  'grpc.keepalive_timeout_ms': 10_000,
  'grpc.keepalive_permit_without_calls': 1,
  // The default backoff grows to 120 s: after a quota-service restart sidecars would keep failing
  // (and apply their failure mode) for up to two minutes. Cap it at 5 s.
  'grpc.initial_reconnect_backoff_ms': 250,
  'grpc.max_reconnect_backoff_ms': 5_000,
  // With a dns:/// target naming a headless Service, spread calls over every replica rather than
  // pinning each sidecar to the first address (pick_first, the default).
  'grpc.service_config': JSON.stringify({ loadBalancingConfig: [{ round_robin: {} }] }),
};

type Callback<T> = (error: ServiceError | null, value?: T) => void;
type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: { deadline: Date },
  callback: Callback<Res>,
) => { cancel(): void };

export function createQuotaClient(options: QuotaClientOptions): QuotaClient {
  const { QuotaService } = loadQuotaProto();
  const client: QuotaServiceClient = new QuotaService(
    options.target,
    options.credentials ?? grpcCredentials.createInsecure(),
    { ...DEFAULT_CHANNEL_OPTIONS, ...options.channelOptions },
  );
  const defaultDeadlineMs = options.defaultDeadlineMs ?? DEFAULT_DEADLINE_MS;
  const metadata = (): Metadata => {
    const md = new Metadata();
    const token = options.identityToken?.();
    if (token) md.set('authorization', `Bearer ${token}`);
    return md;
  };
  const session =
    (options.transport ?? 'session') === 'session'
      ? new QuotaSession(client, { metadata, maxAgeMs: options.sessionMaxAgeMs })
      : undefined;

  function call<Req, Res>(
    method: UnaryMethod<Req, Res>,
    request: Req,
    deadlineMs: number,
    signal?: AbortSignal,
  ): Promise<Res> {
    return new Promise<Res>((resolve, reject) => {
      // As the in-process engine does, a caller that gives up gets CancelledError.
      if (signal?.aborted) {
        reject(new CancelledError('the caller gave up before the lease was granted'));
        return;
      }
      let settled = false;
      const onAbort = () => {
        if (settled) return;
        settled = true;
        pending.cancel();
        reject(new CancelledError('the caller gave up while waiting'));
      };
      const pending = method.call(
        client,
        request,
        metadata(),
        { deadline: new Date(Date.now() + deadlineMs) },
        (error, value) => {
          signal?.removeEventListener('abort', onAbort);
          if (settled) return;
          settled = true;
          if (error) reject(errorFromStatus(error));
          else if (value === undefined)
            reject(new StoreUnavailableError('quota service answered without a message'));
          else resolve(value);
        },
      );
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  return {
    async acquire(input: AcquireInput): Promise<Grant> {
      if (session) {
        const response = await session.send(
          'acquire',
          acquireToWire(input),
          input.maxWaitMs + defaultDeadlineMs,
          input.signal,
        );
        return grantFromWire(response.acquire!);
      }
      const method: UnaryMethod<AcquireRequest, AcquireResponse__Output> = client.Acquire;
      // The server may hold an Acquire for up to maxWaitMs; the deadline adds the usual allowance.
      const response = await call(
        method,
        acquireToWire(input),
        input.maxWaitMs + defaultDeadlineMs,
        input.signal,
      );
      return grantFromWire(response);
    },
    async settle(input: SettleInput): Promise<SettleResult> {
      if (session)
        return settleResultFromWire(
          (await session.send('settle', settleToWire(input), defaultDeadlineMs)).settle!,
        );
      const method: UnaryMethod<SettleRequest, SettleResponse__Output> = client.Settle;
      return settleResultFromWire(await call(method, settleToWire(input), defaultDeadlineMs));
    },
    async heartbeat(input: HeartbeatInput): Promise<{ expiresAtMs: number }> {
      if (session) {
        const response = await session.send('heartbeat', heartbeatToWire(input), defaultDeadlineMs);
        return { expiresAtMs: response.heartbeat!.expires_at_ms };
      }
      const method: UnaryMethod<HeartbeatRequest, HeartbeatResponse__Output> = client.Heartbeat;
      const response = await call(method, heartbeatToWire(input), defaultDeadlineMs);
      return { expiresAtMs: response.expires_at_ms };
    },
    async usage(provider?: string): Promise<UsageSnapshot> {
      const method: UnaryMethod<GetUsageRequest, GetUsageResponse__Output> = client.GetUsage;
      return usageSnapshotFromWire(await call(method, { provider: provider ?? '' }, defaultDeadlineMs));
    },
    close() {
      session?.close();
      client.close();
    },
  };
}
