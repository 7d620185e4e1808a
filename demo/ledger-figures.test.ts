import { describe, expect, it } from 'vitest';
import type { LedgerEntry } from '../sim-provider/index.ts';
import { ledgerFigures } from './ledger-figures.ts';

let nextId = 1;
function entry(
  arrivalMs: number,
  completionMs: number | undefined,
  fields: Partial<LedgerEntry> = {},
): LedgerEntry {
  return {
    id: nextId++,
    requestId: `req_${nextId}`,
    arrivalMs,
    completionMs,
    api: 'chat.completions',
    path: '/v1/chat/completions',
    model: 'm',
    stream: false,
    status: 200,
    outcome: 'ok',
    refusal: undefined,
    promptTokens: 10,
    charged: { input: 10, output: 50 },
    usage: { input: 10, output: 20 },
    ...fields,
  };
}

function refused(arrivalMs: number, code: string): LedgerEntry {
  return entry(arrivalMs, arrivalMs, {
    outcome: 'refused',
    status: 429,
    refusal: { class: 'concurrency', code },
    charged: { input: 0, output: 0 },
    usage: undefined,
  });
}

describe('ledgerFigures', () => {
  it('counts outcomes and refusals by code', () => {
    const entries = [
      entry(0, 100),
      refused(10, '1302'),
      refused(20, '1302'),
      refused(30, '1303'),
      entry(40, 500, { outcome: 'aborted' }),
    ];
    const figures = ledgerFigures(entries, [{ dimension: 'concurrency', amount: 2 }], 0, 1000);
    expect(figures).toMatchObject({
      requests: 5,
      admitted: 2,
      ok: 1,
      refused: 3,
      unfinished: 1,
      refusedByCode: { '1302': 2, '1303': 1 },
      firstId: entries[0]!.id,
      lastId: entries[4]!.id,
    });
  });

  it('measures concurrency as time-weighted in flight, and its peak', () => {
    // Two calls in flight over [0, 500), one over [500, 1000): 1.5 on average of a limit of 2.
    const entries = [entry(0, 1000), entry(0, 500)];
    const [fill] = ledgerFigures(entries, [{ dimension: 'concurrency', amount: 2 }], 0, 1000).limits;
    expect(fill).toMatchObject({ label: 'concurrency', peak: 2, amount: 2 });
    expect(fill!.average).toBeCloseTo(1.5, 5);
    expect(fill!.utilization).toBeCloseTo(0.75, 5);
  });

  it('does not count a slot freed and taken at the same instant twice', () => {
    const entries = [entry(0, 100), entry(100, 200)];
    const [fill] = ledgerFigures(entries, [{ dimension: 'concurrency', amount: 1 }], 0, 200).limits;
    expect(fill!.peak).toBe(1);
    expect(fill!.utilization).toBeCloseTo(1, 5);
  });

  it('measures a window by its sum once a window of load has passed, charging real usage', () => {
    // One request every 100 ms for 2 s against a 1 s window: 10 in any window once full.
    const entries = Array.from({ length: 20 }, (_, i) => entry(i * 100, i * 100 + 50));
    const figures = ledgerFigures(
      entries,
      [
        { dimension: 'requests', amount: 20, window: '1s' },
        { dimension: 'totalTokens', amount: 600, window: '1s' },
      ],
      0,
      2000,
    );
    const [requests, tokens] = figures.limits;
    expect(requests).toMatchObject({ label: 'requests/1s', peak: 10 });
    expect(requests!.utilization).toBeGreaterThan(0.45);
    expect(requests!.utilization).toBeLessThanOrEqual(0.5);
    // 30 real tokens per request (10 in, 20 out), not the 60 charged at arrival.
    expect(tokens!.peak).toBe(300);
    expect(figures.binding?.label).toBe('requests/1s');
  });

  it('only counts a model-specific limit against that model', () => {
    const entries = [entry(0, 100, { model: 'a' }), entry(0, 100, { model: 'b' })];
    const [fill] = ledgerFigures(
      entries,
      [{ dimension: 'concurrency', amount: 4, model: 'a' }],
      0,
      100,
    ).limits;
    expect(fill).toMatchObject({ label: 'concurrency@a', peak: 1 });
  });

  it('buckets admitted and refused calls per second, and in flight per bucket', () => {
    const entries = [entry(0, 1000), entry(100, 400), refused(200, '1302'), entry(600, 900)];
    const { series } = ledgerFigures(entries, [{ dimension: 'concurrency', amount: 2 }], 0, 1000, 500);
    expect(series.t).toEqual([0, 0.5]);
    expect(series.admittedPerS).toEqual([4, 2]);
    expect(series.refusedPerS).toEqual([2, 0]);
    // [0, 500): 1 all along + 1 over [100, 400) = 1.6; [500, 1000): 1 + 1 over [600, 900) = 1.6.
    expect(series.inFlight[0]).toBeCloseTo(1.6, 5);
    expect(series.inFlight[1]).toBeCloseTo(1.6, 5);
  });
});
