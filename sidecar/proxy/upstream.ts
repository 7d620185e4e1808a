/**
 * The HTTP side towards providers: one undici Agent (a keep-alive pool per upstream origin) with
 * connect, headers and body timeouts, and the header rewriting in both directions.
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { createRequire } from 'node:module';
import type * as Undici from 'undici';

// undici's own files, not its index: the index loads the whole package (fetch, WebSocket,
// EventSource, the cache stores, the mock agents, ...), ~3 MB of the sidecar's idle RSS, for the
// one Agent class the sidecar uses. The index also mixes request/stream/pipeline/... into
// Dispatcher.prototype; the sidecar calls none of them (it dispatches: upstream-exchange.ts), so
// that is left out too. undici is pinned to an exact version, and the sidecar tests call through
// this Agent, so a moved file fails them.
const require = createRequire(import.meta.url);
const Agent = require('undici/lib/dispatcher/agent.js') as typeof Undici.Agent;
/** undici's error classes (undici's `errors` export, from the same file). */
export const undiciErrors = require('undici/lib/core/errors.js') as typeof Undici.errors;

export interface UpstreamTimeouts {
  connectTimeoutMs: number;
  /** From sending the request to the response headers. */
  headersTimeoutMs: number;
  /** Longest silence between two body chunks (a stream may run longer in total). */
  bodyTimeoutMs: number;
}

export function createUpstreamAgent(timeouts: UpstreamTimeouts): Undici.Agent {
  return new Agent({
    connect: { timeout: timeouts.connectTimeoutMs },
    headersTimeout: timeouts.headersTimeoutMs,
    bodyTimeout: timeouts.bodyTimeoutMs,
    keepAliveTimeout: 30_000,
    keepAliveMaxTimeout: 300_000,
    // Provider streams are long-lived: do not cap connections per origin below what calls need.
    connections: null,
    pipelining: 1,
  });
}

/** Hop-by-hop headers (RFC 9110 section 7.6.1) and those the sidecar sets itself. */
const DROP_REQUEST = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'proxy-authenticate',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
  'content-length',
  // The app's own key never reaches the provider: the sidecar injects the provider's.
  'authorization',
  'x-api-key',
  'api-key',
  // Streams are parsed for usage, so they must arrive uncompressed.
  'accept-encoding',
  'expect',
]);

const DROP_RESPONSE = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'trailer',
]);

/** Names the provider that served the call, on every answer that came from one. */
const PROVIDER_HEADER = 'x-tokenlease-provider';

// The copies below run twice per call: `for...in` over the header objects (plain objects from
// Node and undici) instead of Object.entries, which allocates an array per header.

/** The headers sent upstream: the app's, less hop-by-hop, credentials and sidecar controls, plus the key. */
export function upstreamRequestHeaders(
  incoming: IncomingHttpHeaders,
  auth: [string, string] | undefined,
): Record<string, string | string[]> {
  const headers: Record<string, string | string[]> = {};
  for (const name in incoming) {
    const value = incoming[name];
    if (value === undefined || DROP_REQUEST.has(name) || name.startsWith('x-tokenlease-')) continue;
    headers[name] = value;
  }
  headers['content-type'] = 'application/json';
  headers['accept-encoding'] = 'identity';
  if (auth !== undefined) headers[auth[0]] = auth[1];
  return headers;
}

/**
 * The headers passed back to the app, naming the provider that answered; `content-length` goes
 * when the body is changed on the way. Given whole to writeHead, they take Node's fast path (no
 * setHeader before it, which would make writeHead set each of them one by one).
 */
export function clientResponseHeaders(
  upstream: Record<string, string | string[] | undefined>,
  bodyChanged: boolean,
  provider: string,
): OutgoingHttpHeaders {
  const headers: OutgoingHttpHeaders = {};
  for (const name in upstream) {
    const value = upstream[name];
    if (value === undefined || DROP_RESPONSE.has(name)) continue;
    if (bodyChanged && name === 'content-length') continue;
    headers[name] = value;
  }
  headers[PROVIDER_HEADER] = provider;
  return headers;
}
