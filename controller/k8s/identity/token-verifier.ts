/**
 * ServiceAccount identity for the quota service: a sidecar presents its pod's projected
 * ServiceAccount token (audience `tokenlease`, so a token meant for anything else is useless here);
 * the quota service asks the API server (TokenReview) who it belongs to and caches the answer,
 * so a busy sidecar costs one review per token, not per call.
 */
import { createHash } from 'node:crypto';
import type { AuthenticationV1Api } from '@kubernetes/client-node';
import { PermissionDeniedError } from '../../../common/errors/errors.ts';

export const DEFAULT_AUDIENCE = 'tokenlease';

export interface WorkloadIdentity {
  namespace: string;
  serviceAccount: string;
  /** Set for pod-bound tokens (projected volumes are). */
  podName?: string;
}

export interface TokenVerifierOptions {
  api: Pick<AuthenticationV1Api, 'createTokenReview'>;
  audience?: string;
  /** How long an answer is reused (never past the token's own expiry). */
  cacheTtlMs: number;
  /** Bound on cached entries; the oldest go first. */
  maxEntries?: number;
  now?: () => number;
}

const SA_USER = /^system:serviceaccount:([a-z0-9]([-a-z0-9]*[a-z0-9])?):([a-z0-9]([-a-z0-9.]*[a-z0-9])?)$/;

export class TokenVerifier {
  readonly #o: Required<Omit<TokenVerifierOptions, 'api'>> & Pick<TokenVerifierOptions, 'api'>;
  /** sha256(token) -> answer; the token itself is never kept. */
  readonly #cache = new Map<string, { until: number; result: Promise<WorkloadIdentity> }>();
  reviews = 0;

  constructor(options: TokenVerifierOptions) {
    this.#o = { audience: DEFAULT_AUDIENCE, maxEntries: 10_000, now: Date.now, ...options };
  }

  /** The token's workload; PermissionDeniedError when it is not a valid ServiceAccount token for us. */
  verify(token: string): Promise<WorkloadIdentity> {
    const key = createHash('sha256').update(token).digest('base64url');
    const now = this.#o.now();
    const cached = this.#cache.get(key);
    if (cached && cached.until > now) return cached.result;
    const result = this.#review(token);
    const until = Math.min(now + this.#o.cacheTtlMs, expiryMs(token) ?? Infinity);
    this.#cache.set(key, { until, result });
    // A failed review (API server unreachable) is not cached: the next call asks again.
    result.catch((error: unknown) => {
      if (!(error instanceof PermissionDeniedError)) this.#cache.delete(key);
    });
    while (this.#cache.size > this.#o.maxEntries) this.#cache.delete(this.#cache.keys().next().value!);
    return result;
  }

  async #review(token: string): Promise<WorkloadIdentity> {
    this.reviews++;
    const review = await this.#o.api.createTokenReview({
      body: { spec: { token, audiences: [this.#o.audience] } },
    });
    const status = review.status;
    if (!status?.authenticated) {
      throw new PermissionDeniedError(`token not accepted: ${status?.error ?? 'not authenticated'}`);
    }
    if (!status.audiences?.includes(this.#o.audience)) {
      throw new PermissionDeniedError(`token is not meant for audience ${this.#o.audience}`);
    }
    const match = SA_USER.exec(status.user?.username ?? '');
    if (!match)
      throw new PermissionDeniedError(`${status.user?.username ?? 'the caller'} is not a ServiceAccount`);
    const podName = status.user?.extra?.['authentication.kubernetes.io/pod-name']?.[0];
    return { namespace: match[1]!, serviceAccount: match[3]!, ...(podName ? { podName } : {}) };
  }
}

/** The token's `exp` claim in ms, read without verifying (the TokenReview verifies). */
function expiryMs(token: string): number | undefined {
  const payload = token.split('.')[1];
  if (!payload) return undefined;
  try {
    const exp = (JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { exp?: unknown }).exp;
    return typeof exp === 'number' ? exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}
