import { describe, expect, it } from 'vitest';
import { mulberry32 } from './generate.ts';
import { Limiter, type Ticket } from './limiter.ts';
import { SlidingWindowLog } from './sliding-window.ts';

describe('SlidingWindowLog', () => {
  it('holds entries in (now - W, now]: an entry leaves exactly W after its arrival', () => {
    const log = new SlidingWindowLog(1000);
    log.add(0, 5);
    expect(log.used(999)).toBe(5);
    expect(log.used(999.999)).toBe(5);
    expect(log.used(1000)).toBe(0);
  });

  it('waitFor names when enough has aged out', () => {
    const log = new SlidingWindowLog(1000);
    log.add(0, 3);
    log.add(100, 3);
    log.add(200, 3);
    expect(log.waitFor(500, 1, 10)).toBe(0);
    expect(log.waitFor(500, 2, 10)).toBe(500); // entry at 0 leaves at 1000
    expect(log.waitFor(500, 5, 10)).toBe(600); // needs entries at 0 and 100 gone
    expect(log.waitFor(500, 11, 10)).toBe(Infinity);
    expect(log.drainMs(500)).toBe(700);
  });

  it('corrects an entry at its arrival time and ignores corrections of aged-out entries', () => {
    const log = new SlidingWindowLog(1000);
    const a = log.add(0, 10);
    const b = log.add(500, 10);
    log.correct(a, 4);
    expect(log.used(600)).toBe(14);
    expect(log.used(1200)).toBe(10);
    log.correct(a, 0);
    log.correct(b, 7);
    expect(log.used(1200)).toBe(7);
  });

  it('keeps sequence numbers valid across compaction of a long log', () => {
    const log = new SlidingWindowLog(10);
    const seqs: number[] = [];
    for (let t = 0; t < 5000; t++) seqs.push(log.add(t, 1));
    expect(log.used(4999)).toBe(10);
    log.correct(seqs[4995]!, 0);
    expect(log.used(4999)).toBe(9);
    expect(log.size(4999)).toBe(10);
  });
});

describe('Limiter', () => {
  it('admits exactly the limit over any window, at the boundary too', () => {
    const limiter = new Limiter([{ dimension: 'requests', amount: 3, window: '1s' }]);
    const admitted: number[] = [];
    // Arrivals every 100 ms for 5 s: the guarantee must hold over every 1 s interval.
    for (let t = 0; t < 5000; t += 100)
      if (limiter.admit(t, 'm', { input: 1, output: 1 }).ok) admitted.push(t);
    expect(admitted.slice(0, 6)).toEqual([0, 100, 200, 1000, 1100, 1200]);
    for (const start of admitted) {
      expect(admitted.filter((t) => t >= start && t < start + 1000).length).toBeLessThanOrEqual(3);
    }
  });

  it('refusals consume nothing and report the wait of the limit that keeps the request out longest', () => {
    const limiter = new Limiter([
      { dimension: 'requests', amount: 10, window: '1m' },
      { dimension: 'totalTokens', amount: 100, window: '1s' },
    ]);
    expect(limiter.admit(0, 'm', { input: 30, output: 50 }).ok).toBe(true);
    const refused = limiter.admit(10, 'm', { input: 10, output: 20 });
    expect(refused).toMatchObject({
      ok: false,
      refusal: { reason: 'limit', requested: 30, used: 80, retryAfterMs: 990 },
    });
    expect(refused.ok ? undefined : refused.refusal.limit.label).toBe('totalTokens/1s');
    const requests = limiter.read(10, 'm').find((r) => r.limit.label === 'requests/1m')!;
    expect(requests.used).toBe(1);
  });

  it('corrects token charges to real usage at completion, letting later requests in', () => {
    const limiter = new Limiter([{ dimension: 'outputTokens', amount: 100, window: '1m' }]);
    const first = limiter.admit(0, 'm', { input: 5, output: 100 });
    expect(first.ok).toBe(true);
    expect(limiter.admit(1, 'm', { input: 5, output: 10 }).ok).toBe(false);
    if (first.ok) limiter.complete(first.ticket, { input: 5, output: 40 });
    expect(limiter.admit(2, 'm', { input: 5, output: 60 }).ok).toBe(true);
    expect(limiter.admit(3, 'm', { input: 5, output: 1 }).ok).toBe(false);
  });

  it('holds a concurrency slot until completion, once', () => {
    const limiter = new Limiter([{ dimension: 'concurrency', amount: 2 }]);
    const a = limiter.admit(0, 'm', { input: 1, output: 1 });
    const b = limiter.admit(0, 'm', { input: 1, output: 1 });
    const c = limiter.admit(0, 'm', { input: 1, output: 1 });
    expect([a.ok, b.ok, c.ok]).toEqual([true, true, false]);
    if (a.ok) {
      limiter.complete(a.ticket, { input: 1, output: 1 });
      limiter.complete(a.ticket, { input: 1, output: 1 });
    }
    expect(limiter.admit(1, 'm', { input: 1, output: 1 }).ok).toBe(true);
    expect(limiter.admit(1, 'm', { input: 1, output: 1 }).ok).toBe(false);
    expect(limiter.all()[0]!.peak).toBe(2);
  });

  it('applies model limits only to that model, and refuses a request larger than a limit as tooLarge', () => {
    const limiter = new Limiter([
      { dimension: 'requests', amount: 1, window: '1m', model: 'big' },
      { dimension: 'inputTokens', amount: 1000, window: '1m' },
    ]);
    expect(limiter.admit(0, 'big', { input: 1, output: 0 }).ok).toBe(true);
    expect(limiter.admit(0, 'big', { input: 1, output: 0 }).ok).toBe(false);
    expect(limiter.admit(0, 'small', { input: 1, output: 0 }).ok).toBe(true);
    const tooLarge = limiter.admit(0, 'small', { input: 1001, output: 0 });
    expect(tooLarge).toMatchObject({ ok: false, refusal: { reason: 'tooLarge', requested: 1001 } });
  });

  it('keeps state of unchanged limits when limits are replaced, and forgets everything on reset', () => {
    const limiter = new Limiter([{ dimension: 'concurrency', amount: 1 }]);
    const held = limiter.admit(0, 'm', { input: 1, output: 1 });
    limiter.setLimits([{ dimension: 'concurrency', amount: 2 }]);
    expect(limiter.admit(0, 'm', { input: 1, output: 1 }).ok).toBe(true);
    expect(limiter.admit(0, 'm', { input: 1, output: 1 }).ok).toBe(false);
    if (held.ok) limiter.complete(held.ticket, { input: 1, output: 1 });
    expect(limiter.admit(0, 'm', { input: 1, output: 1 }).ok).toBe(true);
    limiter.reset();
    expect(limiter.all()[0]!.inFlight).toBe(0);
  });
});

describe('Limiter under random load', () => {
  it('never lets the final usage of any window exceed a limit, nor concurrency exceed its slots', () => {
    const random = mulberry32(42);
    const limiter = new Limiter([
      { dimension: 'requests', amount: 20, window: '1s' },
      { dimension: 'totalTokens', amount: 3000, window: '2s' },
      { dimension: 'concurrency', amount: 4 },
    ]);
    const admitted: Array<{ at: number; total: number }> = [];
    const inFlight: Array<{
      until: number;
      ticket: Ticket;
      usage: { input: number; output: number };
      record: { total: number };
    }> = [];
    let peak = 0;
    for (let now = 0; now < 20_000; now += Math.floor(random() * 20)) {
      // Complete what is due, correcting to a real usage at most the charge.
      for (let i = inFlight.length - 1; i >= 0; i--) {
        const flight = inFlight[i]!;
        if (flight.until > now) continue;
        limiter.complete(flight.ticket, flight.usage);
        flight.record.total = flight.usage.input + flight.usage.output;
        inFlight.splice(i, 1);
      }
      const charge = { input: 1 + Math.floor(random() * 200), output: 1 + Math.floor(random() * 300) };
      const admission = limiter.admit(now, 'm', charge);
      if (!admission.ok) continue;
      const record = { at: now, total: charge.input + charge.output };
      admitted.push(record);
      const usage = { input: charge.input, output: Math.floor(random() * charge.output) };
      inFlight.push({ until: now + Math.floor(random() * 300), ticket: admission.ticket, usage, record });
      peak = Math.max(peak, inFlight.length);
    }
    expect(admitted.length).toBeGreaterThan(100);
    expect(peak).toBeLessThanOrEqual(4);
    for (const start of admitted.map((record) => record.at)) {
      const inWindow = (windowMs: number) => admitted.filter((r) => r.at >= start && r.at < start + windowMs);
      expect(inWindow(1000).length).toBeLessThanOrEqual(20);
      expect(inWindow(2000).reduce((sum, r) => sum + r.total, 0)).toBeLessThanOrEqual(3000);
    }
  });
});
