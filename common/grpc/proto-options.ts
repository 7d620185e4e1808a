/**
 * The one set of proto-loader options, used to load the .proto at run time (server, client) and
 * to generate the TypeScript types in proto/gen (scripts/gen-proto-types.ts), so the generated
 * types describe exactly the objects the loader produces.
 */
import { fileURLToPath } from 'node:url';
import type { Options } from '@grpc/proto-loader';
import protobuf from 'protobufjs';

/**
 * `longs: Number`, not String: every int64 in the contract is a token count (limits are at most
 * 1e12 by the budget schema, requests at most 1e9), a duration in ms or an epoch time in ms, all far
 * below 2^53, so numbers are exact and spare a string conversion (and its own validation) at every
 * boundary. A value sent above 2^53 decodes to a large, inexact number that range checks still refuse.
 */
export const PROTO_LOADER_OPTIONS = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
} as const satisfies Options;

/**
 * Makes protobufjs read and write int64 fields as numbers rather than Long objects. With the
 * `long` package present (proto-loader brings it) protobufjs turns each int64 of a message into a
 * Long when encoding and when decoding, only for `longs: Number` to turn it back: on the quota
 * service's hot path, a dozen throwaway objects per acquire+settle pair. Read as numbers, the
 * values are the same for every int64 below 2^53, which is all of ours (see above). Process-wide,
 * as protobufjs's configuration is; loadQuotaProto calls it.
 */
export function readInt64AsNumbers(): void {
  const util = protobuf.util as { Long: unknown };
  if (!util.Long) return;
  // protobufjs reads util.Long when configured, to choose its int64 readers (its types do not allow unsetting it).
  util.Long = null;
  protobuf.configure();
}

/** Root of the .proto tree (the include directory). */
export const PROTO_ROOT = fileURLToPath(new URL('../../proto/', import.meta.url));

/** The quota service's contract, relative to PROTO_ROOT. */
export const QUOTA_PROTO = 'tokenlease/v1/quota.proto';

/** The fully qualified service name, as health checks and logs name it. */
export const QUOTA_SERVICE_NAME = 'tokenlease.v1.QuotaService';
