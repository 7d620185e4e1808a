import { afterEach, describe, expect, it, vi } from 'vitest';
import { WorkQueue } from './work-queue.ts';

afterEach(() => {
  vi.useRealTimers();
});

describe('WorkQueue', () => {
  it('queues a key once however often it is added, in first-added order', async () => {
    const queue = new WorkQueue({ baseDelayMs: 10, maxDelayMs: 1000 });
    queue.add('a');
    queue.add('b');
    queue.add('a');
    expect(queue.length).toBe(2);
    expect(await queue.get()).toBe('a');
    expect(await queue.get()).toBe('b');
  });

  it('never hands out a key being processed; one added meanwhile comes back after done()', async () => {
    const queue = new WorkQueue({ baseDelayMs: 10, maxDelayMs: 1000 });
    queue.add('a');
    expect(await queue.get()).toBe('a');
    queue.add('a');
    queue.add('a');
    expect(queue.length).toBe(0);
    queue.done('a');
    expect(queue.length).toBe(1);
    expect(await queue.get()).toBe('a');
  });

  it('wakes a waiting get() when a key arrives', async () => {
    const queue = new WorkQueue({ baseDelayMs: 10, maxDelayMs: 1000 });
    const next = queue.get();
    queue.add('x');
    expect(await next).toBe('x');
  });

  it('backs off exponentially per key up to the maximum, and forget() resets it', () => {
    vi.useFakeTimers();
    const queue = new WorkQueue({ baseDelayMs: 100, maxDelayMs: 1000 });
    expect([1, 2, 3, 4, 5].map(() => queue.addRateLimited('a'))).toEqual([100, 200, 400, 800, 1000]);
    expect(queue.addRateLimited('b')).toBe(100);
    queue.forget('a');
    expect(queue.addRateLimited('a')).toBe(100);
  });

  it('adds a delayed key when its time comes, keeping the earliest of two delays', async () => {
    vi.useFakeTimers();
    const queue = new WorkQueue({ baseDelayMs: 100, maxDelayMs: 1000 });
    queue.addAfter('a', 500);
    queue.addAfter('a', 200);
    queue.addAfter('a', 900);
    vi.advanceTimersByTime(199);
    expect(queue.length).toBe(0);
    vi.advanceTimersByTime(1);
    expect(queue.length).toBe(1);
    vi.advanceTimersByTime(1000);
    expect(queue.length).toBe(1);
  });

  it('releases waiters and refuses work once shut down', async () => {
    const queue = new WorkQueue({ baseDelayMs: 10, maxDelayMs: 100 });
    const next = queue.get();
    queue.shutDown();
    expect(await next).toBeUndefined();
    queue.add('a');
    expect(await queue.get()).toBeUndefined();
  });
});
