/**
 * While the quota service cannot be reached the sidecar follows the budget's failure mode, says
 * so in /readyz and metrics, and goes back to the quota service when it answers again.
 */
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { StoreUnavailableError } from '../../common/errors/errors.ts';
import type { QuotaApi } from '../../common/quota-api.ts';
import type { LeaseEngine } from '../../controller/quota/engine/index.ts';
import { engineState, eventually, startStack, type Stack } from './harness.ts';

/** The engine behind a switch: while `down`, every call fails as an unreachable store does. */
function switchable(engine: LeaseEngine): QuotaApi & { down: boolean } {
  const unavailable = () => Promise.reject(new StoreUnavailableError('quota service: UNAVAILABLE'));
  const quota = {
    down: false,
    acquire: (input: Parameters<QuotaApi['acquire']>[0]) =>
      quota.down ? unavailable() : engine.acquire(input),
    settle: (input: Parameters<QuotaApi['settle']>[0]) => (quota.down ? unavailable() : engine.settle(input)),
    heartbeat: (input: Parameters<QuotaApi['heartbeat']>[0]) =>
      quota.down ? unavailable() : engine.heartbeat(input),
    usage: (provider?: string) => (quota.down ? unavailable() : engine.usage(provider)),
  };
  return quota as QuotaApi & { down: boolean };
}

async function call(url: string, timeoutMs = 2000) {
  const response = await request(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-tokenlease-timeout-ms': String(timeoutMs) },
    body: JSON.stringify({ model: 'm', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] }),
  });
  const text = await response.body.text();
  return { status: response.statusCode, headers: response.headers, text };
}

async function get(url: string): Promise<{ status: number; text: string }> {
  const response = await request(url);
  return { status: response.statusCode, text: await response.body.text() };
}

describe('failure modes', () => {
  let stack: Stack | undefined;
  afterEach(async () => {
    await stack?.close();
    stack = undefined;
  });

  async function start(failureMode: 'closed' | 'localShare' | 'open', limits: unknown[] = []) {
    let quota!: ReturnType<typeof switchable>;
    stack = await startStack({
      sim: { outputTokens: 4 },
      provider: { failureMode, limits },
      sidecar: { probeIntervalMs: 20 },
      quota: (engine) => (quota = switchable(engine)),
    });
    return { stack, quota };
  }

  it('closed: refuses with 503 in the provider format and is not ready; recovers', async () => {
    const { stack, quota } = await start('closed');
    expect((await call(stack.url)).status).toBe(200);
    quota.down = true;
    const refused = await call(stack.url);
    expect(refused.status).toBe(503);
    expect(refused.headers['retry-after']).toBe('1');
    expect(JSON.parse(refused.text)).toMatchObject({ error: { code: 'quota_service_unavailable' } });
    expect((await get(`${stack.url}/readyz`)).status).toBe(503);
    expect((await get(`${stack.url}/healthz`)).status).toBe(200);
    expect(
      await stack.sidecars[0]!.metrics.registry.getSingleMetricAsString(
        'tokenlease_sidecar_quota_service_reachable',
      ),
    ).toMatch(/ 0$/m);
    quota.down = false;
    await eventually(async () => expect((await get(`${stack.url}/readyz`)).status).toBe(200));
    expect((await call(stack.url)).status).toBe(200);
    expect(stack.sim.ledger.summary().total).toBe(2);
  });

  it('open: forwards unmetered and counts it', async () => {
    const { stack, quota } = await start('open');
    quota.down = true;
    expect((await call(stack.url)).status).toBe(200);
    expect((await call(stack.url)).status).toBe(200);
    expect((await get(`${stack.url}/readyz`)).status).toBe(200);
    const metrics = (await get(`${stack.url}/metrics`)).text;
    expect(metrics).toContain(
      'tokenlease_sidecar_failure_mode_requests_total{provider="llm/sim",mode="open"} 2',
    );
    expect(stack.sim.ledger.summary().ok).toBe(2);
  });

  it('localShare: a local limiter with a share of each limit, then back to the quota service', async () => {
    // 8 requests per minute; this sidecar's local share (0.25) is 2.
    const { stack, quota } = await start('localShare', [{ dimension: 'requests', amount: 8, window: '1m' }]);
    quota.down = true;
    const statuses = [];
    for (let i = 0; i < 3; i++) statuses.push((await call(stack.url, 100)).status);
    expect(statuses).toEqual([200, 200, 429]);
    expect(
      await stack.sidecars[0]!.metrics.registry.getSingleMetricAsString(
        'tokenlease_sidecar_failure_mode_requests_total',
      ),
    ).toMatch(/mode="localShare"} 3/);
    quota.down = false;
    await eventually(async () => expect((await get(`${stack.url}/readyz`)).text).toContain('"reachable"'));
    expect((await call(stack.url)).status).toBe(200);
    // Back on the shared engine: it granted this call (and none of the local ones).
    const snapshot = await stack.engine.usage('llm/sim');
    expect(snapshot.providers[0]!.limits[0]!.used).toBe(1);
    expect((await engineState(stack.engine)).inFlight).toBe(0);
  });
});
