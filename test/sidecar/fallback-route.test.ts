/**
 * A budget's fallback route, end to end with the official openai client: two simulated providers,
 * the lease engine, one sidecar. The app always asks for the primary's model.
 */
import OpenAI from 'openai';
import { afterEach, describe, expect, it } from 'vitest';
import { eventually } from './harness.ts';
import {
  BUDGET,
  CHAT,
  FALLBACK,
  FALLBACK_MODEL,
  PRIMARY,
  PRIMARY_MODEL,
  startFallbackStack,
  type FallbackStack,
} from './fallback-harness.ts';

async function chat(stack: FallbackStack, timeoutMs = 5_000) {
  const { data, response } = await stack
    .client()
    .chat.completions.create(CHAT, { headers: { 'x-tokenlease-timeout-ms': String(timeoutMs) } })
    .withResponse();
  return { data, provider: response.headers.get('x-tokenlease-provider') };
}

async function noLeaseLeft(stack: FallbackStack) {
  await eventually(async () => {
    expect(await stack.inFlight(PRIMARY)).toBe(0);
    expect(await stack.inFlight(FALLBACK)).toBe(0);
  });
}

describe('fallback route', () => {
  let stack: FallbackStack | undefined;
  afterEach(async () => {
    await stack?.close();
    stack = undefined;
  });

  it('primary saturated (its one slot held): the fallback serves after `after`, asked for its model', async () => {
    stack = await startFallbackStack({
      primary: { limits: [{ dimension: 'concurrency', amount: 1 }] },
    });
    const held = await stack.engine.acquire({
      provider: PRIMARY,
      model: PRIMARY_MODEL,
      budget: BUDGET,
      inputTokens: 1,
      maxOutputTokens: 1,
      maxWaitMs: 0,
    });

    const served = await chat(stack);
    expect(served.provider).toBe(FALLBACK);
    // The answer names the model that wrote it.
    expect(served.data.model).toBe(FALLBACK_MODEL);
    expect(stack.primary.ledger.summary().total).toBe(0);
    expect(stack.fallback.ledger.entries().map((entry) => entry.model)).toEqual([FALLBACK_MODEL]);

    // A stream is rewritten the same way; the usage chunk we asked for is still hidden.
    const stream = await stack
      .client()
      .chat.completions.create({ ...CHAT, stream: true })
      .withResponse();
    expect(stream.response.headers.get('x-tokenlease-provider')).toBe(FALLBACK);
    const chunks = [];
    for await (const chunk of stream.data) chunks.push(chunk);
    expect(chunks.every((chunk) => chunk.model === FALLBACK_MODEL)).toBe(true);
    expect(chunks.some((chunk) => chunk.usage)).toBe(false);

    expect(await stack.metric('tokenlease_sidecar_fallbacks_total')).toContain(
      `tokenlease_sidecar_fallbacks_total{from="${PRIMARY}",to="${FALLBACK}",reason="capacity"} 2`,
    );
    expect(await stack.metric('tokenlease_sidecar_requests_total')).toContain(
      `provider="${FALLBACK}",outcome="ok"} 2`,
    );

    // With its slot free again, the primary serves.
    await stack.engine.settle({
      leaseId: held.leaseId,
      usage: { inputTokens: 1, outputTokens: 1 },
      outcome: 'ok',
    });
    const back = await chat(stack);
    expect(back.provider).toBe(PRIMARY);
    expect(back.data.model).toBe(PRIMARY_MODEL);
    await noLeaseLeft(stack);
  });

  it('waits up to `after` on the primary before moving on', async () => {
    stack = await startFallbackStack({
      primary: { limits: [{ dimension: 'concurrency', amount: 1 }] },
      fallbackEntry: { model: FALLBACK_MODEL, after: '30s' },
    });
    const held = await stack.engine.acquire({
      provider: PRIMARY,
      model: PRIMARY_MODEL,
      budget: BUDGET,
      inputTokens: 1,
      maxOutputTokens: 1,
      maxWaitMs: 0,
    });
    const pending = chat(stack, 60_000);
    // The call waits for the primary's slot...
    const running = stack;
    await eventually(async () => {
      const usage = await running.engine.usage(PRIMARY);
      expect(usage.providers[0]!.waiters).toBe(1);
    });
    // ...and gets it when it frees, well within its `after`.
    await stack.engine.settle({
      leaseId: held.leaseId,
      usage: { inputTokens: 1, outputTokens: 1 },
      outcome: 'ok',
    });
    expect((await pending).provider).toBe(PRIMARY);
    expect(stack.fallback.ledger.summary().total).toBe(0);
    await noLeaseLeft(stack);
  });

  it('primary closed by a 1308 window refusal: calls go straight to the fallback until the reset', async () => {
    stack = await startFallbackStack({
      // The plan allows 1 prompt per 5 hours; tokenlease was told 100 (it learns from the refusal).
      primarySim: { flavor: 'glm', limits: [{ dimension: 'requests', amount: 1, window: '5h' }] },
      primary: { flavor: 'glm', limits: [{ dimension: 'requests', amount: 100, window: '5h' }] },
    });
    expect((await chat(stack)).provider).toBe(PRIMARY);
    // Refused with 1308 upstream: this very call is served by the fallback.
    expect((await chat(stack)).provider).toBe(FALLBACK);
    expect(stack.primary.ledger.summary().refusedByCode).toEqual({ '1308': 1 });
    const snapshot = await stack.engine.usage(PRIMARY);
    const usage = snapshot.providers[0]!;
    expect(usage.closedUntilMs).toBeGreaterThan(snapshot.nowMs + 4 * 3_600_000);
    expect(usage.closedReason).not.toBe('');

    for (let i = 0; i < 3; i++) expect((await chat(stack)).provider).toBe(FALLBACK);
    // Not one more call reached the primary.
    expect(stack.primary.ledger.summary().total).toBe(2);
    const fallbacks = await stack.metric('tokenlease_sidecar_fallbacks_total');
    expect(fallbacks).toContain(`{from="${PRIMARY}",to="${FALLBACK}",reason="closed"} 4`);

    // Past the stated reset (the engine's and the provider's clocks), the primary serves again.
    stack.advance(5 * 3_600_000 + 60_000);
    expect((await chat(stack)).provider).toBe(PRIMARY);
    expect(stack.primary.ledger.summary().ok).toBe(2);
    await noLeaseLeft(stack);
  });

  it('primary overloaded: the fallback serves, the primary lease is settled overloaded', async () => {
    stack = await startFallbackStack({
      primarySim: { flavor: 'glm' },
      primary: { flavor: 'glm' },
    });
    stack.primary.inject('modelOverload'); // GLM 1312: model overloaded, switch model
    const served = await chat(stack);
    expect(served.provider).toBe(FALLBACK);
    expect(served.data.model).toBe(FALLBACK_MODEL);
    expect(stack.primary.ledger.summary().refusedByCode).toEqual({ '1312': 1 });
    const budget = (await stack.engine.usage(PRIMARY)).providers[0]!.budgets.find(
      (b) => b.budget === BUDGET,
    )!;
    expect(budget.refusals).toEqual({ overloaded: 1 });
    // An overload is a reason to fail over, not to close or shrink the account.
    expect((await stack.engine.usage(PRIMARY)).providers[0]!.closedReason).toBe('');
    expect(await stack.metric('tokenlease_sidecar_fallbacks_total')).toContain(
      `{from="${PRIMARY}",to="${FALLBACK}",reason="overload"} 1`,
    );
    expect((await chat(stack)).provider).toBe(PRIMARY);
    await noLeaseLeft(stack);
  });

  it('when the fallback cannot grant in time either, the app gets a 429 with a retry hint', async () => {
    stack = await startFallbackStack({
      primarySim: { flavor: 'deepseek' },
      primary: { flavor: 'deepseek' },
      fallback: { limits: [{ dimension: 'concurrency', amount: 1 }] },
    });
    const held = await stack.engine.acquire({
      provider: FALLBACK,
      model: FALLBACK_MODEL,
      budget: BUDGET,
      inputTokens: 1,
      maxOutputTokens: 1,
      maxWaitMs: 0,
    });
    stack.primary.inject('overload'); // DeepSeek 503
    const error = await chat(stack, 300).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.APIError);
    const apiError = error as InstanceType<typeof OpenAI.APIError>;
    // The last failure was "no lease on the fallback in time": a 429 with a retry hint.
    expect(apiError.status).toBe(429);
    expect(apiError.headers?.get('x-tokenlease-provider')).toBeNull();
    expect(await stack.metric('tokenlease_sidecar_fallbacks_total')).toContain(
      `{from="${FALLBACK}",to="none",reason="capacity"} 1`,
    );
    await stack.engine.settle({
      leaseId: held.leaseId,
      usage: { inputTokens: 1, outputTokens: 1 },
      outcome: 'ok',
    });
    await noLeaseLeft(stack);
  });

  it('an Anthropic-API fallback is never used for OpenAI calls (warned at start-up)', async () => {
    stack = await startFallbackStack({
      primarySim: { flavor: 'glm' },
      primary: { flavor: 'glm' },
      fallbackSim: { flavor: 'anthropic' },
      fallback: { api: 'anthropic' },
      fallbackEntry: { model: 'claude-sonnet-4-5' },
      sidecar: { maxRetries: 0 },
    });
    expect(stack.logs.some((line) => /speaks the anthropic API/.test(line))).toBe(true);
    stack.primary.inject('modelOverload');
    const error = (await chat(stack).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
    // The provider's own refusal, passed on: there was no OpenAI-API provider to move to.
    expect(error).toBeInstanceOf(OpenAI.RateLimitError);
    expect(error.headers?.get('x-tokenlease-provider')).toBe(PRIMARY);
    expect(JSON.stringify(error.error)).toContain('1312');
    expect(stack.fallback.ledger.summary().total).toBe(0);
    await noLeaseLeft(stack);
  });
});
