/**
 * Writes status subresources only when they changed, and usage-only changes no more often than
 * `minIntervalMs` per object, so a busy budget does not flood the API server. Changes to
 * conditions or observedGeneration go out at once: a user waits for those.
 */
import type { CustomObjectsApi } from '@kubernetes/client-node';
import { isDeepStrictEqual } from 'node:util';
import { GROUP, PLURALS, VERSION, type CustomObject } from './resources.ts';

export type WriteResult = { written: boolean; retryAfterMs?: number };

export class StatusWriter {
  readonly #api: CustomObjectsApi;
  readonly #minIntervalMs: number;
  readonly #now: () => number;
  /** Last write per object uid. */
  readonly #lastWrite = new Map<string, number>();
  writes = 0;

  constructor(api: CustomObjectsApi, minIntervalMs: number, now: () => number = Date.now) {
    this.#api = api;
    this.#minIntervalMs = minIntervalMs;
    this.#now = now;
  }

  async write(object: CustomObject, status: Record<string, unknown>): Promise<WriteResult> {
    const current = object.status ?? {};
    if (isDeepStrictEqual(normalize(current), normalize(status))) return { written: false };
    const id = object.metadata.uid ?? `${object.metadata.namespace}/${object.metadata.name}`;
    const urgent =
      !isDeepStrictEqual(current.conditions, status.conditions) ||
      current.observedGeneration !== status.observedGeneration;
    const since = this.#now() - (this.#lastWrite.get(id) ?? -Infinity);
    if (!urgent && since < this.#minIntervalMs)
      return { written: false, retryAfterMs: this.#minIntervalMs - since };
    // JSON Patch `add` on /status replaces it whole; the test on resourceVersion makes a write
    // based on a stale read fail (409) instead of undoing someone else's.
    await this.#api.patchNamespacedCustomObjectStatus({
      group: GROUP,
      version: VERSION,
      namespace: object.metadata.namespace,
      plural: PLURALS[object.kind],
      name: object.metadata.name,
      body: [
        { op: 'test', path: '/metadata/resourceVersion', value: object.metadata.resourceVersion },
        { op: 'add', path: '/status', value: status },
      ],
    });
    this.#lastWrite.set(id, this.#now());
    this.writes++;
    return { written: true };
  }

  forget(uid: string | undefined): void {
    if (uid) this.#lastWrite.delete(uid);
  }
}

/** JSON round trip: drops undefined fields so a freshly built status compares equal to a stored one. */
function normalize(value: unknown): unknown {
  return JSON.parse(JSON.stringify(value ?? {})) as unknown;
}
