import { describe, expect, it } from 'vitest';
import { InvalidRequestError } from '../errors/errors.ts';
import {
  OUTCOMES,
  type AcquireInput,
  type Grant,
  type SettleInput,
  type UsageSnapshot,
} from '../quota-api.ts';
import { loadQuotaProto } from './load-quota-proto.ts';
import {
  acquireFromWire,
  acquireToWire,
  grantFromWire,
  grantToWire,
  heartbeatFromWire,
  heartbeatToWire,
  MAX_REQUEST_TOKENS,
  MAX_WAIT_MS,
  outcomeToWire,
  parsePriority,
  settleFromWire,
  settleResultFromWire,
  settleResultToWire,
  settleToWire,
  usageSnapshotFromWire,
  usageSnapshotToWire,
} from './wire.ts';
import type { AcquireRequest__Output } from '../../proto/gen/tokenlease/v1/AcquireRequest.ts';
import type { AcquireResponse__Output } from '../../proto/gen/tokenlease/v1/AcquireResponse.ts';
import type { SettleRequest__Output } from '../../proto/gen/tokenlease/v1/SettleRequest.ts';

const acquire: AcquireInput = {
  provider: 'llm/sim',
  model: 'gpt-x',
  budget: 'llm/search',
  inputTokens: 120,
  maxOutputTokens: 400,
  priority: 100,
  maxWaitMs: 2_000,
  requestId: 'req-1',
};

/** What the server sees: the wire message with every field present, as proto-loader decodes it. */
function decodedAcquire(overrides: Partial<AcquireRequest__Output> = {}): AcquireRequest__Output {
  return { ...(acquireToWire(acquire) as AcquireRequest__Output), ...overrides };
}

function fieldOf(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidRequestError);
    return (error as InvalidRequestError).field;
  }
  throw new Error('expected an InvalidRequestError');
}

const grant: Grant = {
  leaseId: 'llm/sim|abc',
  expiresAtMs: 1_800_000_000_000,
  leaseTimeoutMs: 120_000,
  waitedMs: 12,
  reserved: { requests: 1, inputTokens: 120, outputTokens: 400, totalTokens: 520 },
};

describe('wire conversions', () => {
  it('round-trips an acquire request, a grant, a settle and a heartbeat', () => {
    expect(acquireFromWire(decodedAcquire())).toEqual(acquire);
    expect(grantFromWire(grantToWire(grant) as never)).toEqual(grant);
    const settle: SettleInput = {
      leaseId: 'llm/sim|abc',
      usage: { inputTokens: 100, outputTokens: 33 },
      outcome: 'refusedWindow',
      retryAfterMs: 30_000,
      resetAtMs: 1_800_000_060_000,
      rateLimits: [
        { dimension: 'requests', limit: 500, remaining: 0, resetMs: 1500 },
        { dimension: 'totalTokens', limit: undefined, remaining: 1000, resetMs: undefined },
      ],
    };
    expect(settleFromWire(settleToWire(settle) as SettleRequest__Output)).toEqual(settle);
    const result = {
      status: 'settledAfterExpiry' as const,
      charged: grant.reserved,
      settledAtMs: 1_800_000_000_123,
    };
    expect(settleResultFromWire(settleResultToWire(result) as never)).toEqual(result);
    const heartbeat = { leaseId: 'llm/sim|abc', usedSoFar: { inputTokens: 1, outputTokens: 2 } };
    expect(heartbeatFromWire(heartbeatToWire(heartbeat) as never)).toEqual(heartbeat);
    expect(heartbeatFromWire({ lease_id: 'x', used_so_far: null })).toEqual({
      leaseId: 'x',
      usedSoFar: undefined,
    });
  });

  it("carries a direct grant's headroom, zeros included, and none for a grant from the queue", () => {
    const roundTrip = (value: Grant) => grantFromWire(grantToWire(value) as AcquireResponse__Output);
    const direct = { ...grant, waitedMs: 0 };
    const roomy = { ...direct, headroom: { fraction: 0.333333, requests: 1_000_000_000 } };
    expect(roundTrip(roomy)).toStrictEqual(roomy);
    // No room left is a headroom of zeros, not the absence of one.
    const full = { ...direct, headroom: { fraction: 0, requests: 0 } };
    expect(roundTrip(full)).toStrictEqual(full);
    expect(grantToWire(grant).headroom).toBeNull();
    expect('headroom' in roundTrip(grant)).toBe(false);
  });

  it("carries an unused spare's settle", () => {
    const settle: SettleInput = {
      leaseId: 'llm/sim|abc',
      usage: { inputTokens: 0, outputTokens: 0 },
      outcome: 'unused',
    };
    expect(settleToWire(settle).outcome).toBe('OUTCOME_UNUSED');
    expect(settleFromWire(settleToWire(settle) as SettleRequest__Output)).toEqual(settle);
  });

  it('round-trips a usage snapshot', () => {
    const snapshot: UsageSnapshot = {
      nowMs: 5,
      providers: [
        {
          provider: 'llm/sim',
          limits: [
            {
              scope: 'provider',
              dimension: 'requests',
              windowMs: 60_000,
              model: '',
              limit: 10,
              effectiveLimit: 8,
              used: 3,
            },
          ],
          inFlight: 1,
          waiters: 2,
          budgets: [
            {
              budget: 'llm/search',
              inFlight: 1,
              waiters: 2,
              granted: 7,
              rejected: 1,
              refusals: { refusedRate: 2 },
            },
            {
              budget: 'llm/cached',
              inFlight: 0,
              waiters: 0,
              granted: 1,
              rejected: 0,
              refusals: {},
              cache: { hits: 4, inputTokens: 40, outputTokens: 12 },
            },
          ],
          closedUntilMs: 0,
          closedReason: '',
        },
      ],
    };
    expect(usageSnapshotFromWire(usageSnapshotToWire(snapshot) as never)).toEqual(snapshot);
  });

  it('maps every outcome to a value of the proto enum, one to one', () => {
    const protoValues = Object.keys(
      (loadQuotaProto().Outcome as unknown as { type: { value: Array<{ name: string }> } }).type.value.reduce(
        (names, value) => ({ ...names, [value.name]: true }),
        {},
      ),
    );
    const mapped = OUTCOMES.map(outcomeToWire);
    expect(new Set(mapped).size).toBe(OUTCOMES.length);
    expect([...mapped, 'OUTCOME_UNSPECIFIED'].sort()).toEqual(protoValues.sort());
  });

  it('reads priorities by name or number and refuses anything else', () => {
    expect(parsePriority('')).toBeUndefined();
    expect(parsePriority('interactive')).toBe(100);
    expect(parsePriority('batch')).toBe(0);
    expect(parsePriority('1000')).toBe(1000);
    for (const bad of ['urgent', '1001', '-1', '1.5', 'constructor', ' 5']) {
      expect(fieldOf(() => parsePriority(bad))).toBe('priority');
    }
  });

  it('names the proto field of each bad acquire value', () => {
    const cases: Array<[Partial<AcquireRequest__Output>, string]> = [
      [{ provider: '' }, 'provider'],
      [{ model: '' }, 'model'],
      [{ budget: '' }, 'budget'],
      [{ provider: 'x'.repeat(600) }, 'provider'],
      [{ input_tokens: -1 }, 'input_tokens'],
      [{ input_tokens: MAX_REQUEST_TOKENS + 1 }, 'input_tokens'],
      [{ input_tokens: 2 ** 63 }, 'input_tokens'],
      [{ max_output_tokens: -5 }, 'max_output_tokens'],
      [{ max_output_tokens: 1e10 }, 'max_output_tokens'],
      [{ priority: 'urgent' }, 'priority'],
      [{ max_wait_ms: -1 }, 'max_wait_ms'],
      [{ max_wait_ms: MAX_WAIT_MS + 1 }, 'max_wait_ms'],
      [{ request_id: 'r'.repeat(600) }, 'request_id'],
    ];
    for (const [overrides, field] of cases)
      expect(fieldOf(() => acquireFromWire(decodedAcquire(overrides)))).toBe(field);
  });

  it('names the proto field of each bad settle value', () => {
    const good = settleToWire({
      leaseId: 'l',
      usage: { inputTokens: 1, outputTokens: 1 },
      outcome: 'ok',
    }) as SettleRequest__Output;
    const cases: Array<[Partial<SettleRequest__Output>, string]> = [
      [{ lease_id: '' }, 'lease_id'],
      [{ usage: null }, 'usage'],
      [{ usage: { input_tokens: -1, output_tokens: 0 } }, 'usage.input_tokens'],
      [{ usage: { input_tokens: 0, output_tokens: 1e12 } }, 'usage.output_tokens'],
      [{ outcome: 'OUTCOME_UNSPECIFIED' }, 'outcome'],
      [{ outcome: 42 as never }, 'outcome'],
      [{ outcome: 12 as never }, 'outcome'],
      [{ retry_after_ms: -1 }, 'retry_after_ms'],
      [{ reset_at_ms: -1 }, 'reset_at_ms'],
    ];
    for (const [overrides, field] of cases)
      expect(fieldOf(() => settleFromWire({ ...good, ...overrides }))).toBe(field);
    expect(
      fieldOf(() =>
        heartbeatFromWire({ lease_id: 'l', used_so_far: { input_tokens: -2, output_tokens: 0 } }),
      ),
    ).toBe('used_so_far.input_tokens');
  });
});
