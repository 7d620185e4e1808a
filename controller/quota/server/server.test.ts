import { Server, ServerCredentials } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { StoreUnavailableError } from '../../../common/errors/errors.ts';
import { loadQuotaProto } from '../../../common/grpc/load-quota-proto.ts';
import { createQuotaClient } from '../../../common/grpc/quota-client.ts';
import { createMemoryEngine } from '../engine/index.ts';
import { describeQuotaGrpcService } from './grpc-service-suite.ts';

describeQuotaGrpcService('memory store', {
  async create(budgets) {
    return createMemoryEngine({ budgets });
  },
});

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
