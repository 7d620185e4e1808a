import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { describe, expect, it } from 'vitest';
import type { Series } from './ledger-figures.ts';
import { renderPicture } from './picture.ts';

const series = (admitted: number[], refused: number[], inFlight: number[]): Series => ({
  bucketMs: 500,
  t: admitted.map((_, index) => index / 2),
  admittedPerS: admitted,
  refusedPerS: refused,
  inFlight,
});

describe('renderPicture', () => {
  const svg = renderPicture({
    title: 'demo <glm> & co',
    subtitle: 'limits',
    left: {
      title: 'with tokenlease',
      notes: ['0 refused'],
      series: series([12, 14, 14], [0, 0, 0], [5.5, 6, 5.9]),
      loadEndS: 1,
    },
    right: {
      title: 'without',
      notes: ['40 refused', 'shares 50/25/25'],
      series: series([10, 16, 12], [30, 40, 20], [4, 6, 5]),
      loadEndS: 1,
    },
    rateLimitPerS: 20,
    rateLimitLabel: '100/5s = 20/s',
    concurrencyLimit: 6,
  });

  it('is well-formed SVG with both panels, the limits and escaped text', () => {
    expect(XMLValidator.validate(svg)).toBe(true);
    const doc = new XMLParser({ ignoreAttributes: false }).parse(svg) as { svg: Record<string, unknown> };
    expect(doc.svg['@_xmlns']).toBe('http://www.w3.org/2000/svg');
    expect(svg).toContain('demo &lt;glm&gt; &amp; co');
    expect(svg).toContain('with tokenlease');
    expect(svg).toContain('limit 100/5s = 20/s');
    expect(svg).toContain('concurrency limit 6');
    // Two charts per panel: admitted + refused lines, and in flight.
    expect(svg.match(/<polyline /g)).toHaveLength(6);
  });

  it('draws the same scale on both sides, with the limit inside it', () => {
    // The refusal peak (40/s) sets the rate scale: the 20/s limit line sits below the top.
    const limitLine = /<line x1="[\d.]+" y1="([\d.]+)"[^>]*stroke-dasharray="6 4"/.exec(svg);
    expect(limitLine).not.toBeNull();
    expect(Number(limitLine![1])).toBeGreaterThan(150);
  });
});
