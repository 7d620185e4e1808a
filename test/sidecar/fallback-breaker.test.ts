/**
 * The sidecar's circuit breaker per upstream provider, end to end with the official openai
 * client: repeated 5xx open it (calls then skip the provider), after the cool-down one call
 * probes, and a good probe closes it. Rate refusals are not its business.
 */
import OpenAI from 'openai';
import { afterEach, describe, expect, it } from 'vitest';
import { eventually } from './harness.ts';
import { CHAT, FALLBACK, PRIMARY, startFallbackStack, type FallbackStack } from './fallback-harness.ts';

async function servedBy(stack: FallbackStack): Promise<string | null> {
  const { response } = await stack
    .client()
    .chat.completions.create(CHAT, { headers: { 'x-tokenlease-timeout-ms': '5000' } })
    .withResponse();
  return response.headers.get('x-tokenlease-provider');
}

const STATE = 'tokenlease_sidecar_circuit_breaker_state';

async function breakerState(stack: FallbackStack, provider: string): Promise<number> {
  const text = await stack.metric(STATE);
  const match = new RegExp(`${STATE}\\{provider="${provider}"\\} (\\d)`).exec(text);
  return match ? Number(match[1]) : NaN;
}

describe('circuit breaker', () => {
  let stack: FallbackStack | undefined;
  afterEach(async () => {
    await stack?.close();
    stack = undefined;
  });

  it('opens after repeated 5xx, skips the provider, probes once after the cool-down and closes', async () => {
    stack = await startFallbackStack({
      primary: { circuitBreaker: { consecutiveFailures: 3, minCalls: 100, coolDown: '300ms' } },
    });
    const running = stack;
    stack.primary.inject('serverError', 3);
    // Each 500 moves the call on: the app never sees them.
    for (let i = 0; i < 3; i++) expect(await servedBy(stack)).toBe(FALLBACK);
    expect(await breakerState(stack, PRIMARY)).toBe(2);

    // Open: the primary gets nothing.
    for (let i = 0; i < 2; i++) expect(await servedBy(stack)).toBe(FALLBACK);
    expect(stack.primary.ledger.summary().total).toBe(3);
    const fallbacks = await stack.metric('tokenlease_sidecar_fallbacks_total');
    expect(fallbacks).toContain(`{from="${PRIMARY}",to="${FALLBACK}",reason="error"} 3`);
    expect(fallbacks).toContain(`{from="${PRIMARY}",to="${FALLBACK}",reason="circuitOpen"} 2`);

    // Half-open after the cool-down: one probe, which fails, opens it again.
    await eventually(async () => expect(await breakerState(running, PRIMARY)).toBe(1));
    stack.primary.inject('serverError', 1);
    expect(await servedBy(stack)).toBe(FALLBACK);
    expect(stack.primary.ledger.summary().total).toBe(4);
    expect(await breakerState(stack, PRIMARY)).toBe(2);

    // The next probe succeeds: closed, and the primary serves again.
    await eventually(async () => expect(await breakerState(running, PRIMARY)).toBe(1));
    expect(await servedBy(stack)).toBe(PRIMARY);
    expect(await breakerState(stack, PRIMARY)).toBe(0);
    expect(await servedBy(stack)).toBe(PRIMARY);
    expect(stack.primary.ledger.summary().ok).toBe(2);

    const transitions = await stack.metric('tokenlease_sidecar_circuit_breaker_transitions_total');
    expect(transitions).toContain(`{provider="${PRIMARY}",state="open"} 2`);
    expect(transitions).toContain(`{provider="${PRIMARY}",state="halfOpen"} 2`);
    expect(transitions).toContain(`{provider="${PRIMARY}",state="closed"} 1`);
    expect(await stack.inFlight(PRIMARY)).toBe(0);
    expect(await stack.inFlight(FALLBACK)).toBe(0);
  });

  it('an unreachable provider: calls move on, its breaker opens, no lease is left', async () => {
    stack = await startFallbackStack({
      // Nothing listens on port 1: connections are refused.
      primary: {
        baseURL: 'http://127.0.0.1:1/v1',
        circuitBreaker: { consecutiveFailures: 2, coolDown: '1m' },
      },
    });
    for (let i = 0; i < 3; i++) expect(await servedBy(stack)).toBe(FALLBACK);
    expect(await breakerState(stack, PRIMARY)).toBe(2);
    const fallbacks = await stack.metric('tokenlease_sidecar_fallbacks_total');
    expect(fallbacks).toContain(`{from="${PRIMARY}",to="${FALLBACK}",reason="error"} 2`);
    expect(fallbacks).toContain(`{from="${PRIMARY}",to="${FALLBACK}",reason="circuitOpen"} 1`);
    const budget = (await stack.engine.usage(PRIMARY)).providers[0]!.budgets[0]!;
    expect(budget.granted).toBe(2);
    expect(await stack.inFlight(PRIMARY)).toBe(0);
    expect(await stack.inFlight(FALLBACK)).toBe(0);
  });

  it('rate refusals are the quota engine business: they move the call on but never open the breaker', async () => {
    stack = await startFallbackStack({
      // The provider allows 1 request a minute; tokenlease was not told.
      primarySim: { limits: [{ dimension: 'requests', amount: 1, window: '1m' }] },
      // One counted failure would open it.
      primary: { circuitBreaker: { consecutiveFailures: 1, minCalls: 1, failureRate: 0.1 } },
    });
    expect(await servedBy(stack)).toBe(PRIMARY);
    expect(await servedBy(stack)).toBe(FALLBACK);
    expect(stack.primary.ledger.summary().refusedByClass).toEqual({ rate: 1 });
    expect(await breakerState(stack, PRIMARY)).toBe(0);
    expect(await stack.metric('tokenlease_sidecar_fallbacks_total')).toContain(
      `{from="${PRIMARY}",to="${FALLBACK}",reason="refused"} 1`,
    );
    // The engine, told of the refusal and its retry hint, now holds the calls back itself.
    expect(await servedBy(stack)).toBe(FALLBACK);
    expect(stack.primary.ledger.summary().total).toBe(2);
    expect(await breakerState(stack, PRIMARY)).toBe(0);
    expect(await stack.inFlight(PRIMARY)).toBe(0);
  });

  it('every provider of the route open: 503 with a retry hint, no upstream call', async () => {
    const breaker = { consecutiveFailures: 2, minCalls: 100, coolDown: '1m' };
    stack = await startFallbackStack({
      primary: { circuitBreaker: breaker },
      fallback: { circuitBreaker: breaker },
    });
    stack.primary.inject('serverError', 2);
    for (let i = 0; i < 2; i++) expect(await servedBy(stack)).toBe(FALLBACK);
    // The fallback is the last provider left: its 500 reaches the app as the provider sent it.
    stack.fallback.inject('serverError', 2);
    for (let i = 0; i < 2; i++) {
      const error = (await servedBy(stack).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
      expect(error).toBeInstanceOf(OpenAI.InternalServerError);
      expect(error.status).toBe(500);
      expect(error.headers?.get('x-tokenlease-provider')).toBe(FALLBACK);
    }
    const upstreamCalls = stack.primary.ledger.summary().total + stack.fallback.ledger.summary().total;
    const refused = (await servedBy(stack).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
    expect(refused.status).toBe(503);
    expect(refused.headers?.get('x-tokenlease-error')).toBe('provider_unavailable');
    expect(Number(refused.headers?.get('retry-after'))).toBeGreaterThan(30);
    expect(stack.primary.ledger.summary().total + stack.fallback.ledger.summary().total).toBe(upstreamCalls);
    expect(await stack.inFlight(PRIMARY)).toBe(0);
    expect(await stack.inFlight(FALLBACK)).toBe(0);
  });
});
