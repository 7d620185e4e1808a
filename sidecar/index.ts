/** The sidecar's public surface: start one in process (tests, demo, benchmarks) or as a command. */
export { run, startSidecar, USAGE, type RunningSidecar, type StartSidecarOptions } from './main.ts';
export { loadConfig, type SidecarConfig } from './config.ts';
export { errorResponse, type ErrorResponse } from './errors/error-response.ts';
export {
  classifyResponse,
  parseRateLimitHeaders,
  type Classification,
  type RefusalKind,
} from './refusals/index.ts';
export type { SidecarMetrics } from './metrics.ts';
