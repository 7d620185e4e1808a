/**
 * The quota service over gRPC, end to end on loopback: a real server, the real client and a real
 * lease engine. Run on the memory store (server.test.ts) and on Redis (test/redis/grpc-service.test.ts).
 */
import { credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { buildBudgetSet, parseBudgetsYaml, type BudgetSet } from '../../../common/budgets/load-budgets.ts';
import {
  CancelledError,
  CapacityExhaustedError,
  InvalidRequestError,
  NotFoundError,
  PermissionDeniedError,
  RequestTooLargeError,
  StoreUnavailableError,
} from '../../../common/errors/errors.ts';
import { TRAILER } from '../../../common/grpc/error-trailers.ts';
import { checkHealth, watchHealth } from '../../../common/grpc/health-client.ts';
import { loadQuotaProto } from '../../../common/grpc/load-quota-proto.ts';
import { createQuotaClient, type QuotaClient } from '../../../common/grpc/quota-client.ts';
import type { AcquireInput } from '../../../common/quota-api.ts';
import type { QuotaServiceClient } from '../../../proto/gen/tokenlease/v1/QuotaService.ts';
import type { LeaseEngine } from '../engine/index.ts';
import { startQuotaServer } from './server.ts';

export interface EngineFactory {
  create(budgets: BudgetSet): Promise<LeaseEngine>;
}

const PROVIDER = 'llm/acme';
const BUDGET = 'team-a/search';

const BUDGETS = `
apiVersion: tokenlease.io/v1alpha1
kind: LLMProvider
metadata: {name: acme, namespace: llm}
spec:
  api: openai
  baseURL: https://api.example.test/v1
  models: [gpt-test]
  leaseTimeout: 1m
  limits:
    - {dimension: concurrency, amount: 1}
    - {dimension: requests, amount: 1000, window: 1m}
    - {dimension: totalTokens, amount: 10000, window: 1m}
---
apiVersion: tokenlease.io/v1alpha1
kind: LLMBudget
metadata: {name: search, namespace: team-a}
spec:
  providerRef: {name: acme, namespace: llm}
---
apiVersion: tokenlease.io/v1alpha1
kind: LLMProvider
metadata: {name: other, namespace: llm}
spec:
  api: anthropic
  baseURL: https://api.example.test/
---
apiVersion: tokenlease.io/v1alpha1
kind: LLMBudget
metadata: {name: other, namespace: team-b}
spec:
  providerRef: {name: other, namespace: llm}
`;

function request(overrides: Partial<AcquireInput> = {}): AcquireInput {
  return {
    provider: PROVIDER,
    model: 'gpt-test',
    budget: BUDGET,
    inputTokens: 100,
    maxOutputTokens: 200,
    maxWaitMs: 0,
    ...overrides,
  };
}

/** A request as it travels, every field set, for the raw client. */
function wireRequest(overrides: Record<string, unknown> = {}) {
  return {
    provider: PROVIDER,
    model: 'gpt-test',
    budget: BUDGET,
    input_tokens: 100,
    max_output_tokens: 200,
    priority: '',
    max_wait_ms: 0,
    request_id: '',
    ...overrides,
  };
}

type RawMethod = 'Acquire' | 'Settle' | 'Heartbeat' | 'GetUsage';

/** One raw call (no conversion, no validation on the client side): the error, or the answer. */
function rawCall(
  client: QuotaServiceClient,
  method: RawMethod,
  message: object,
  deadlineMs = 5_000,
): Promise<{ error: ServiceError | null; value: unknown }> {
  return new Promise((resolve) => {
    const fn = client[method] as unknown as (
      req: object,
      meta: Metadata,
      options: { deadline: Date },
      cb: (error: ServiceError | null, value: unknown) => void,
    ) => void;
    fn.call(
      client,
      message,
      new Metadata(),
      { deadline: new Date(Date.now() + deadlineMs) },
      (error, value) => resolve({ error, value }),
    );
  });
}

function trailer(error: ServiceError | null, key: string): string | undefined {
  const value = error?.metadata?.get(key)[0];
  return value === undefined ? undefined : String(value);
}

/** The error a promise rejects with. */
async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected a rejection');
}

/** The fields that identify a typed error, for comparing in-process and remote failures. */
function identity(error: Error): Record<string, unknown> {
  const { field, kind, id, limit, requested, allowed } = error as unknown as Record<string, unknown>;
  return { class: error.constructor.name, field, kind, id, limit, requested, allowed };
}

export function describeQuotaGrpcService(name: string, factory: EngineFactory): void {
  for (const transport of ['session', 'unary'] as const)
    describe(`quota service over gRPC: ${name}, client over ${transport} calls`, () => {
      const cleanups: Array<() => Promise<void> | void> = [];
      afterEach(async () => {
        for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
      });

      async function setup(options: { engine?: LeaseEngine; readyGate?: Promise<void> } = {}) {
        const engine =
          options.engine ?? (await factory.create(buildBudgetSet(parseBudgetsYaml(BUDGETS, 'test'))));
        cleanups.push(() => engine.close());
        const gate = options.readyGate;
        // Delegating methods (not a spread: the engine keeps private state on its instance).
        const served = {
          acquire: (input: AcquireInput) => engine.acquire(input),
          settle: engine.settle.bind(engine),
          heartbeat: engine.heartbeat.bind(engine),
          usage: engine.usage.bind(engine),
          ready: async () => {
            if (gate) await gate;
            await engine.ready();
          },
        };
        const server = await startQuotaServer({ engine: served, listen: '127.0.0.1:0' });
        cleanups.push(() => server.shutdown(2_000));
        const target = `127.0.0.1:${server.port}`;
        const client = createQuotaClient({ target, defaultDeadlineMs: 5_000, transport });
        cleanups.push(() => client.close());
        const { QuotaService } = loadQuotaProto();
        const raw = new QuotaService(target, credentials.createInsecure());
        cleanups.push(() => raw.close());
        return { engine, server, target, client, raw };
      }

      async function waitersOf(client: QuotaClient): Promise<number> {
        return (await client.usage(PROVIDER)).providers[0]!.waiters;
      }

      it('acquires, heartbeats, reports usage and settles (idempotently) through the client', async () => {
        const { client } = await setup();
        const grant = await client.acquire(request({ priority: 100, requestId: 'r1' }));
        expect(grant.leaseId).not.toBe('');
        expect(grant.leaseTimeoutMs).toBe(60_000);
        expect(grant.reserved).toEqual({
          requests: 1,
          inputTokens: 100,
          outputTokens: 200,
          totalTokens: 300,
        });
        expect(grant.expiresAtMs).toBeGreaterThan(0);

        const beat = await client.heartbeat({
          leaseId: grant.leaseId,
          usedSoFar: { inputTokens: 100, outputTokens: 50 },
        });
        expect(beat.expiresAtMs).toBeGreaterThanOrEqual(grant.expiresAtMs);

        const usage = await client.usage(PROVIDER);
        expect(usage.providers.map((p) => p.provider)).toEqual([PROVIDER]);
        const acme = usage.providers[0]!;
        expect(acme.inFlight).toBe(1);
        expect(
          acme.limits.find((l) => l.dimension === 'totalTokens' && l.scope === 'provider'),
        ).toMatchObject({
          limit: 10_000,
          used: 300,
          windowMs: 60_000,
        });
        expect((await client.usage()).providers.map((p) => p.provider).sort()).toEqual([
          'llm/acme',
          'llm/other',
        ]);

        const settled = await client.settle({
          leaseId: grant.leaseId,
          usage: { inputTokens: 90, outputTokens: 60 },
          outcome: 'ok',
        });
        expect(settled).toMatchObject({
          status: 'settled',
          charged: { requests: 1, inputTokens: 90, outputTokens: 60, totalTokens: 150 },
        });
        const again = await client.settle({
          leaseId: grant.leaseId,
          usage: { inputTokens: 1, outputTokens: 1 },
          outcome: 'ok',
        });
        // A repeat changes nothing and reports what the first settle did.
        expect(again).toEqual({ ...settled, status: 'alreadySettled' });
        expect((await client.usage(PROVIDER)).providers[0]!.inFlight).toBe(0);
      });

      it('answers each bad field with INVALID_ARGUMENT naming it', async () => {
        const { raw } = await setup();
        const cases: Array<[RawMethod, object, string]> = [
          ['Acquire', wireRequest({ provider: '' }), 'provider'],
          ['Acquire', wireRequest({ model: '' }), 'model'],
          ['Acquire', wireRequest({ budget: '' }), 'budget'],
          ['Acquire', wireRequest({ input_tokens: -1 }), 'input_tokens'],
          ['Acquire', wireRequest({ input_tokens: 1_000_000_001 }), 'input_tokens'],
          ['Acquire', wireRequest({ input_tokens: '9223372036854775807' }), 'input_tokens'],
          ['Acquire', wireRequest({ max_output_tokens: -20 }), 'max_output_tokens'],
          ['Acquire', wireRequest({ priority: 'urgent' }), 'priority'],
          ['Acquire', wireRequest({ priority: '5000' }), 'priority'],
          ['Acquire', wireRequest({ max_wait_ms: -1 }), 'max_wait_ms'],
          ['Acquire', wireRequest({ max_wait_ms: 600_001 }), 'max_wait_ms'],
          [
            'Settle',
            { lease_id: '', usage: { input_tokens: 1, output_tokens: 1 }, outcome: 'OUTCOME_OK' },
            'lease_id',
          ],
          ['Settle', { lease_id: 'llm/acme|x', outcome: 'OUTCOME_OK' }, 'usage'],
          ['Settle', { lease_id: 'llm/acme|x', usage: { input_tokens: 1, output_tokens: 1 } }, 'outcome'],
          [
            'Settle',
            { lease_id: 'llm/acme|x', usage: { input_tokens: -1, output_tokens: 1 }, outcome: 'OUTCOME_OK' },
            'usage.input_tokens',
          ],
          ['Heartbeat', { lease_id: '' }, 'lease_id'],
        ];
        for (const [method, message, field] of cases) {
          const { error } = await rawCall(raw, method, message);
          expect(error?.code, `${method} ${JSON.stringify(message)}`).toBe(status.INVALID_ARGUMENT);
          expect(trailer(error, TRAILER.field)).toBe(field);
          expect(error?.details.startsWith(`${field}: `)).toBe(true);
        }
      });

      it('answers unknown provider, model, budget and lease with NOT_FOUND, a foreign budget with PERMISSION_DENIED', async () => {
        const { raw } = await setup();
        const cases: Array<[RawMethod, object, number, string | undefined]> = [
          ['Acquire', wireRequest({ provider: 'llm/nope' }), status.NOT_FOUND, 'provider'],
          ['Acquire', wireRequest({ model: 'gpt-nope' }), status.NOT_FOUND, 'model'],
          ['Acquire', wireRequest({ budget: 'team-a/nope' }), status.NOT_FOUND, 'budget'],
          [
            'Settle',
            {
              lease_id: 'llm/acme|nope',
              usage: { input_tokens: 1, output_tokens: 1 },
              outcome: 'OUTCOME_OK',
            },
            status.NOT_FOUND,
            'lease',
          ],
          ['Heartbeat', { lease_id: 'llm/acme|nope' }, status.NOT_FOUND, 'lease'],
          ['GetUsage', { provider: 'llm/nope' }, status.NOT_FOUND, 'provider'],
          ['Acquire', wireRequest({ budget: 'team-b/other' }), status.PERMISSION_DENIED, undefined],
        ];
        for (const [method, message, code, kind] of cases) {
          const { error } = await rawCall(raw, method, message);
          expect(error?.code, `${method} ${JSON.stringify(message)}`).toBe(code);
          expect(trailer(error, TRAILER.kind)).toBe(kind);
        }
      });

      it('answers a request larger than a limit with FAILED_PRECONDITION naming the limit', async () => {
        const { raw } = await setup();
        const { error } = await rawCall(
          raw,
          'Acquire',
          wireRequest({ input_tokens: 9_000, max_output_tokens: 2_000 }),
        );
        expect(error?.code).toBe(status.FAILED_PRECONDITION);
        expect(trailer(error, TRAILER.limit)).toMatch(/totalTokens/);
        expect(trailer(error, TRAILER.requested)).toBe('11000');
        expect(trailer(error, TRAILER.allowed)).toBe('10000');
      });

      it('answers no capacity with RESOURCE_EXHAUSTED and a retry time', async () => {
        const { raw, client } = await setup();
        await client.acquire(request());
        const { error } = await rawCall(raw, 'Acquire', wireRequest({ max_wait_ms: 0 }));
        expect(error?.code).toBe(status.RESOURCE_EXHAUSTED);
        expect(Number(trailer(error, TRAILER.retryAfterMs))).toBeGreaterThan(0);
      });

      it('throws the same typed errors through the client as the engine does in process', async () => {
        const { client, engine } = await setup();
        const held = await engine.acquire(request());
        const failing: Array<
          [string, (api: Pick<LeaseEngine, 'acquire' | 'settle' | 'heartbeat' | 'usage'>) => Promise<unknown>]
        > = [
          ['empty provider', (api) => api.acquire(request({ provider: '' }))],
          ['negative tokens', (api) => api.acquire(request({ inputTokens: -1 }))],
          ['absurd output', (api) => api.acquire(request({ maxOutputTokens: 2e9 }))],
          ['priority out of range', (api) => api.acquire(request({ priority: 1001 }))],
          ['wait too long', (api) => api.acquire(request({ maxWaitMs: 600_001 }))],
          ['unknown provider', (api) => api.acquire(request({ provider: 'llm/nope' }))],
          ['unknown model', (api) => api.acquire(request({ model: 'nope' }))],
          ['unknown budget', (api) => api.acquire(request({ budget: 'x/nope' }))],
          ['foreign budget', (api) => api.acquire(request({ budget: 'team-b/other' }))],
          ['too large', (api) => api.acquire(request({ inputTokens: 20_000 }))],
          ['no capacity', (api) => api.acquire(request())],
          [
            'unknown lease',
            (api) =>
              api.settle({
                leaseId: 'llm/acme|nope',
                usage: { inputTokens: 0, outputTokens: 0 },
                outcome: 'ok',
              }),
          ],
          ['unknown lease beat', (api) => api.heartbeat({ leaseId: 'llm/acme|nope' })],
          ['unknown usage', (api) => api.usage('llm/nope')],
        ];
        const expectedClass = [
          InvalidRequestError,
          InvalidRequestError,
          InvalidRequestError,
          InvalidRequestError,
          InvalidRequestError,
          NotFoundError,
          NotFoundError,
          NotFoundError,
          PermissionDeniedError,
          RequestTooLargeError,
          CapacityExhaustedError,
          NotFoundError,
          NotFoundError,
          NotFoundError,
        ];
        for (const [index, [label, attempt]] of failing.entries()) {
          const local = await rejection(attempt(engine));
          const remote = await rejection(attempt(client));
          expect(local, label).toBeInstanceOf(expectedClass[index]!);
          expect(identity(remote), label).toEqual(identity(local));
          // Validation wording differs between the wire and the engine; every other message is the engine's own.
          if (!(local instanceof InvalidRequestError) && !(local instanceof CapacityExhaustedError)) {
            expect(remote.message, label).toBe(local.message);
          }
        }
        await engine.settle({
          leaseId: held.leaseId,
          usage: { inputTokens: 0, outputTokens: 0 },
          outcome: 'notSent',
        });
      });

      it("carries a direct grant's headroom (none for a grant from the queue) and settles OUTCOME_UNUSED for nothing", async () => {
        const threeSlots = BUDGETS.replace(
          '{dimension: concurrency, amount: 1}',
          '{dimension: concurrency, amount: 3}',
        );
        const engine = await factory.create(buildBudgetSet(parseBudgetsYaml(threeSlots, 'test')));
        const { client, raw } = await setup({ engine });
        const first = await client.acquire(request());
        // Slots are tightest: 1 of 3 in use leaves 2/3 free (the tokens 9700 of 10000).
        expect(first.headroom).toEqual({ fraction: 0.666667, requests: 2 });
        const second = await client.acquire(request());
        const { error: noError, value } = await rawCall(raw, 'Acquire', wireRequest());
        expect(noError).toBeNull();
        // No room left travels as a set headroom of zeros.
        expect((value as { headroom: unknown }).headroom).toEqual({ fraction: 0, requests: 0 });
        const third = value as { lease_id: string };
        const waiting = client.acquire(request({ maxWaitMs: 30_000 }));
        await vi.waitFor(async () => expect(await waitersOf(client)).toBe(1));

        const nothing = { requests: 0, inputTokens: 0, outputTokens: 0, totalTokens: 0 };
        await expect(
          client.settle({
            leaseId: first.leaseId,
            usage: { inputTokens: 0, outputTokens: 0 },
            outcome: 'unused',
          }),
        ).resolves.toMatchObject({ status: 'settled', charged: nothing });
        const queued = await waiting;
        expect(queued.headroom).toBeUndefined();
        const acme = (await client.usage(PROVIDER)).providers[0]!;
        // The spare's request went back; the other three leases hold theirs.
        expect(acme.limits.find((l) => l.dimension === 'requests' && l.scope === 'provider')?.used).toBe(3);
        expect(acme.budgets.find((b) => b.budget === BUDGET)?.refusals).toEqual({});

        // By number on the raw wire: 11 is OUTCOME_UNUSED; a number the enum lacks stays a bad field.
        const usage = { input_tokens: 0, output_tokens: 0 };
        const unknown = await rawCall(raw, 'Settle', { lease_id: second.leaseId, usage, outcome: 12 });
        expect(unknown.error?.code).toBe(status.INVALID_ARGUMENT);
        expect(trailer(unknown.error, TRAILER.field)).toBe('outcome');
        const unused = await rawCall(raw, 'Settle', { lease_id: second.leaseId, usage, outcome: 11 });
        expect(unused.error).toBeNull();
        expect(unused.value).toMatchObject({
          status: 'SETTLE_STATUS_SETTLED',
          charged: { requests: 0, input_tokens: 0, output_tokens: 0, total_tokens: 0 },
        });
        for (const leaseId of [third.lease_id, queued.leaseId])
          await client.settle({ leaseId, usage: { inputTokens: 0, outputTokens: 0 }, outcome: 'unused' });
        expect((await client.usage(PROVIDER)).providers[0]!.limits.map((l) => l.used)).toEqual([0, 0, 0]);
      });

      it("bounds an Acquire's wait by the call's deadline, answering RESOURCE_EXHAUSTED before it", async () => {
        const { raw, client } = await setup();
        await client.acquire(request());
        // Asks to wait a minute, but the call gives up after 400 ms: the server must answer first.
        const { error } = await rawCall(raw, 'Acquire', wireRequest({ max_wait_ms: 60_000 }), 400);
        expect(error?.code).toBe(status.RESOURCE_EXHAUSTED);
        expect(await waitersOf(client)).toBe(0);
      });

      it('grants a waiting Acquire when a settle frees the slot', async () => {
        const { client } = await setup();
        const first = await client.acquire(request());
        const second = client.acquire(request({ maxWaitMs: 30_000 }));
        await vi.waitFor(async () => expect(await waitersOf(client)).toBe(1));
        await client.settle({
          leaseId: first.leaseId,
          usage: { inputTokens: 1, outputTokens: 1 },
          outcome: 'ok',
        });
        const grant = await second;
        expect(grant.leaseId).not.toBe(first.leaseId);
      });

      it("ends the server's wait when the client gives up, leaving the slot to the next caller", async () => {
        const { client } = await setup();
        const first = await client.acquire(request());
        const controller = new AbortController();
        const waiting = client.acquire(request({ maxWaitMs: 30_000, signal: controller.signal }));
        await vi.waitFor(async () => expect(await waitersOf(client)).toBe(1));
        controller.abort();
        expect(await rejection(waiting)).toBeInstanceOf(CancelledError);
        await vi.waitFor(async () => expect(await waitersOf(client)).toBe(0));
        await client.settle({
          leaseId: first.leaseId,
          usage: { inputTokens: 1, outputTokens: 1 },
          outcome: 'ok',
        });
        expect((await client.acquire(request())).leaseId).not.toBe('');
        expect(await rejection(client.acquire(request({ signal: AbortSignal.abort() })))).toBeInstanceOf(
          CancelledError,
        );
      });

      it('reports NOT_SERVING until the store is ready, then SERVING', async () => {
        let open!: () => void;
        const gate = new Promise<void>((resolve) => (open = resolve));
        const { target, server } = await setup({ readyGate: gate });
        expect(await checkHealth(target)).toBe('NOT_SERVING');
        expect(await checkHealth(target, { service: 'tokenlease.v1.QuotaService' })).toBe('NOT_SERVING');
        open();
        await server.serving;
        expect(await checkHealth(target)).toBe('SERVING');
        expect(await checkHealth(target, { service: 'tokenlease.v1.QuotaService' })).toBe('SERVING');
      });

      it('on shutdown goes NOT_SERVING, ends waiting Acquires with UNAVAILABLE and refuses new calls', async () => {
        const { target, server, client } = await setup();
        await server.serving;
        // A health watcher connected before the shutdown sees the change.
        const statuses: string[] = [];
        const watcher = watchHealth(target, '', (state) => statuses.push(state));
        cleanups.push(() => watcher.close());
        await vi.waitFor(() => expect(statuses).toEqual(['SERVING']));

        const held = await client.acquire(request());
        const waiting = client.acquire(request({ maxWaitMs: 30_000 }));
        await vi.waitFor(async () => expect(await waitersOf(client)).toBe(1));
        const stopped = server.shutdown(1_000);
        const error = await rejection(waiting);
        expect(error).toBeInstanceOf(StoreUnavailableError);
        expect(error.message).toMatch(/shutting down/);
        await vi.waitFor(() => expect(statuses).toContain('NOT_SERVING'));
        await stopped;
        expect(await rejection(client.heartbeat({ leaseId: held.leaseId }))).toBeInstanceOf(
          StoreUnavailableError,
        );
      });
    });
}
