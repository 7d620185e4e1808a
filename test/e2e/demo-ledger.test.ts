/**
 * `tokenlease demo --duration 10`, run as a user would but with stdout piped, against a simulated
 * provider this test owns: every figure the demo reports is checked against the provider's own
 * ledger, read here independently of the demo.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { XMLValidator } from 'fast-xml-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimProvider, type LedgerEntry, type SimProvider } from '../../sim-provider/index.ts';
import type { PhaseSummary } from '../../demo/summary.ts';
import { runDemo, type DemoRun } from './demo-run.ts';

describe('tokenlease demo --duration 10 against a provider whose ledger the test reads', () => {
  let sim: SimProvider;
  let dir: string;
  let run: DemoRun;

  beforeAll(async () => {
    sim = await startSimProvider({});
    dir = await mkdtemp(join(tmpdir(), 'tokenlease-demo-test-'));
    run = await runDemo(['--duration', '10', '--provider-url', sim.url, '--picture', 'out/demo.svg'], dir);
  }, 120_000);

  afterAll(async () => {
    await sim?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const phaseEntries = (phase: PhaseSummary): LedgerEntry[] =>
    sim.ledger
      .entries()
      .filter((entry) => entry.id >= phase.ledger.firstId && entry.id <= phase.ledger.lastId);

  it('exits 0, shows the run plainly (no terminal) and ends with the JSON summary', () => {
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).not.toContain('\x1b[');
    expect(run.stdout).toMatch(/^\[with tokenlease \d+\.\ds\] calls ok \d+/m);
    expect(run.stdout).toMatch(/^\[without tokenlease \d+\.\ds/m);
    expect(run.stdout).toContain('upstream refusals (provider ledger)');
    expect(run.summary).toMatchObject({
      kind: 'tokenlease-demo-summary',
      flavour: 'glm',
      store: 'memory',
      embeddedProvider: false,
    });
  });

  it('the two phases cover every request the provider saw, without overlapping', () => {
    const { tokenlease, direct } = run.summary!.phases;
    expect(tokenlease.ledger.firstId).toBe(1);
    expect(direct.ledger.firstId).toBe(tokenlease.ledger.lastId + 1);
    expect(direct.ledger.lastId).toBe(sim.ledger.summary().total);
  });

  it("the demo's counts are the ledger's counts, phase by phase", () => {
    for (const phase of Object.values(run.summary!.phases)) {
      const entries = phaseEntries(phase);
      const refused = entries.filter((entry) => entry.outcome === 'refused');
      const codes: Record<string, number> = {};
      for (const entry of refused) codes[entry.refusal!.code] = (codes[entry.refusal!.code] ?? 0) + 1;
      expect(phase.ledger).toMatchObject({
        requests: entries.length,
        refused: refused.length,
        ok: entries.filter((entry) => entry.outcome === 'ok').length,
        admitted: entries.length - refused.length,
        refusedByCode: codes,
      });
      // Every completion the apps counted is one the provider recorded, and the other way round.
      expect(phase.calls.ok).toBe(phase.ledger.ok);
      expect(phase.tenants.reduce((sum, tenant) => sum + tenant.ok, 0)).toBe(phase.calls.ok);
    }
  });

  it('with tokenlease the provider refused nothing; without it, it refused many, and the apps saw each refusal', () => {
    const { tokenlease, direct } = run.summary!.phases;
    expect(phaseEntries(tokenlease).filter((entry) => entry.outcome === 'refused')).toHaveLength(0);
    expect(tokenlease.calls).toMatchObject({ failed: 0, throttled: 0 });
    expect(tokenlease.ledger.ok).toBeGreaterThan(50);
    const refusedDirect = phaseEntries(direct).filter((entry) => entry.outcome === 'refused');
    expect(refusedDirect.length).toBeGreaterThan(0);
    expect(
      refusedDirect.every((entry) => entry.refusal!.code === '1302' || entry.refusal!.code === '1303'),
    ).toBe(true);
    expect(direct.calls.throttled).toBe(refusedDirect.length);
  });

  it('never more in flight than the limit, and the reported peak is the ledger peak', () => {
    for (const phase of Object.values(run.summary!.phases)) {
      const concurrency = phase.limits.find((limit) => limit.label === 'concurrency')!;
      const events = phaseEntries(phase)
        .filter((entry) => entry.outcome !== 'refused')
        .flatMap((entry): Array<[number, number]> => [
          [entry.arrivalMs, 1],
          [entry.completionMs!, -1],
        ])
        .sort((a, b) => a[0] - b[0] || a[1] - b[1]);
      let level = 0;
      let peak = 0;
      for (const [, delta] of events) peak = Math.max(peak, (level += delta));
      expect(concurrency.peak).toBe(peak);
      expect(peak).toBeLessThanOrEqual(concurrency.amount);
    }
  });

  it('with tokenlease the shares follow the weights, whatever each tenant asks for', () => {
    // Without tokenlease the shares are whoever happens to hold the slots: no assertion there.
    const { tokenlease } = run.summary!.phases;
    const shares = tokenlease.tenants
      .map((tenant) => `${tenant.name} ${tenant.share} (weight ${tenant.weight})`)
      .join(', ');
    expect(tokenlease.fairnessMaxDeviationPoints, shares).toBeLessThan(10);
    // The tenant with the most clients does not get the most calls.
    const [search, , reports] = tokenlease.tenants;
    expect(reports!.workers).toBeGreaterThan(search!.workers);
    expect(search!.ok, shares).toBeGreaterThan(reports!.ok);
  });

  it('writes the picture where asked, as valid SVG', async () => {
    expect(run.summary!.picture).toBe(join(dir, 'out/demo.svg'));
    const svg = await readFile(run.summary!.picture, 'utf8');
    expect(XMLValidator.validate(svg)).toBe(true);
    expect(svg).toMatch(/^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    expect(svg).toContain('with tokenlease');
    expect(svg).toContain('concurrency limit 6');
  });
});
