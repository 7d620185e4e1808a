/**
 * The mutating admission webhook's HTTPS server (every controller replica serves it, leader or
 * not): POST /mutate-pods takes an admission.k8s.io/v1 AdmissionReview for a Pod and answers
 * with the injection as a JSON Patch, a refusal naming the problem, or an unchanged pod.
 */
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { V1Pod } from '@kubernetes/client-node';
import type { BudgetSet } from '../../../common/budgets/load-budgets.ts';
import type { Logger } from '../../quota/server/logger.ts';
import { injectionPatch, injectSidecar, type InjectionConfig } from './inject.ts';
import type { ServingCert } from './serving-cert.ts';

export const MUTATE_PATH = '/mutate-pods';
const MAX_BODY = 4 * 1024 * 1024;

export interface WebhookServer {
  port: number;
  /** Swaps the serving certificate (after renewal) without a restart. */
  setCert(cert: ServingCert): void;
  close(): Promise<void>;
}

interface AdmissionRequest {
  uid: string;
  namespace?: string;
  object?: V1Pod;
}

export async function startWebhookServer(options: {
  listen: { host: string; port: number };
  cert: ServingCert;
  budgets: () => BudgetSet;
  injection: InjectionConfig;
  logger: Logger;
}): Promise<WebhookServer> {
  const server: Server = createServer(
    { cert: options.cert.certPem, key: options.cert.keyPem },
    (req, res) => {
      void handle(req, res).catch((error: unknown) => {
        options.logger.error('webhook request failed', { error: String(error) });
        if (!res.headersSent) res.writeHead(500).end();
      });
    },
  );

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method === 'GET' && req.url === '/healthz') return void res.writeHead(200).end('ok');
    if (req.method !== 'POST' || req.url?.split('?')[0] !== MUTATE_PATH) return void res.writeHead(404).end();
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > MAX_BODY) return void res.writeHead(413).end();
      chunks.push(chunk);
    }
    let review: { apiVersion?: string; request?: AdmissionRequest };
    try {
      review = JSON.parse(Buffer.concat(chunks).toString('utf8')) as typeof review;
    } catch {
      return void res.writeHead(400).end('not JSON');
    }
    const request = review.request;
    if (!request?.uid || !request.object)
      return void res.writeHead(400).end('not an AdmissionReview for a Pod');
    const pod = request.object;
    const namespace = request.namespace ?? pod.metadata?.namespace ?? 'default';
    const result = injectSidecar(pod, namespace, options.budgets(), options.injection);
    let response: Record<string, unknown>;
    if (result.kind === 'inject') {
      const patch = Buffer.from(JSON.stringify(injectionPatch(pod, result.pod))).toString('base64');
      response = { uid: request.uid, allowed: true, patchType: 'JSONPatch', patch };
      options.logger.info('injected sidecar', {
        namespace,
        pod: pod.metadata?.name ?? pod.metadata?.generateName,
        budget: result.budget,
      });
    } else if (result.kind === 'deny') {
      response = {
        uid: request.uid,
        allowed: false,
        status: { code: 403, reason: 'Forbidden', message: `tokenlease: ${result.message}` },
      };
    } else {
      response = { uid: request.uid, allowed: true };
    }
    const body = JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response });
    res.writeHead(200, { 'content-type': 'application/json' }).end(body);
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.listen.port, options.listen.host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    setCert(cert) {
      server.setSecureContext({ cert: cert.certPem, key: cert.keyPem });
    },
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
