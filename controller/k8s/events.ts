/**
 * Events for transitions a user cares about (budget exhausted, provider refusing, Secret
 * missing), as core/v1 Events so `kubectl describe` and `kubectl get events` show them.
 * Recording is best effort, as in client-go's recorder: a failure is logged, never retried.
 */
import type { CoreV1Api } from '@kubernetes/client-node';
import { randomBytes } from 'node:crypto';
import type { Logger } from '../quota/server/logger.ts';
import type { CustomObject } from './resources.ts';

export const COMPONENT = 'tokenlease-controller';

export class EventRecorder {
  readonly #api: CoreV1Api;
  readonly #instance: string;
  readonly #logger: Logger;

  constructor(api: CoreV1Api, instance: string, logger: Logger) {
    this.#api = api;
    this.#instance = instance;
    this.#logger = logger;
  }

  async record(
    object: CustomObject,
    type: 'Normal' | 'Warning',
    reason: string,
    message: string,
  ): Promise<void> {
    const { name, namespace, uid, resourceVersion } = object.metadata;
    const now = new Date();
    try {
      await this.#api.createNamespacedEvent({
        namespace,
        body: {
          metadata: {
            name: `${name}.${now.getTime().toString(16)}${randomBytes(2).toString('hex')}`,
            namespace,
          },
          involvedObject: {
            apiVersion: object.apiVersion,
            kind: object.kind,
            name,
            namespace,
            uid,
            resourceVersion,
          },
          type,
          reason,
          message: message.slice(0, 1024),
          // The older core/v1 shape (no eventTime): what kubectl describe reads.
          source: { component: COMPONENT, host: this.#instance },
          firstTimestamp: now,
          lastTimestamp: now,
          count: 1,
        },
      });
    } catch (error) {
      this.#logger.warn('cannot record event', {
        reason,
        object: `${namespace}/${name}`,
        error: String(error),
      });
    }
  }
}
