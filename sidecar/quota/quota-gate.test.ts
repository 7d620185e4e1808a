import { describe, expect, it, vi } from 'vitest';
import { CapacityExhaustedError, StoreUnavailableError } from '../../common/errors/errors.ts';
import type { AcquireInput, Grant, QuotaApi, SettleInput } from '../../common/quota-api.ts';
import { HeldLease } from './held-lease.ts';
import { QuotaGate } from './quota-gate.ts';

const INPUT: AcquireInput = {
  provider: 'p/p',
  model: 'm',
  budget: 'b/b',
  inputTokens: 1,
  maxOutputTokens: 1,
  maxWaitMs: 0,
};
const GRANT: Grant = {
  leaseId: 'l1',
  expiresAtMs: 0,
  leaseTimeoutMs: 300,
  waitedMs: 0,
  reserved: { requests: 1, inputTokens: 1, outputTokens: 1, totalTokens: 2 },
};

function fakeQuota(overrides: Partial<QuotaApi> = {}): QuotaApi & { settles: SettleInput[] } {
  const settles: SettleInput[] = [];
  return {
    settles,
    acquire: async () => GRANT,
    settle: async (input) => {
      settles.push(input);
      return { status: 'settled' as const, charged: GRANT.reserved, settledAtMs: 0 };
    },
    heartbeat: async () => ({ expiresAtMs: 0 }),
    usage: async () => ({ nowMs: 0, providers: [] }),
    ...overrides,
  };
}

describe('HeldLease', () => {
  it('settles exactly once and swallows quota failures', async () => {
    const quota = fakeQuota();
    const lease = new HeldLease('remote', quota, GRANT);
    await lease.settle({ usage: { inputTokens: 1, outputTokens: 2 }, outcome: 'ok' });
    await lease.settle({ usage: { inputTokens: 9, outputTokens: 9 }, outcome: 'error' });
    expect(quota.settles).toEqual([
      {
        leaseId: 'l1',
        usage: { inputTokens: 1, outputTokens: 2 },
        outcome: 'ok',
        retryAfterMs: undefined,
        resetAtMs: undefined,
      },
    ]);

    const onQuotaError = vi.fn();
    const failing = new HeldLease(
      'remote',
      fakeQuota({ settle: () => Promise.reject(new StoreUnavailableError('down')) }),
      GRANT,
      { onQuotaError },
    );
    await expect(
      failing.settle({ usage: { inputTokens: 0, outputTokens: 0 }, outcome: 'ok' }),
    ).resolves.toBeUndefined();
    expect(onQuotaError).toHaveBeenCalledWith(expect.any(StoreUnavailableError), 'settle');
  });

  it('heartbeats every third of the lease timeout until settled', async () => {
    vi.useFakeTimers();
    try {
      const heartbeat = vi.fn(async () => ({ expiresAtMs: 0 }));
      const lease = new HeldLease('remote', fakeQuota({ heartbeat }), GRANT);
      lease.startHeartbeat();
      await vi.advanceTimersByTimeAsync(350);
      expect(heartbeat).toHaveBeenCalledTimes(3);
      await lease.settle({ usage: { inputTokens: 0, outputTokens: 0 }, outcome: 'ok' });
      await vi.advanceTimersByTimeAsync(1000);
      expect(heartbeat).toHaveBeenCalledTimes(3);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('QuotaGate', () => {
  function gate(mode: 'closed' | 'open' | 'localShare', remote: QuotaApi, local = fakeQuota()) {
    return new QuotaGate({
      remote,
      local: () => local,
      failureMode: () => mode,
      probeIntervalMs: 10_000,
      probeProvider: 'p/p',
    });
  }
  const down = fakeQuota({ acquire: () => Promise.reject(new StoreUnavailableError('down')) });

  it('passes other errors through without changing state', async () => {
    const g = gate('open', fakeQuota({ acquire: () => Promise.reject(new CapacityExhaustedError(5)) }));
    await expect(g.acquire(INPUT)).rejects.toBeInstanceOf(CapacityExhaustedError);
    expect(g.state).toBe('reachable');
    g.close();
  });

  it('closed refuses, open forwards without a lease, localShare leases locally', async () => {
    const closed = gate('closed', down);
    await expect(closed.acquire(INPUT)).rejects.toBeInstanceOf(StoreUnavailableError);
    expect(closed.state).toBe('unreachable');
    expect(closed.canServe('p/p', 'b/b')).toBe(false);

    const open = gate('open', down);
    expect((await open.acquire(INPUT)).source).toBe('open');
    expect(open.canServe('p/p', 'b/b')).toBe(true);

    const local = fakeQuota();
    const share = gate('localShare', down, local);
    const lease = await share.acquire(INPUT);
    expect(lease.source).toBe('local');
    await lease.settle({ usage: { inputTokens: 1, outputTokens: 1 }, outcome: 'ok' });
    expect(local.settles).toHaveLength(1);
    for (const g of [closed, open, share]) g.close();
  });

  it('probes until the quota service answers, then uses it again', async () => {
    vi.useFakeTimers();
    try {
      let available = false;
      const remote = fakeQuota({
        acquire: async () => {
          if (!available) throw new StoreUnavailableError('down');
          return GRANT;
        },
        usage: async () => {
          if (!available) throw new StoreUnavailableError('down');
          return { nowMs: 0, providers: [] };
        },
      });
      const changes: string[] = [];
      const g = new QuotaGate({
        remote,
        local: () => fakeQuota(),
        failureMode: () => 'open',
        probeIntervalMs: 100,
        probeProvider: 'p/p',
        onStateChange: (s) => changes.push(s),
      });
      expect((await g.acquire(INPUT)).source).toBe('open');
      await vi.advanceTimersByTimeAsync(250);
      expect(g.state).toBe('unreachable');
      available = true;
      await vi.advanceTimersByTimeAsync(100);
      expect(g.state).toBe('reachable');
      expect((await g.acquire(INPUT)).source).toBe('remote');
      expect(changes).toEqual(['unreachable', 'reachable']);
      g.close();
    } finally {
      vi.useRealTimers();
    }
  });
});
