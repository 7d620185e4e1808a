/**
 * The sidecar's HTTP server: provider APIs on their own paths, plus /healthz, /readyz and
 * /metrics. Every failure is answered in the calling API's error format (errors/error-response.ts).
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { CancelledError } from '../../common/errors/errors.ts';
import { errorResponse } from '../errors/error-response.ts';
import { RouteNotFoundError } from '../errors/sidecar-errors.ts';
import type { SidecarMetrics } from '../metrics.ts';
import { parseCallRequest } from '../providers/parse-request.ts';
import { apiOfPath, matchRoute } from '../providers/routes.ts';
import type { QuotaGate } from '../quota/quota-gate.ts';
import { deadlineOf } from './deadline.ts';
import type { ResponseCache } from '../cache/response-cache.ts';
import type { CallInput } from './forward-call.ts';
import { routeCall, type RouteContext } from '../routing/route-call.ts';
import { checkContentType, parseJson, readBody } from './read-body.ts';
import type { Router } from './router.ts';

// Not `import { createServer } from 'node:http'`: an ES import of node:http builds the module's
// namespace, which reads its lazy WebSocket/CloseEvent/MessageEvent getters and so loads Node's
// bundled copy of undici (fetch, WebSocket), which the sidecar never uses: 745 KB of source,
// ~1 MB of the sidecar's idle RSS (~10 MB in an otherwise bare process).
const { createServer } = process.getBuiltinModule('node:http');

export interface ProxyOptions extends RouteContext {
  router: Router;
  gate: QuotaGate;
  metrics: SidecarMetrics;
  maxBodyBytes: number;
  defaultTimeoutMs: number;
  maxTimeoutMs: number;
  /** The shared response cache, when the sidecar has one. */
  cache?: ResponseCache | undefined;
}

/** The sidecar's own refusals, as the requests metric names them. */
function refusalOutcome(status: number): string {
  if (status === 429) return 'throttled';
  if (status === 503) return 'unavailable';
  if (status >= 500) return 'error';
  return 'invalid';
}

function sendError(response: ServerResponse, api: 'openai' | 'anthropic', error: unknown): number {
  const answer = errorResponse(api, error);
  if (response.headersSent) {
    response.destroy();
  } else if (!response.destroyed) {
    response.writeHead(answer.status, {
      ...answer.headers,
      'content-length': Buffer.byteLength(answer.body),
    });
    response.end(answer.body);
  }
  return answer.status;
}

export function createProxyServer(options: ProxyOptions): Server {
  const { metrics, router, gate } = options;

  async function handleCall(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const arrivedAt = performance.now();
    const url = request.url ?? '/';
    const queryAt = url.indexOf('?');
    const pathname = queryAt === -1 ? url : url.slice(0, queryAt);
    const search = queryAt === -1 ? '' : url.slice(queryAt);
    const route = matchRoute(request.method ?? 'GET', pathname);
    const api = route?.api ?? apiOfPath(pathname);
    const abort = new AbortController();
    response.on('close', () => {
      if (!response.writableFinished) abort.abort(new CancelledError('the app disconnected'));
    });
    let provider = '';
    try {
      if (route === undefined) throw new RouteNotFoundError(request.method ?? 'GET', pathname);
      checkContentType(request.headers['content-type']);
      const raw = await readBody(request, options.maxBodyBytes);
      const json = parseJson(raw);
      const call = parseCallRequest(route.operation, json, raw);
      const target = router.resolve(route.api, call.model);
      provider = target.providerId;
      const deadlineMs = deadlineOf(
        request.headers,
        Date.now(),
        options.defaultTimeoutMs,
        options.maxTimeoutMs,
      );
      const requestId = request.headers['x-request-id'];
      const input: CallInput = {
        route,
        search,
        call,
        target,
        headers: request.headers,
        deadlineMs,
        signal: abort.signal,
        arrivedAt,
        requestId: typeof requestId === 'string' ? requestId.slice(0, 128) : undefined,
      };
      const { outcome, provider: servedBy } =
        options.cache === undefined
          ? await routeCall(options, input, response)
          : await options.cache.call(
              {
                operation: route.operation,
                providerId: target.providerId,
                budgetId: target.budgetId,
                model: call.model,
                stream: call.stream,
                body: json as Record<string, unknown>,
                headers: request.headers,
                arrivedAt,
                deadlineMs,
                signal: abort.signal,
              },
              response,
              (recorder) => routeCall(options, { ...input, recorder }, response),
            );
      metrics.requests.inc({ route: route.operation, provider: servedBy ?? provider, outcome });
    } catch (error) {
      if (abort.signal.aborted) {
        metrics.requests.inc({ route: route?.operation ?? 'unknown', provider, outcome: 'cancelled' });
        if (!response.destroyed) response.destroy();
        return;
      }
      const status = sendError(response, api, error);
      metrics.requests.inc({
        route: route?.operation ?? 'unknown',
        provider,
        outcome: refusalOutcome(status),
      });
      // A body left unread (refused before reading) must not be mistaken for the next request.
      if (!request.complete) request.resume();
    }
  }

  async function handleProbe(
    request: IncomingMessage,
    response: ServerResponse,
    path: string,
  ): Promise<void> {
    if (path === '/metrics') {
      const body = await metrics.registry.metrics();
      response.writeHead(200, { 'content-type': metrics.registry.contentType });
      response.end(body);
      return;
    }
    const ready = path === '/healthz' || router.providerIds.some((id) => gate.canServe(id, router.budgetId));
    const body = JSON.stringify({ status: ready ? 'ok' : 'unavailable', quotaService: gate.state });
    response.writeHead(ready ? 200 : 503, { 'content-type': 'application/json' });
    response.end(body);
  }

  const server = createServer({ keepAliveTimeout: 65_000 }, (request, response) => {
    const path = (request.url ?? '/').split('?', 1)[0]!;
    if (request.method === 'GET' && (path === '/healthz' || path === '/readyz' || path === '/metrics')) {
      handleProbe(request, response, path).catch((error: unknown) => sendError(response, 'openai', error));
      return;
    }
    // handleCall answers every failure itself; this catch only guards against a bug there.
    handleCall(request, response).catch((error: unknown) => sendError(response, 'openai', error));
  });
  return server;
}
