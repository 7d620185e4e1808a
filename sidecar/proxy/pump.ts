/**
 * Copies the provider's response body to the app through a ResponseTap, chunk by chunk as it
 * arrives, pausing the provider's side while the app's side is full (backpressure). Hand-written
 * instead of stream.pipeline: this runs once per call, and pipeline's error and abort plumbing
 * cost a measurable share of the sidecar's CPU.
 */
import type { ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import { CancelledError } from '../../common/errors/errors.ts';
import type { ResponseTap } from './response-tap.ts';

/**
 * Resolves when the whole body was handed to the app's connection. Rejects with CancelledError
 * when the app went away first (the provider's body is then destroyed, which aborts the upstream
 * call), or with the body's error when the provider broke off.
 */
export function pump(
  body: Readable,
  tap: ResponseTap,
  response: ServerResponse,
  /** Sees every byte handed to the app (the response cache records them). */
  observe?: (bytes: Buffer) => void,
): Promise<void> {
  return new Promise((resolve, reject) => {
    let finished = false;
    let waitingForDrain = false;
    const done = (error?: unknown) => {
      if (finished) return;
      finished = true;
      body.off('data', onData).off('end', onEnd).off('error', onError);
      response.off('close', onClose).off('drain', onDrain);
      if (error === undefined) resolve();
      else reject(error);
    };
    const emit = (bytes: Buffer) => {
      observe?.(bytes);
      if (!response.write(bytes) && !waitingForDrain) {
        waitingForDrain = true;
        body.pause();
        response.once('drain', onDrain);
      }
    };
    const onDrain = () => {
      waitingForDrain = false;
      body.resume();
    };
    const onData = (chunk: Buffer) => tap.transform(chunk, emit);
    const onEnd = () => {
      tap.flush(emit);
      response.end();
      done();
    };
    const onError = (error: unknown) => done(error);
    const onClose = () => {
      if (response.writableFinished) return;
      body.destroy();
      done(new CancelledError('the app disconnected'));
    };
    if (response.destroyed) {
      body.destroy();
      reject(new CancelledError('the app disconnected'));
      return;
    }
    body.on('data', onData).on('end', onEnd).on('error', onError);
    response.on('close', onClose);
  });
}
