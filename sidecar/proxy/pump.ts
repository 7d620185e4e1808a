/**
 * Copies the provider's response body to the app through a ResponseTap, chunk by chunk as it
 * arrives, pausing the provider's side while the app's side is full (backpressure). Hand-written
 * instead of stream.pipeline: this runs once per call, and pipeline's error and abort plumbing
 * cost a measurable share of the sidecar's CPU.
 */
import type { ServerResponse } from 'node:http';
import { CancelledError } from '../../common/errors/errors.ts';
import type { ResponseTap } from './response-tap.ts';
import type { UpstreamExchange } from './upstream-exchange.ts';

/**
 * Resolves when the whole body was handed to the app's connection. Rejects with CancelledError
 * when the app went away first (the upstream exchange is then aborted), or with the body's error
 * when the provider broke off.
 */
export function pump(
  body: UpstreamExchange,
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
      response.off('close', onClose);
      if (waitingForDrain) response.off('drain', onDrain);
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
    const onClose = () => {
      if (response.writableFinished) return;
      body.abort();
      done(new CancelledError('the app disconnected'));
    };
    if (response.destroyed) {
      body.abort();
      reject(new CancelledError('the app disconnected'));
      return;
    }
    response.on('close', onClose);
    body.consume({
      data: (chunk) => tap.transform(chunk, emit),
      end() {
        tap.flush(emit);
        response.end();
        done();
      },
      error: (error) => done(error),
    });
  });
}
