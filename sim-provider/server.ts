/**
 * The simulated LLM provider: an HTTP server speaking the OpenAI-compatible APIs (chat
 * completions, completions, embeddings, responses) and Anthropic messages, under any path prefix
 * (`/v1/chat/completions`, `/api/paas/v4/chat/completions`). It enforces its limits exactly (see
 * limiter.ts for the charging rules), refuses like the configured flavour, injects faults, and
 * records every request in a ledger.
 *
 * Per request: read and parse the body -> validate -> pre-admission faults (balance, 500,
 * overload; they consume nothing) -> admission against every limit -> answer (after the
 * configured latency, streaming at the configured speed, or dropping / hanging on purpose) ->
 * on completion, correct the charge to the real usage and free the concurrency slot.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ConfigError } from '../common/errors/errors.ts';
import {
  countPromptTokens,
  maxOutputTokens,
  requestApiForPath,
  type RequestApi,
} from '../common/tokens/count-tokens.ts';
import {
  FAULTS,
  parseSettings,
  serverSettingsSchema,
  simSettingsSchema,
  type Fault,
  type ServerSettings,
  type SimSettings,
  type SimSettingsInput,
} from './config.ts';
import { rateLimitHeaders, refusalResponse, type RefusalInput, type WireResponse } from './flavors.ts';
import { hashText, mulberry32, replyTokens } from './generate.ts';
import { Ledger, type LedgerEntry, type LedgerSummary } from './ledger.ts';
import { Limiter, type Ticket, type TokenAmounts } from './limiter.ts';
import { completionBody, embeddingsBody, streamFrames, type Completion } from './responses.ts';
import { validateRequest } from './validate-request.ts';

export interface SimProviderOptions extends SimSettingsInput, Partial<ServerSettings> {
  /** Epoch milliseconds; a monotonic wall clock by default. Tests pass their own. */
  clock?: () => number;
}

export interface SimLedgerView {
  entries(sinceId?: number): LedgerEntry[];
  summary(): LedgerSummary;
}

export interface SimProvider {
  /** `http://127.0.0.1:PORT`; clients add `/v1`. */
  url: string;
  port: number;
  ledger: SimLedgerView;
  settings(): SimSettings;
  /** Changes settings while running (validated; throws ConfigError). Limits keep their state. */
  setConfig(partial: SimSettingsInput): SimSettings;
  /** The next `count` requests get `fault` (refusals before admission; drop/hang after it). */
  inject(fault: Fault, count?: number): void;
  /** Forgets the ledger, every window and slot, and pending injected faults. */
  reset(): void;
  close(): Promise<void>;
}

const PRE_ADMISSION_FAULTS = new Set<Fault>(['overload', 'modelOverload', 'balance', 'serverError']);
const MAX_ADMIN_BODY = 1024 * 1024;

type Json = Record<string, unknown>;

const defaultClock = () => performance.timeOrigin + performance.now();

/** One admitted request between admission and completion. */
interface Active {
  entry: LedgerEntry;
  ticket: Ticket;
  promptTokens: number;
  sentTokens: number;
  /** Set when we end the exchange on purpose (drop, hang) before the close event. */
  outcome: 'dropped' | 'hung' | undefined;
  timer: NodeJS.Timeout | undefined;
  /** Writes keep-alive lines while the response is delayed. */
  keepAlive: NodeJS.Timeout | undefined;
}

class SimServer {
  settings: SimSettings;
  readonly server: ServerSettings;
  readonly clock: () => number;
  limiter: Limiter;
  ledger: Ledger;
  private random: () => number;
  private forced: Array<{ fault: Fault; remaining: number }> = [];
  private readonly active = new Set<Active>();

  constructor(options: SimProviderOptions) {
    const { clock, host, port, maxBodyBytes, ledgerCapacity, ...settings } = options;
    this.server = parseSettings(serverSettingsSchema, { host, port, maxBodyBytes, ledgerCapacity });
    this.settings = parseSettings(simSettingsSchema, settings);
    this.clock = clock ?? defaultClock;
    this.limiter = new Limiter(this.settings.limits);
    this.ledger = new Ledger(this.server.ledgerCapacity);
    this.random = mulberry32(this.settings.seed);
  }

  setConfig(partial: SimSettingsInput): SimSettings {
    if (typeof partial !== 'object' || partial === null || Array.isArray(partial)) {
      throw new ConfigError('config', 'expected an object of settings');
    }
    const next = parseSettings(simSettingsSchema, { ...this.settings, ...partial });
    if (next.seed !== this.settings.seed) this.random = mulberry32(next.seed);
    this.limiter.setLimits(next.limits);
    this.settings = next;
    return next;
  }

  inject(fault: Fault, count = 1): void {
    if (!FAULTS.includes(fault))
      throw new ConfigError('fault', `must be one of ${FAULTS.join(', ')}, got ${JSON.stringify(fault)}`);
    if (!Number.isInteger(count) || count < 1)
      throw new ConfigError('count', `must be a positive integer, got ${count}`);
    this.forced.push({ fault, remaining: count });
  }

  reset(): void {
    this.limiter.reset();
    this.ledger = new Ledger(this.server.ledgerCapacity);
    this.forced = [];
    this.random = mulberry32(this.settings.seed);
  }

  summary(): LedgerSummary {
    const now = this.clock();
    return this.ledger.summary(
      this.limiter.all().map((limit) => ({
        label: limit.label,
        amount: limit.amount,
        windowMs: limit.windowMs,
        used: limit.log ? limit.log.used(now) : limit.inFlight,
        peak: limit.peak,
      })),
    );
  }

  /** Ends everything still open (hung or slow requests) so close() can finish. */
  abortAll(): void {
    for (const active of this.active) {
      clearTimeout(active.timer);
      clearInterval(active.keepAlive);
    }
  }

  // ---- faults ----

  /** An injected (forced first, then random) fault of the given stage, consumed if it applies. */
  private takeFault(stage: 'pre' | 'post'): Fault | undefined {
    const head = this.forced[0];
    if (head && PRE_ADMISSION_FAULTS.has(head.fault) === (stage === 'pre')) {
      if (--head.remaining === 0) this.forced.shift();
      return head.fault;
    }
    const s = this.settings;
    if (stage === 'pre') {
      if (s.balanceExhausted) return 'balance';
      if (s.errorRate === 0 && s.overloadRate === 0) return undefined;
      const roll = this.random();
      if (roll < s.errorRate) return 'serverError';
      if (roll < s.errorRate + s.overloadRate) return 'overload';
      return undefined;
    }
    if (s.dropRate === 0 && s.hangRate === 0) return undefined;
    const roll = this.random();
    if (roll < s.dropRate) return 'drop';
    if (roll < s.dropRate + s.hangRate) return 'hang';
    return undefined;
  }

  // ---- HTTP ----

  handle(req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? '/';
    const query = url.indexOf('?');
    const path = query < 0 ? url : url.slice(0, query);
    if (path.startsWith('/_sim/')) {
      this.admin(req, res, path, new URLSearchParams(query < 0 ? '' : url.slice(query + 1))).catch(
        (error: unknown) => {
          sendJson(res, 500, { error: { message: String(error) } });
        },
      );
      return;
    }
    if (req.method === 'GET' && /\/models\/?$/.test(path)) {
      this.listModels(res, path);
      return;
    }
    const api = req.method === 'POST' ? requestApiForPath(path) : undefined;
    readBody(req, this.server.maxBodyBytes).then(
      (body) => this.onRequest(req, res, path, api, body),
      () => res.destroy(),
    );
  }

  private listModels(res: ServerResponse, path: string): void {
    const models = this.settings.models.length > 0 ? this.settings.models : ['sim-model'];
    const created = Math.floor(Date.now() / 1000);
    if (this.settings.flavor === 'anthropic' && path.endsWith('/v1/models')) {
      const data = models.map((id) => ({
        type: 'model',
        id,
        display_name: id,
        created_at: new Date(created * 1000).toISOString(),
      }));
      sendJson(res, 200, { data, has_more: false, first_id: models[0], last_id: models.at(-1) });
      return;
    }
    sendJson(res, 200, {
      object: 'list',
      data: models.map((id) => ({ id, object: 'model', created, owned_by: 'tokenlease-sim' })),
    });
  }

  private refuse(
    res: ServerResponse,
    entry: LedgerEntry,
    input: Omit<RefusalInput, 'anthropicApi' | 'nowMs' | 'model'>,
    extraHeaders: Record<string, string> = {},
  ): void {
    const now = this.clock();
    const response = refusalResponse(this.settings.flavor, {
      ...input,
      model: entry.model,
      anthropicApi: entry.api === 'messages',
      nowMs: now,
    });
    this.ledger.refuse(entry, now, response.status, {
      class: response.class,
      code: response.code,
      ...(input.limit ? { limit: input.limit.label } : {}),
      ...(input.retryAfterMs !== undefined && Number.isFinite(input.retryAfterMs)
        ? { retryAfterMs: input.retryAfterMs }
        : {}),
    });
    sendWire(res, response, { ...extraHeaders, ...this.requestIdHeader(entry) });
  }

  private requestIdHeader(entry: LedgerEntry): Record<string, string> {
    return this.settings.flavor === 'anthropic'
      ? { 'request-id': entry.requestId }
      : { 'x-request-id': entry.requestId };
  }

  private onRequest(
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    api: RequestApi | undefined,
    raw: { text: string; tooLarge: boolean },
  ): void {
    const arrival = this.clock();
    const entry = this.ledger.open({
      arrivalMs: arrival,
      api: api ?? 'other',
      path,
      model: '',
      stream: false,
      promptTokens: 0,
    });
    if (!api) {
      this.refuse(res, entry, { kind: 'unknownRoute', message: `Invalid URL (${req.method} ${path})` });
      return;
    }
    if (raw.tooLarge) {
      this.refuse(res, entry, {
        kind: 'bodyTooLarge',
        message: `Request body exceeds ${this.server.maxBodyBytes} bytes.`,
      });
      return;
    }
    let body: Json;
    try {
      body = JSON.parse(raw.text) as Json;
    } catch {
      this.refuse(res, entry, {
        kind: 'invalid',
        param: 'body',
        message:
          "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The API expects a JSON payload, but what was sent was not valid JSON.)",
      });
      return;
    }
    const problem = validateRequest(body, api);
    if (typeof body === 'object' && body !== null && typeof body.model === 'string') entry.model = body.model;
    if (problem) {
      this.refuse(res, entry, { kind: 'invalid', message: problem.message, param: problem.param });
      return;
    }
    const settings = this.settings;
    entry.stream = api !== 'embeddings' && body.stream === true;
    if (settings.models.length > 0 && !settings.models.includes(entry.model)) {
      this.refuse(res, entry, { kind: 'notFound' });
      return;
    }
    const override = req.headers['x-sim-output-tokens'];
    const generated = override === undefined ? settings.outputTokens : Number(override);
    if (!Number.isInteger(generated) || generated < 0) {
      this.refuse(res, entry, {
        kind: 'invalid',
        param: 'x-sim-output-tokens',
        message: 'x-sim-output-tokens must be a non-negative integer',
      });
      return;
    }

    const promptTokens = countPromptTokens(body, api);
    entry.promptTokens = promptTokens;
    const choices =
      api === 'chat.completions' || api === 'completions' ? (typeof body.n === 'number' ? body.n : 1) : 1;
    const requestedMax = maxOutputTokens(body, api);
    const chargedOutput = requestedMax ?? settings.defaultMaxOutputTokens * choices;
    const perChoiceMax = chargedOutput / choices;

    const fault = this.takeFault('pre');
    if (fault) {
      this.refuse(res, entry, {
        kind: fault === 'serverError' ? 'serverError' : (fault as RefusalInput['kind']),
      });
      return;
    }

    const now = this.clock();
    const admission = this.limiter.admit(now, entry.model, { input: promptTokens, output: chargedOutput });
    if (!admission.ok) {
      const { refusal } = admission;
      this.refuse(
        res,
        entry,
        {
          kind: refusal.reason === 'tooLarge' ? 'tooLarge' : 'limit',
          limit: refusal.limit,
          requested: refusal.requested,
          used: refusal.used,
          retryAfterMs: refusal.retryAfterMs,
        },
        rateLimitHeaders(settings.flavor, this.limiter.read(now, entry.model), now),
      );
      return;
    }
    this.ledger.admit(entry, { input: promptTokens, output: chargedOutput });
    const active: Active = {
      entry,
      ticket: admission.ticket,
      promptTokens,
      sentTokens: 0,
      outcome: undefined,
      timer: undefined,
      keepAlive: undefined,
    };
    this.active.add(active);
    res.on('close', () => this.complete(active, res));

    const headers: Record<string, string> = {
      ...rateLimitHeaders(settings.flavor, this.limiter.read(now, entry.model), now),
      ...this.requestIdHeader(entry),
    };
    const postFault = this.takeFault('post');
    if (postFault === 'hang') {
      active.outcome = 'hung';
      return;
    }
    const drop = postFault === 'drop';
    const stream = entry.stream;
    const delayed = settings.latencyMs > 0 || (!stream && settings.perTokenMs > 0);
    if (settings.keepAliveMs > 0 && delayed) {
      // DeepSeek's way with slow answers: status and headers at once, then keep-alive lines.
      res.writeHead(200, { ...(stream ? SSE_HEADERS : JSON_HEADERS), ...headers });
      const line = stream ? ': keep-alive\n\n' : '\n';
      active.keepAlive = setInterval(() => res.write(line), settings.keepAliveMs);
    }

    if (api === 'embeddings') {
      this.after(active, settings.latencyMs, () => {
        clearInterval(active.keepAlive);
        if (drop) return this.drop(active, res);
        sendJson(
          res,
          200,
          embeddingsBody(body, entry.model, promptTokens, settings.embeddingDimensions),
          headers,
        );
      });
      return;
    }

    const perChoice = Math.min(perChoiceMax, generated);
    const seed = hashText(JSON.stringify(body.messages ?? body.prompt ?? body.input ?? ''));
    const completion: Completion = {
      api,
      model: entry.model,
      id: responseId(api, entry.id),
      created: Math.floor(Date.now() / 1000),
      promptTokens,
      choices: Array.from({ length: choices }, (_, index) => replyTokens(seed, perChoice, index)),
      truncated: perChoice >= perChoiceMax,
      request: body,
    };
    const totalTokens = perChoice * choices;

    if (!entry.stream) {
      this.after(active, settings.latencyMs + settings.perTokenMs * totalTokens, () => {
        clearInterval(active.keepAlive);
        if (drop) return this.drop(active, res);
        active.sentTokens = totalTokens;
        sendJson(res, 200, completionBody(completion), headers);
      });
      return;
    }

    const streamOptions = body.stream_options as Json | undefined | null;
    const frames = streamFrames(completion, {
      includeUsage: streamOptions?.include_usage === true,
      usageOnEveryChunk: settings.usageOnEveryChunk,
    });
    this.after(active, settings.latencyMs, () => {
      clearInterval(active.keepAlive);
      if (!res.headersSent) res.writeHead(200, { ...SSE_HEADERS, ...headers });
      const dropAfter = drop ? Math.floor(totalTokens / 2) : Infinity;
      if (!drop && settings.perTokenMs === 0) {
        active.sentTokens = totalTokens;
        res.end(frames.map((frame) => frame.text).join(''));
        return;
      }
      let index = 0;
      const pump = (): void => {
        while (index < frames.length) {
          if (active.sentTokens >= dropAfter) return this.drop(active, res);
          const frame = frames[index++]!;
          active.sentTokens += frame.tokens;
          const more = res.write(frame.text);
          if (frame.tokens > 0 && settings.perTokenMs > 0) {
            this.after(active, settings.perTokenMs, pump);
            return;
          }
          if (!more) {
            res.once('drain', pump);
            return;
          }
        }
        res.end();
      };
      pump();
    });
  }

  /** Runs `next` after `ms` (at once when 0), unless the exchange has ended meanwhile. */
  private after(active: Active, ms: number, next: () => void): void {
    if (ms <= 0) {
      next();
      return;
    }
    active.timer = setTimeout(() => {
      active.timer = undefined;
      if (this.active.has(active)) next();
    }, ms);
  }

  /** Cuts the connection; what was already written reaches the client first, as on a real drop. */
  private drop(active: Active, res: ServerResponse): void {
    active.outcome = 'dropped';
    const socket = res.socket;
    if (res.headersSent && socket) socket.end(() => socket.destroy());
    else res.destroy();
  }

  /** The response finished or the connection closed: settle the charge, free the slot. */
  private complete(active: Active, res: ServerResponse): void {
    if (!this.active.delete(active)) return;
    clearTimeout(active.timer);
    clearInterval(active.keepAlive);
    const usage: TokenAmounts = { input: active.promptTokens, output: active.sentTokens };
    this.limiter.complete(active.ticket, usage);
    const outcome = active.outcome ?? (res.writableFinished ? 'ok' : 'aborted');
    if (active.entry.status === 0 && res.headersSent) active.entry.status = res.statusCode;
    this.ledger.finish(active.entry, this.clock(), outcome, usage);
  }

  // ---- admin API ----

  private async admin(
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    query: URLSearchParams,
  ): Promise<void> {
    const route = `${req.method} ${path.replace(/\/+$/, '')}`;
    switch (route) {
      case 'GET /_sim/ledger': {
        const since = Number(query.get('since') ?? 0);
        sendJson(res, 200, {
          summary: this.summary(),
          entries: this.ledger.entries(Number.isFinite(since) ? since : 0),
        });
        return;
      }
      case 'GET /_sim/summary':
        sendJson(res, 200, this.summary());
        return;
      case 'GET /_sim/config':
        sendJson(res, 200, this.settings);
        return;
      case 'POST /_sim/config':
      case 'POST /_sim/inject': {
        const raw = await readBody(req, MAX_ADMIN_BODY);
        let body: unknown;
        try {
          body = JSON.parse(raw.text || '{}');
        } catch {
          sendJson(res, 400, { error: { field: 'body', message: 'expected a JSON object' } });
          return;
        }
        try {
          if (route === 'POST /_sim/config') {
            sendJson(res, 200, this.setConfig(body as SimSettingsInput));
          } else {
            const { fault, count } = (body ?? {}) as { fault?: Fault; count?: number };
            this.inject(fault as Fault, count ?? 1);
            sendJson(res, 200, { injected: fault, count: count ?? 1 });
          }
        } catch (error) {
          if (!(error instanceof ConfigError)) throw error;
          sendJson(res, 400, { error: { field: error.field, message: error.message } });
        }
        return;
      }
      case 'POST /_sim/reset':
        this.reset();
        sendJson(res, 200, { reset: true });
        return;
      default:
        sendJson(res, 404, { error: { message: `unknown admin route ${route}` } });
    }
  }
}

function responseId(api: RequestApi, id: number): string {
  const suffix = id.toString(36).padStart(8, '0');
  switch (api) {
    case 'chat.completions':
      return `chatcmpl-sim${suffix}`;
    case 'completions':
      return `cmpl-sim${suffix}`;
    case 'responses':
      return `resp_sim${suffix}`;
    case 'messages':
      return `msg_sim${suffix}`;
    case 'embeddings':
      return `emb-sim${suffix}`;
  }
}

/** The body as text; past `limit` bytes the rest is drained and discarded and `tooLarge` is set. */
function readBody(req: IncomingMessage, limit: number): Promise<{ text: string; tooLarge: boolean }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) tooLarge = true;
      if (!tooLarge) chunks.push(chunk);
    });
    req.on('end', () => resolve({ text: tooLarge ? '' : Buffer.concat(chunks).toString('utf8'), tooLarge }));
    req.on('error', reject);
  });
}

const JSON_HEADERS = { 'content-type': 'application/json' };
const SSE_HEADERS = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' };

/** Sends a JSON body; after keep-alive lines the status and headers are already out. */
function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  if (res.headersSent) {
    res.end(text);
    return;
  }
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

function sendWire(res: ServerResponse, response: WireResponse, headers: Record<string, string>): void {
  res.writeHead(response.status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(response.body),
    ...headers,
    ...response.headers,
  });
  res.end(response.body);
}

/** Starts a simulated provider on `host:port` (127.0.0.1 and a free port by default). */
export async function startSimProvider(options: SimProviderOptions = {}): Promise<SimProvider> {
  const sim = new SimServer(options);
  const server: Server = createServer((req, res) => sim.handle(req, res));
  // Longer than undici's and the SDKs' idle keep-alive, so pooled connections are not cut under them.
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  server.requestTimeout = 0;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(sim.server.port, sim.server.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const host = sim.server.host.includes(':') ? `[${sim.server.host}]` : sim.server.host;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${host}:${port}`,
    port,
    ledger: {
      entries: (sinceId?: number) => sim.ledger.entries(sinceId),
      summary: () => sim.summary(),
    },
    settings: () => sim.settings,
    setConfig: (partial) => sim.setConfig(partial),
    inject: (fault, count) => sim.inject(fault, count),
    reset: () => sim.reset(),
    close: () => {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        sim.abortAll();
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
