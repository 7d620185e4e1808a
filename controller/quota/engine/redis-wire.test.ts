import { describe, expect, it } from 'vitest';
import { acmeBudgets } from './engine-conformance.ts';
import { limitPlans, reservationFor, withNeeds } from './limit-plans.ts';
import { definitionOf, wireRequest, type Definitions } from './redis-wire.ts';
import type { StoredRequest } from './store.ts';

const budgets = (amount: number) =>
  acmeBudgets(
    `[{dimension: concurrency, amount: 4}, {dimension: totalTokens, amount: ${amount}, window: 1m}]`,
  );

function plans(amount: number, inputTokens: number) {
  const reserved = reservationFor(inputTokens, 10);
  return withNeeds(
    limitPlans(budgets(amount), 'llm/acme', ['team-a/search'], 'm', reservationFor(0, 0)),
    reserved,
  );
}

describe('redis wire', () => {
  it('names a definition by its content: the same for any need, another when anything else differs', () => {
    const [, tokens] = plans(1000, 5);
    const [, sameOtherNeed] = plans(1000, 500);
    const [, otherAmount] = plans(2000, 5);
    const id = definitionOf(tokens!).id;
    expect(definitionOf(sameOtherNeed!).id).toBe(id);
    expect(definitionOf(otherAmount!).id).not.toBe(id);
    expect(definitionOf(tokens!).id).toBe(id); // and back, as when an edit is undone
    const changed: Record<string, unknown> = {
      dimension: 'inputTokens',
      windowMs: 120_000,
      bucketMs: 1,
      marginMs: 1,
      label: 'another label',
      scope: 'team-a/search',
      model: 'other',
      adaptive: !tokens!.adaptive,
    };
    for (const [field, value] of Object.entries(changed)) {
      expect(definitionOf({ ...tokens!, [field]: value }).id, field).not.toBe(id);
    }
    const definition = JSON.parse(definitionOf(tokens!).json) as Record<string, unknown>;
    expect(definition).toMatchObject({
      key: tokens!.key,
      amount: 1000,
      windowMs: 60_000,
      dimension: 'totalTokens',
    });
    expect(definition).not.toHaveProperty('need');
  });

  it('lays a request out as lease-store.lua request_of reads it, with the definitions it names', () => {
    const limits = plans(1000, 5);
    const request: StoredRequest = {
      id: 'llm/acme|1',
      budget: 'team-a/search',
      priority: 50,
      weight: 2,
      cost: 0.015,
      agingMs: 10_000,
      adaptation: null,
      limits,
      leaseTimeoutMs: 60_000,
      maxWaitMs: 500,
      reserved: reservationFor(5, 10),
    };
    const definitions: Definitions = {};
    const wire = wireRequest(request, definitions);
    const [concurrency, tokens] = limits.map((plan) => definitionOf(plan).id);
    expect(wire).toEqual([
      'llm/acme|1',
      'team-a/search',
      50,
      2,
      0.015,
      10_000,
      -1,
      -1,
      60_000,
      500,
      1,
      5,
      10,
      15,
      concurrency,
      1,
      tokens,
      15,
    ]);
    expect(Object.keys(definitions).sort()).toEqual([concurrency, tokens].sort());
    const adaptive = wireRequest({ ...request, adaptation: { probeMs: 30_000, maxProbeMs: 600_000 } }, {});
    expect(adaptive.slice(6, 8)).toEqual([30_000, 600_000]);
  });
});
