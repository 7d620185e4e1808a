import type { CustomObjectsApi } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import type { CustomObject } from './resources.ts';
import { StatusWriter } from './status-writer.ts';

function fakeApi() {
  const patches: unknown[] = [];
  const api = {
    patchNamespacedCustomObjectStatus: async (request: { body: unknown }) => {
      patches.push(request.body);
      return {};
    },
  } as unknown as CustomObjectsApi;
  return { api, patches };
}

const ready = [
  {
    type: 'Ready',
    status: 'True',
    reason: 'InForce',
    message: 'm',
    lastTransitionTime: '2030-01-01T00:00:00Z',
  },
];
const object = (status: Record<string, unknown>): CustomObject => ({
  apiVersion: 'tokenlease.io/v1alpha1',
  kind: 'LLMBudget',
  metadata: { name: 'b', namespace: 'n', uid: 'u1', resourceVersion: '7', generation: 2 },
  spec: {},
  status,
});

describe('StatusWriter', () => {
  it('writes nothing when the status is unchanged', async () => {
    const { api, patches } = fakeApi();
    const writer = new StatusWriter(api, 10_000, () => 0);
    const status = { observedGeneration: 2, conditions: ready, inFlight: 3, note: undefined };
    expect(
      await writer.write(object({ observedGeneration: 2, conditions: ready, inFlight: 3 }), status),
    ).toEqual({ written: false });
    expect(patches).toHaveLength(0);
  });

  it('writes usage-only changes at most once per interval, and says when to come back', async () => {
    const { api, patches } = fakeApi();
    let now = 1_000_000;
    const writer = new StatusWriter(api, 10_000, () => now);
    const base = { observedGeneration: 2, conditions: ready };
    expect((await writer.write(object({ ...base, inFlight: 1 }), { ...base, inFlight: 2 })).written).toBe(
      true,
    );
    now += 4_000;
    expect(await writer.write(object({ ...base, inFlight: 2 }), { ...base, inFlight: 3 })).toEqual({
      written: false,
      retryAfterMs: 6_000,
    });
    now += 6_000;
    expect((await writer.write(object({ ...base, inFlight: 2 }), { ...base, inFlight: 3 })).written).toBe(
      true,
    );
    expect(patches).toHaveLength(2);
    // Guarded by the resourceVersion read, replacing status whole.
    expect(patches[0]).toEqual([
      { op: 'test', path: '/metadata/resourceVersion', value: '7' },
      { op: 'add', path: '/status', value: { ...base, inFlight: 2 } },
    ]);
  });

  it('writes condition and observedGeneration changes at once, whatever the interval', async () => {
    const { api, patches } = fakeApi();
    const writer = new StatusWriter(api, 10_000, () => 5);
    const base = { observedGeneration: 2, conditions: ready, inFlight: 1 };
    await writer.write(object({ ...base, inFlight: 0 }), base);
    const notReady = [{ ...ready[0]!, status: 'False', reason: 'ProviderNotReady' }];
    expect((await writer.write(object(base), { ...base, conditions: notReady })).written).toBe(true);
    expect((await writer.write(object(base), { ...base, observedGeneration: 3 })).written).toBe(true);
    expect(patches).toHaveLength(3);
  });
});
