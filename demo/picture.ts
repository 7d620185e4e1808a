/**
 * The demo's picture, as hand-written SVG (no browser or canvas needed): for each phase, the
 * calls the provider admitted and refused per second, and the calls in flight, against the
 * provider's limits. Same scales on both sides so the two phases compare at a glance.
 */
import type { Series } from './ledger-figures.ts';

export interface PicturePanel {
  title: string;
  series: Series;
  /** Headlines under the title, one per line, e.g. "0 refused by the provider · 97% of concurrency used". */
  notes: string[];
  /** When the load stopped (calls in progress finish after it), seconds. */
  loadEndS: number;
}

export interface PictureInput {
  title: string;
  subtitle: string;
  left: PicturePanel;
  right: PicturePanel;
  /** A request-rate limit expressed per second (amount / window), when there is one. */
  rateLimitPerS: number | undefined;
  rateLimitLabel: string | undefined;
  concurrencyLimit: number | undefined;
}

const WIDTH = 1100;
const HEIGHT = 660;
const COLORS = {
  admitted: '#2563eb',
  refused: '#dc2626',
  inFlight: '#059669',
  limit: '#111827',
  grid: '#e5e7eb',
  text: '#111827',
  muted: '#6b7280',
};

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** A round step giving about `count` ticks up to `max`. */
function niceStep(max: number, count: number): number {
  const raw = max / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const scaled = raw / power;
  return (scaled <= 1 ? 1 : scaled <= 2 ? 2 : scaled <= 5 ? 5 : 10) * power;
}

function niceMax(max: number): number {
  if (max <= 0) return 1;
  const step = niceStep(max, 5);
  return Math.ceil(max / step) * step;
}

interface Box {
  x: number;
  y: number;
  w: number;
  h: number;
}

function fmt(value: number): string {
  return Number.isInteger(value) ? String(value) : value.toFixed(1);
}

/** One chart: axes, grid, series as step lines, a dashed limit. */
function chart(
  box: Box,
  xMax: number,
  yMax: number,
  yLabel: string,
  lines: Array<{ t: number[]; values: number[]; color: string; fill?: boolean }>,
  limit: { value: number; label: string } | undefined,
  loadEndS: number,
): string {
  const sx = (t: number) => box.x + (t / xMax) * box.w;
  const sy = (v: number) => box.y + box.h - (Math.min(v, yMax) / yMax) * box.h;
  const parts: string[] = [];
  const yStep = niceStep(yMax, 4);
  for (let v = 0; v <= yMax + 1e-9; v += yStep) {
    parts.push(
      `<line x1="${box.x}" y1="${sy(v).toFixed(1)}" x2="${box.x + box.w}" y2="${sy(v).toFixed(1)}" stroke="${COLORS.grid}"/>`,
    );
    parts.push(
      `<text x="${box.x - 6}" y="${(sy(v) + 4).toFixed(1)}" text-anchor="end" font-size="11" fill="${COLORS.muted}">${fmt(v)}</text>`,
    );
  }
  const xStep = niceStep(xMax, 6);
  for (let t = 0; t <= xMax + 1e-9; t += xStep) {
    parts.push(
      `<text x="${sx(t).toFixed(1)}" y="${box.y + box.h + 16}" text-anchor="middle" font-size="11" fill="${COLORS.muted}">${fmt(t)}s</text>`,
    );
  }
  parts.push(
    `<text x="${box.x}" y="${box.y - 8}" font-size="12" fill="${COLORS.text}">${escapeXml(yLabel)}</text>`,
  );
  for (const line of lines) {
    if (line.t.length === 0) continue;
    const step = line.t.length > 1 ? line.t[1]! - line.t[0]! : 1;
    const points: string[] = [];
    line.t.forEach((t, index) => {
      const y = sy(line.values[index] ?? 0).toFixed(1);
      points.push(`${sx(t).toFixed(1)},${y}`, `${sx(Math.min(xMax, t + step)).toFixed(1)},${y}`);
    });
    if (line.fill) {
      const base = sy(0).toFixed(1);
      const first = sx(line.t[0]!).toFixed(1);
      const last = sx(Math.min(xMax, line.t.at(-1)! + step)).toFixed(1);
      parts.push(
        `<polygon points="${first},${base} ${points.join(' ')} ${last},${base}" fill="${line.color}" fill-opacity="0.18" stroke="none"/>`,
      );
    }
    parts.push(
      `<polyline points="${points.join(' ')}" fill="none" stroke="${line.color}" stroke-width="1.6"/>`,
    );
  }
  if (limit) {
    const y = sy(limit.value).toFixed(1);
    parts.push(
      `<line x1="${box.x}" y1="${y}" x2="${box.x + box.w}" y2="${y}" stroke="${COLORS.limit}" stroke-width="1.4" stroke-dasharray="6 4"/>`,
    );
    parts.push(
      `<text x="${box.x + box.w - 4}" y="${(Number(y) - 5).toFixed(1)}" text-anchor="end" font-size="11" fill="${COLORS.limit}">${escapeXml(limit.label)}</text>`,
    );
  }
  const endX = sx(Math.min(loadEndS, xMax)).toFixed(1);
  parts.push(
    `<line x1="${endX}" y1="${box.y}" x2="${endX}" y2="${box.y + box.h}" stroke="${COLORS.muted}" stroke-dasharray="2 3"/>`,
  );
  parts.push(
    `<text x="${Number(endX) - 4}" y="${box.y + 12}" text-anchor="end" font-size="10" fill="${COLORS.muted}">load stops</text>`,
  );
  parts.push(
    `<rect x="${box.x}" y="${box.y}" width="${box.w}" height="${box.h}" fill="none" stroke="#9ca3af"/>`,
  );
  return parts.join('\n');
}

export function renderPicture(input: PictureInput): string {
  const panels = [input.left, input.right];
  const xMax = Math.max(
    1,
    ...panels.map((panel) => (panel.series.t.at(-1) ?? 0) + panel.series.bucketMs / 1000),
  );
  const rateMax = niceMax(
    Math.max(
      input.rateLimitPerS ?? 0,
      ...panels.flatMap((panel) => [...panel.series.admittedPerS, ...panel.series.refusedPerS]),
    ) * 1.1,
  );
  const flightMax = niceMax(
    Math.max(input.concurrencyLimit ?? 0, ...panels.flatMap((panel) => panel.series.inFlight)) * 1.15,
  );
  const columnW = (WIDTH - 70 - 40 - 60) / 2;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="Helvetica, Arial, sans-serif">`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="#ffffff"/>`,
    `<text x="24" y="34" font-size="20" font-weight="bold" fill="${COLORS.text}">${escapeXml(input.title)}</text>`,
    `<text x="24" y="56" font-size="13" fill="${COLORS.muted}">${escapeXml(input.subtitle)}</text>`,
  ];
  panels.forEach((panel, index) => {
    const x = 70 + index * (columnW + 60);
    parts.push(
      `<text x="${x}" y="96" font-size="16" font-weight="bold" fill="${COLORS.text}">${escapeXml(panel.title)}</text>`,
    );
    panel.notes.forEach((note, line) => {
      parts.push(
        `<text x="${x}" y="${116 + line * 16}" font-size="12" fill="${COLORS.muted}">${escapeXml(note)}</text>`,
      );
    });
    parts.push(
      chart(
        { x, y: 168, w: columnW, h: 180 },
        xMax,
        rateMax,
        'calls per second at the provider',
        [
          { t: panel.series.t, values: panel.series.admittedPerS, color: COLORS.admitted, fill: true },
          { t: panel.series.t, values: panel.series.refusedPerS, color: COLORS.refused },
        ],
        input.rateLimitPerS === undefined
          ? undefined
          : { value: input.rateLimitPerS, label: `limit ${input.rateLimitLabel}` },
        panel.loadEndS,
      ),
    );
    parts.push(
      chart(
        { x, y: 408, w: columnW, h: 180 },
        xMax,
        flightMax,
        'calls in flight at the provider',
        [{ t: panel.series.t, values: panel.series.inFlight, color: COLORS.inFlight, fill: true }],
        input.concurrencyLimit === undefined
          ? undefined
          : { value: input.concurrencyLimit, label: `concurrency limit ${input.concurrencyLimit}` },
        panel.loadEndS,
      ),
    );
  });
  const legend: Array<[string, string, boolean]> = [
    ['admitted', COLORS.admitted, false],
    ['refused (429)', COLORS.refused, false],
    ['in flight', COLORS.inFlight, false],
    ['limit', COLORS.limit, true],
  ];
  legend.forEach(([label, color, dashed], index) => {
    const x = 70 + index * 150;
    parts.push(
      `<line x1="${x}" y1="634" x2="${x + 26}" y2="634" stroke="${color}" stroke-width="2.5"${dashed ? ' stroke-dasharray="6 4"' : ''}/>`,
    );
    parts.push(`<text x="${x + 32}" y="638" font-size="12" fill="${COLORS.text}">${escapeXml(label)}</text>`);
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}
