export {
  classifyResponse,
  REFUSAL_KINDS,
  type Classification,
  type RefusalKind,
  type UpstreamResponse,
} from './classify.ts';
export {
  parseRateLimitHeaders,
  rateLimitObservations,
  type RateLimitHeaders,
  type RateLimitWindow,
} from './rate-limit-headers.ts';
export { header, retryAfterFromHeaders, type HeaderMap } from './retry-hint.ts';
