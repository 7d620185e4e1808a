export { parseCallRequest, type CallRequest } from './parse-request.ts';
export { apiOfPath, matchRoute, OPERATIONS, type Operation, type Route } from './routes.ts';
export { SseSplitter, type SseEvent } from './sse-splitter.ts';
export { StreamUsage, usageFromJson } from './usage.ts';
