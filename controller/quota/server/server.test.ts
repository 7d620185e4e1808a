import { credentials, Metadata, Server, ServerCredentials, status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { CancelledError, StoreUnavailableError } from '../../../common/errors/errors.ts';
import { loadQuotaProto } from '../../../common/grpc/load-quota-proto.ts';
import { createQuotaClient } from '../../../common/grpc/quota-client.ts';
import { SESSION_BATCH_HEADER } from '../../../common/grpc/session-outbox.ts';
import type { SessionResponse__Output } from '../../../proto/gen/tokenlease/v1/SessionResponse.ts';
import { acmeBudgets } from '../engine/engine-conformance.ts';
import { createMemoryEngine } from '../engine/index.ts';
import { describeQuotaGrpcService } from './grpc-service-suite.ts';
import { startQuotaServer } from './server.ts';

describeQuotaGrpcService('memory store', {
  async create(budgets) {
    return createMemoryEngine({ budgets });
  },
});

/** A server whose Session stream takes every message (kept in `received`) and never answers. */
async function startSilentSessionServer(): Promise<{ server: Server; port: number; received: unknown[] }> {
  const server = new Server();
  const received: unknown[] = [];
  server.addService(loadQuotaProto().QuotaService.service, {
    Session: (call: { on(event: 'data', listener: (message: unknown) => void): void }) => {
      call.on('data', (message) => received.push(message));
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (error, bound) =>
      error ? reject(error) : resolve(bound),
    ),
  );
  return { server, port, received };
}

describe('quota client deadlines', () => {
  it('gives up on a call the server never answers, with StoreUnavailableError, after its deadline', async () => {
    // A server that accepts every call and never answers: only the client's deadline ends them.
    const server = new Server();
    const never = () => {};
    server.addService(loadQuotaProto().QuotaService.service, {
      Acquire: never,
      Settle: never,
      Heartbeat: never,
      GetUsage: never,
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (error, bound) =>
        error ? reject(error) : resolve(bound),
      ),
    );
    const client = createQuotaClient({
      target: `127.0.0.1:${port}`,
      defaultDeadlineMs: 200,
      transport: 'unary',
    });
    try {
      const calls = [
        client.settle({ leaseId: 'p|l', usage: { inputTokens: 0, outputTokens: 0 }, outcome: 'ok' }),
        client.heartbeat({ leaseId: 'p|l' }),
        client.usage(),
        client.acquire({
          provider: 'p',
          model: 'm',
          budget: 'b',
          inputTokens: 1,
          maxOutputTokens: 1,
          maxWaitMs: 100,
        }),
      ];
      for (const call of calls) {
        const error = await call.then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(error).toBeInstanceOf(StoreUnavailableError);
        expect(String(error)).toMatch(/DEADLINE_EXCEEDED/);
      }
    } finally {
      client.close();
      server.forceShutdown();
    }
  });

  it('gives up on a session message the server never answers, after its deadline, and cancels the Acquire', async () => {
    const { server, port, received } = await startSilentSessionServer();
    const client = createQuotaClient({ target: `127.0.0.1:${port}`, defaultDeadlineMs: 200 });
    try {
      const calls = [
        client.settle({ leaseId: 'p|l', usage: { inputTokens: 0, outputTokens: 0 }, outcome: 'ok' }),
        client.heartbeat({ leaseId: 'p|l' }),
        client.acquire({
          provider: 'p',
          model: 'm',
          budget: 'b',
          inputTokens: 1,
          maxOutputTokens: 1,
          maxWaitMs: 100,
        }),
      ];
      for (const call of calls) {
        const error = await call.then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(error).toBeInstanceOf(StoreUnavailableError);
        expect(String(error)).toMatch(/did not answer/);
      }
      // The Acquire that timed out was given up on the stream too.
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(received.map((message) => (message as { op: string }).op)).toEqual([
        'settle',
        'heartbeat',
        'acquire',
        'cancel',
      ]);
    } finally {
      client.close();
      server.forceShutdown();
    }
  });

  it('gives up on each session message at its own deadline, the shorter first, and on an aborted one at once', async () => {
    const { server, port, received } = await startSilentSessionServer();
    const client = createQuotaClient({ target: `127.0.0.1:${port}`, defaultDeadlineMs: 100 });
    const caller = new AbortController();
    try {
      // Sent first, with the later deadline (maxWaitMs + 100 ms): the settle after it must not wait for it.
      let acquireDone = false;
      const acquire = client
        .acquire({
          provider: 'p',
          model: 'm',
          budget: 'b',
          inputTokens: 1,
          maxOutputTokens: 1,
          maxWaitMs: 60_000,
          signal: caller.signal,
        })
        .finally(() => (acquireDone = true));
      const settleError = await client
        .settle({ leaseId: 'p|l', usage: { inputTokens: 0, outputTokens: 0 }, outcome: 'ok' })
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      expect(settleError).toBeInstanceOf(StoreUnavailableError);
      expect(String(settleError)).toMatch(/did not answer settle within 100ms/);
      expect(acquireDone).toBe(false);
      caller.abort();
      const acquireError = await acquire.then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(acquireError).toBeInstanceOf(CancelledError);
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(received.map((message) => (message as { op: string }).op)).toEqual([
        'acquire',
        'settle',
        'cancel',
      ]);
    } finally {
      client.close();
      server.forceShutdown();
    }
  });

  it('fails fast with StoreUnavailableError when nothing listens', async () => {
    const client = createQuotaClient({ target: '127.0.0.1:1', defaultDeadlineMs: 2_000 });
    try {
      const error = await client.usage().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(StoreUnavailableError);
      expect(String(error)).toMatch(/UNAVAILABLE/);
    } finally {
      client.close();
    }
  });
});

describe('quota session batches', () => {
  const acquire = (inputTokens: number) => ({
    provider: 'llm/acme',
    model: 'gpt-test',
    budget: 'team-a/search',
    input_tokens: inputTokens,
    max_output_tokens: 10,
    priority: '',
    max_wait_ms: 0,
    request_id: '',
  });

  it('says it takes batches, answers each message of one (bad ones by their own id) and answers in batches', async () => {
    const engine = createMemoryEngine({ budgets: acmeBudgets('[{dimension: concurrency, amount: 10}]') });
    const server = await startQuotaServer({ engine, listen: '127.0.0.1:0' });
    const raw = new (loadQuotaProto().QuotaService)(`127.0.0.1:${server.port}`, credentials.createInsecure());
    try {
      const call = raw.Session();
      const headers = new Promise<Metadata>((resolve) => call.on('metadata', resolve));
      const answers: SessionResponse__Output[] = [];
      const messages: SessionResponse__Output[] = [];
      const received = (count: number) =>
        new Promise<void>((resolve) => {
          const check = () => (answers.length >= count ? resolve() : setTimeout(check, 5));
          check();
        });
      call.on('data', (message: SessionResponse__Output) => {
        messages.push(message);
        answers.push(...(message.batch.length > 0 ? message.batch : [message]));
      });
      expect((await headers).get(SESSION_BATCH_HEADER)).toEqual(['1']);

      call.write({
        batch: [
          { id: 1, acquire: acquire(5) },
          { id: 2, acquire: acquire(-1) },
          { id: 3, batch: [{ id: 4, acquire: acquire(5) }] },
          { id: 5 },
        ],
      });
      await received(4);
      const byId = new Map(answers.map((answer) => [answer.id, answer]));
      expect(byId.get(1)!.result).toBe('acquire');
      expect(byId.get(2)!.error).toMatchObject({
        code: status.INVALID_ARGUMENT,
        details: { 'tokenlease-field': 'input_tokens' },
      });
      expect(byId.get(3)!.error).toMatchObject({
        code: status.INVALID_ARGUMENT,
        details: { 'tokenlease-field': 'batch' },
      });
      expect(byId.get(5)!.error).toMatchObject({
        code: status.INVALID_ARGUMENT,
        details: { 'tokenlease-field': 'op' },
      });
      expect(byId.has(4)).toBe(false);
      // Answered in kind: what was ready together went out as one message.
      expect(messages.some((message) => message.batch.length > 1)).toBe(true);

      const lease = byId.get(1)!.acquire!.lease_id;
      call.write({
        batch: [
          {
            id: 6,
            settle: { lease_id: lease, usage: { input_tokens: 5, output_tokens: 1 }, outcome: 'OUTCOME_OK' },
          },
          {
            id: 7,
            settle: { lease_id: lease, usage: { input_tokens: 5, output_tokens: 1 }, outcome: 'OUTCOME_OK' },
          },
        ],
      });
      await received(6);
      const settles = answers.slice(4).map((answer) => answer.settle?.status);
      expect(settles.sort()).toEqual(['SETTLE_STATUS_ALREADY_SETTLED', 'SETTLE_STATUS_SETTLED']);
      call.end();
    } finally {
      raw.close();
      await server.shutdown(1_000);
      await engine.close();
    }
  });
});
