import { describe, expect, it } from 'vitest';
import { MAX_SESSION_BATCH, SessionOutbox } from './session-outbox.ts';

interface Message {
  id?: number;
  batch?: Message[];
}

const turn = () => new Promise((resolve) => setImmediate(resolve));

describe('SessionOutbox', () => {
  it('writes each message at once until the other end takes batches', () => {
    const written: Message[] = [];
    const outbox = new SessionOutbox<Message>((message) => written.push(message));
    outbox.send({ id: 1 });
    outbox.send({ id: 2 });
    expect(written).toEqual([{ id: 1 }, { id: 2 }]);
  });

  it('sends what one turn queued as one batch, and a lone message as it is', async () => {
    const written: Message[] = [];
    const outbox = new SessionOutbox<Message>((message) => written.push(message));
    outbox.batching = true;
    outbox.send({ id: 1 });
    outbox.send({ id: 2 });
    outbox.send({ id: 3 });
    expect(written).toEqual([]);
    await turn();
    expect(written).toEqual([{ batch: [{ id: 1 }, { id: 2 }, { id: 3 }] }]);
    outbox.send({ id: 4 });
    await turn();
    expect(written).toEqual([{ batch: [{ id: 1 }, { id: 2 }, { id: 3 }] }, { id: 4 }]);
  });

  it('bounds a batch, flushes on demand and drops what is queued when cleared', async () => {
    const written: Message[] = [];
    const outbox = new SessionOutbox<Message>((message) => written.push(message));
    outbox.batching = true;
    for (let id = 1; id <= MAX_SESSION_BATCH + 1; id++) outbox.send({ id });
    expect(written).toHaveLength(1);
    expect(written[0]!.batch).toHaveLength(MAX_SESSION_BATCH);
    outbox.flush();
    expect(written[1]).toEqual({ id: MAX_SESSION_BATCH + 1 });
    outbox.send({ id: 0 });
    outbox.clear();
    await turn();
    expect(written).toHaveLength(2);
  });
});
