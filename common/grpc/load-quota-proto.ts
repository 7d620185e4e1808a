/**
 * Loads tokenlease.v1 at run time with the project's proto-loader options; the result is typed by
 * the generated proto/gen/quota.ts.
 */
import { loadPackageDefinition } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import type { ProtoGrpcType } from '../../proto/gen/quota.ts';
import { PROTO_LOADER_OPTIONS, PROTO_ROOT, QUOTA_PROTO, readInt64AsNumbers } from './proto-options.ts';

export function loadQuotaProto(): ProtoGrpcType['tokenlease']['v1'] {
  readInt64AsNumbers();
  const definition = loadSync(QUOTA_PROTO, { ...PROTO_LOADER_OPTIONS, includeDirs: [PROTO_ROOT] });
  return (loadPackageDefinition(definition) as unknown as ProtoGrpcType).tokenlease.v1;
}
