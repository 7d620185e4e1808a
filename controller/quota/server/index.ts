/** The quota service's gRPC server; the lease engine behind it lives in ../engine. */
export { startQuotaServer, DEFAULT_SERVER_OPTIONS } from './server.ts';
export type { QuotaServer, QuotaServerOptions, ServableEngine } from './server.ts';
export type { Logger } from './logger.ts';
export { silentLogger } from './logger.ts';
export { bearerToken } from './quota-service.ts';
export type { Authorizer } from './quota-service.ts';
