/**
 * The demo's view while a phase runs: on a terminal, a compact table redrawn in place about four
 * times a second; otherwise (a pipe, CI, a test) one plain line every two seconds.
 */
import type { TenantCounters } from './load.ts';

export interface LiveSnapshot {
  title: string;
  elapsedMs: number;
  durationMs: number;
  /** Load stopped; calls in progress are finishing. */
  draining: boolean;
  tenants: Array<{ name: string; weight: number; counters: TenantCounters; waiting: number | undefined }>;
  provider: {
    inFlight: number;
    limits: Array<{ label: string; used: number; amount: number; effective: number | undefined }>;
    okThisPhase: number;
    refusedThisPhase: number;
  };
}

function bar(fraction: number, width: number): string {
  const filled = Math.max(0, Math.min(width, Math.round(fraction * width)));
  return `${'#'.repeat(filled)}${'.'.repeat(width - filled)}`;
}

function pad(cells: Array<string | number>, widths: number[]): string {
  return cells
    .map((cell, index) =>
      index === 0 ? String(cell).padEnd(widths[0]!) : String(cell).padStart(widths[index]!),
    )
    .join('  ');
}

/** The table, as lines (no trailing newline). */
export function renderTable(snapshot: LiveSnapshot): string[] {
  const seconds = (snapshot.elapsedMs / 1000).toFixed(1);
  const progress = Math.min(1, snapshot.elapsedMs / snapshot.durationMs);
  const lines = [
    `${snapshot.title}  [${bar(progress, 30)}] ${seconds}s / ${(snapshot.durationMs / 1000).toFixed(0)}s${snapshot.draining ? '  (finishing calls in progress)' : ''}`,
    '',
  ];
  const tenantWidths = [14, 6, 8, 7, 9, 7, 11, 8];
  lines.push(
    pad(
      ['tenant', 'weight', 'calls ok', 'failed', 'in progress', 'waiting', '429s seen', 'retries'],
      tenantWidths,
    ),
  );
  for (const tenant of snapshot.tenants) {
    const c = tenant.counters;
    const started = c.ok + c.failed + c.cancelled + c.inProgress;
    lines.push(
      pad(
        [
          tenant.name,
          tenant.weight,
          c.ok,
          c.failed,
          c.inProgress,
          tenant.waiting === undefined ? '-' : tenant.waiting,
          c.throttled,
          Math.max(0, c.attempts - started),
        ],
        tenantWidths,
      ),
    );
  }
  lines.push('');
  const p = snapshot.provider;
  lines.push(`provider: ${p.okThisPhase} completed, ${p.refusedThisPhase} refused (its own ledger)`);
  for (const limit of p.limits) {
    const effective =
      limit.effective !== undefined && limit.effective !== limit.amount
        ? ` (effective ${limit.effective})`
        : '';
    lines.push(
      `  ${limit.label.padEnd(18)} [${bar(limit.used / limit.amount, 24)}] ${String(limit.used).padStart(6)} / ${limit.amount}${effective}`,
    );
  }
  return lines;
}

/** One line for logs. */
export function renderLine(snapshot: LiveSnapshot): string {
  const totals = snapshot.tenants.reduce(
    (sum, tenant) => ({
      ok: sum.ok + tenant.counters.ok,
      failed: sum.failed + tenant.counters.failed,
      throttled: sum.throttled + tenant.counters.throttled,
      waiting: sum.waiting + (tenant.waiting ?? 0),
    }),
    { ok: 0, failed: 0, throttled: 0, waiting: 0 },
  );
  const limits = snapshot.provider.limits
    .map((limit) => `${limit.label} ${limit.used}/${limit.amount}`)
    .join(', ');
  return (
    `[${snapshot.title} ${(snapshot.elapsedMs / 1000).toFixed(1)}s${snapshot.draining ? ' finishing' : ''}] ` +
    `calls ok ${totals.ok}, failed ${totals.failed}, 429s seen ${totals.throttled}` +
    (snapshot.tenants.some((tenant) => tenant.waiting !== undefined) ? `, waiting ${totals.waiting}` : '') +
    ` | provider ${limits}, refused ${snapshot.provider.refusedThisPhase}`
  );
}

export interface LiveView {
  update(snapshot: LiveSnapshot): void;
  /** Leaves the last frame on screen. */
  done(snapshot: LiveSnapshot): void;
}

export function createLiveView(out: NodeJS.WriteStream, lineEveryMs = 2_000): LiveView {
  if (out.isTTY) {
    let drawn = 0;
    const draw = (snapshot: LiveSnapshot) => {
      const lines = renderTable(snapshot);
      // Up to the first line of the last frame, clear below, draw again.
      out.write(`${drawn > 0 ? `\x1b[${drawn}F` : ''}\x1b[J${lines.join('\n')}\n`);
      drawn = lines.length;
    };
    return { update: draw, done: draw };
  }
  let lastLine = -Infinity;
  return {
    update(snapshot) {
      if (snapshot.elapsedMs - lastLine < lineEveryMs) return;
      lastLine = snapshot.elapsedMs;
      out.write(`${renderLine(snapshot)}\n`);
    },
    done(snapshot) {
      out.write(`${renderLine(snapshot)}\n`);
    },
  };
}
