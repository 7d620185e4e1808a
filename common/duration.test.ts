import { describe, expect, it } from 'vitest';
import { formatDuration, parseDuration } from './duration.ts';

describe('parseDuration', () => {
  it.each([
    ['250ms', 250],
    ['1s', 1000],
    ['1m', 60_000],
    ['5h', 18_000_000],
    ['1d', 86_400_000],
    ['1w', 604_800_000],
    ['1m30.5s', 90_500],
    ['6m0s', 360_000],
    ['0', 0],
  ])('parses %s', (text, ms) => expect(parseDuration(text)).toBe(ms));

  it.each(['', 'abc', '5', '1x', '1m 30s', '-1s', 's', '1s2'])('refuses %j', (text) =>
    expect(parseDuration(text)).toBeUndefined(),
  );
});

describe('formatDuration', () => {
  it.each([
    [1000, '1s'],
    [18_000_000, '5h'],
    [1500, '1500ms'],
    [604_800_000, '1w'],
  ])('formats %d', (ms, text) => expect(formatDuration(ms)).toBe(text));
});
