import { describe, expect, it } from 'vitest';
import { InvalidRequestError } from '../../common/errors/errors.ts';
import { deadlineOf } from './deadline.ts';

const NOW = 1_000_000;

describe('deadlineOf', () => {
  it('uses the default without a header', () =>
    expect(deadlineOf({}, NOW, 30_000, 60_000)).toBe(NOW + 30_000));
  it('reads a relative timeout', () =>
    expect(deadlineOf({ 'x-tokenlease-timeout-ms': '250' }, NOW, 30_000, 60_000)).toBe(NOW + 250));
  it('reads an absolute deadline, which wins', () =>
    expect(
      deadlineOf(
        { 'x-tokenlease-deadline-ms': String(NOW + 500), 'x-tokenlease-timeout-ms': '9' },
        NOW,
        30_000,
        60_000,
      ),
    ).toBe(NOW + 500));
  it('never exceeds the maximum', () =>
    expect(deadlineOf({ 'x-tokenlease-timeout-ms': '9999999' }, NOW, 30_000, 60_000)).toBe(NOW + 60_000));
  it.each(['soon', '-5', ''])('refuses %j', (value) =>
    expect(() => deadlineOf({ 'x-tokenlease-timeout-ms': value }, NOW, 30_000, 60_000)).toThrow(
      InvalidRequestError,
    ),
  );
});
