/**
 * Go's `time.Duration.String()` for whole milliseconds, the format OpenAI uses in
 * `x-ratelimit-reset-*` and in "Please try again in 1.146s": `12ms`, `1s`, `1.146s`, `6m0s`,
 * `1m30.5s`, `1h0m0s`. Fractions of a millisecond are rounded up so a hint is never early.
 */
export function formatGoDuration(ms: number): string {
  const total = Math.ceil(Math.max(0, ms));
  if (total === 0) return '0s';
  if (total < 1000) return `${total}ms`;
  const hours = Math.floor(total / 3_600_000);
  const minutes = Math.floor((total % 3_600_000) / 60_000);
  const millis = total % 60_000;
  const seconds = `${Math.floor(millis / 1000)}${
    millis % 1000
      ? `.${String(millis % 1000)
          .padStart(3, '0')
          .replace(/0+$/, '')}`
      : ''
  }s`;
  if (hours > 0) return `${hours}h${minutes}m${seconds}`;
  if (minutes > 0) return `${minutes}m${seconds}`;
  return seconds;
}
