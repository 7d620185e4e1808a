/**
 * The fallback route for Anthropic-API calls, with the official @anthropic-ai/sdk: a 529 from the
 * primary moves the call to the next Anthropic-API provider, streams included.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { eventually } from './harness.ts';
import { BUDGET, FALLBACK, PRIMARY, startFallbackStack, type FallbackStack } from './fallback-harness.ts';

const MESSAGE = {
  model: 'claude-primary',
  max_tokens: 32,
  messages: [{ role: 'user' as const, content: 'Hello there' }],
};

describe('fallback route, Anthropic API', () => {
  let stack: FallbackStack | undefined;
  afterEach(async () => {
    await stack?.close();
    stack = undefined;
  });

  it('529 overloaded: the next Anthropic-API provider serves, asked for its model', async () => {
    stack = await startFallbackStack({
      primarySim: { flavor: 'anthropic' },
      fallbackSim: { flavor: 'anthropic' },
      primary: { api: 'anthropic' },
      fallback: { api: 'anthropic' },
      fallbackEntry: { model: 'claude-fallback', after: '1s' },
    });
    stack.primary.inject('overload');
    const { data, response } = await stack.anthropic().messages.create(MESSAGE).withResponse();
    expect(response.headers.get('x-tokenlease-provider')).toBe(FALLBACK);
    expect(data.model).toBe('claude-fallback');
    expect(stack.primary.ledger.summary().refusedByClass).toEqual({ overload: 1 });

    stack.primary.inject('overload');
    const stream = stack.anthropic().messages.stream(MESSAGE);
    const final = await stream.finalMessage();
    expect(final.model).toBe('claude-fallback');
    expect(final.usage.output_tokens).toBeGreaterThan(0);
    expect(stack.fallback.ledger.entries().map((entry) => [entry.model, entry.stream])).toEqual([
      ['claude-fallback', false],
      ['claude-fallback', true],
    ]);

    const usage = (await stack.engine.usage(PRIMARY)).providers[0]!;
    expect(usage.budgets.find((b) => b.budget === BUDGET)?.refusals).toEqual({ overloaded: 2 });
    const running = stack;
    await eventually(async () => {
      expect(await running.inFlight(PRIMARY)).toBe(0);
      expect(await running.inFlight(FALLBACK)).toBe(0);
    });
  });
});
