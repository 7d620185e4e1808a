/** Waits until a quota-server reports SERVING on gRPC health (its store answers), or gives up. */
import { checkHealth } from '../../common/grpc/health-client.ts';

export async function waitServing(target: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      if ((await checkHealth(target, { deadlineMs: 1_000 })) === 'SERVING') return;
    } catch (error) {
      last = error;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`quota-server ${target} not SERVING after ${timeoutMs} ms`, { cause: last });
}
