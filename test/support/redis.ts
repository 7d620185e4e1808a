/** The Redis that tests use: TOKENLEASE_TEST_REDIS_URL, else the machine's shared one. */
export function redisUrl(): string {
  return process.env.TOKENLEASE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
}
