import { describe, expect, it } from 'vitest';
import { Ledger } from './ledger.ts';

const open = (ledger: Ledger, arrivalMs: number) =>
  ledger.open({
    arrivalMs,
    api: 'chat.completions',
    path: '/v1/chat/completions',
    model: 'm',
    stream: false,
    promptTokens: 5,
  });

describe('Ledger', () => {
  it('caps the entries it keeps while the counters stay exact', () => {
    const ledger = new Ledger(100);
    for (let i = 0; i < 1000; i++) {
      const entry = open(ledger, i);
      if (i % 2 === 0) {
        ledger.admit(entry, { input: 5, output: 10 });
        ledger.finish(entry, i + 1, 'ok', { input: 5, output: 3 });
      } else {
        ledger.refuse(entry, i, 429, { class: 'rate', code: 'rate_limit_exceeded' });
      }
    }
    const entries = ledger.entries();
    expect(entries.length).toBeGreaterThanOrEqual(100);
    expect(entries.length).toBeLessThanOrEqual(125);
    expect(entries.at(-1)!.id).toBe(1000);
    expect(ledger.entries(990).map((entry) => entry.id)).toEqual([
      991, 992, 993, 994, 995, 996, 997, 998, 999, 1000,
    ]);
    expect(ledger.summary([])).toMatchObject({
      total: 1000,
      admitted: 500,
      ok: 500,
      refused: 500,
      inFlight: 0,
      maxInFlight: 1,
      refusedByClass: { rate: 500 },
      usage: { input: 2500, output: 1500 },
    });
  });

  it('finishes an entry once', () => {
    const ledger = new Ledger();
    const entry = open(ledger, 0);
    ledger.admit(entry, { input: 5, output: 10 });
    ledger.finish(entry, 1, 'aborted', { input: 5, output: 1 });
    ledger.finish(entry, 2, 'ok', { input: 5, output: 9 });
    expect(entry).toMatchObject({ outcome: 'aborted', completionMs: 1, usage: { output: 1 } });
    expect(ledger.summary([])).toMatchObject({ aborted: 1, ok: 0, inFlight: 0 });
  });
});
