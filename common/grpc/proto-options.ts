/**
 * The one set of proto-loader options, used to load the .proto at run time (server, client) and
 * to generate the TypeScript types in proto/gen (scripts/gen-proto-types.ts), so the generated
 * types describe exactly the objects the loader produces.
 */
import { fileURLToPath } from 'node:url';
import type { Options } from '@grpc/proto-loader';

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

/** Root of the .proto tree (the include directory). */
export const PROTO_ROOT = fileURLToPath(new URL('../../proto/', import.meta.url));

/** The quota service's contract, relative to PROTO_ROOT. */
export const QUOTA_PROTO = 'tokenlease/v1/quota.proto';

/** The fully qualified service name, as health checks and logs name it. */
export const QUOTA_SERVICE_NAME = 'tokenlease.v1.QuotaService';
