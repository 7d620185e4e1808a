/**
 * Whether and how one request uses the cache: the budget's settings (with the model's overrides),
 * the app's `x-tokenlease-cache` header where the budget allows it, and whether the request is
 * deterministic by its parameters.
 */
import { parseDuration } from '../../common/duration.ts';
import type { CacheSpec, LLMBudget } from '../../common/budgets/types.ts';
import { InvalidRequestError } from '../../common/errors/errors.ts';
import type { Operation } from '../providers/routes.ts';

export const CACHE_HEADER = 'x-tokenlease-cache';

export interface CacheSettings {
  ttlMs: number;
  maxEntryBytes: number;
  maxScopeBytes: number;
  requests: 'deterministic' | 'all';
  allowRequestHeader: boolean;
  /** `b:<budget id>`, or `s:<namespace>/<shared scope>`. */
  scope: string;
  coalesceWaitMs: number;
}

/** The budget's cache settings for `model`, or undefined when its calls are not cached. */
export function cacheSettingsFor(budget: LLMBudget, model: string): CacheSettings | undefined {
  const spec: CacheSpec | undefined = budget.spec.cache;
  if (spec === undefined) return undefined;
  const override = spec.models?.find((entry) => entry.model === model);
  if (!(override?.enabled ?? spec.enabled)) return undefined;
  const namespace = budget.metadata.namespace;
  return {
    ttlMs: parseDuration(override?.ttl ?? spec.ttl) ?? 3_600_000,
    maxEntryBytes: override?.maxEntryBytes ?? spec.maxEntryBytes,
    maxScopeBytes: spec.maxScopeBytes,
    requests: override?.requests ?? spec.requests,
    allowRequestHeader: spec.allowRequestHeader,
    scope:
      spec.sharedScope === undefined
        ? `b:${namespace}/${budget.metadata.name}`
        : `s:${namespace}/${spec.sharedScope}`,
    coalesceWaitMs: parseDuration(spec.coalesceWait) ?? 30_000,
  };
}

export type CacheDirective = 'on' | 'off' | 'refresh';

/** The app's header; an unknown value is refused rather than guessed. */
export function cacheDirective(header: string | string[] | undefined): CacheDirective | undefined {
  if (header === undefined) return undefined;
  const value = (Array.isArray(header) ? header[0] : header)?.trim().toLowerCase();
  if (value === 'on' || value === 'off' || value === 'refresh') return value;
  throw new InvalidRequestError(CACHE_HEADER, 'must be on, off or refresh');
}

/** Below this, top_p leaves only the most likely token. */
const GREEDY_TOP_P = 1e-6;

/**
 * Whether the parameters make the answer deterministic: embeddings always; generation with
 * temperature 0 or top_p ~0 (every provider's default temperature is above 0).
 */
export function isDeterministic(operation: Operation, body: Record<string, unknown>): boolean {
  if (operation === 'embeddings') return true;
  if (body.temperature === 0) return true;
  return typeof body.top_p === 'number' && body.top_p <= GREEDY_TOP_P;
}

export interface CacheUse {
  /** Look for a stored answer first (not on refresh). */
  lookup: boolean;
}

/** How this request uses the cache, or undefined when it does not. */
export function cacheUse(
  settings: CacheSettings | undefined,
  directive: CacheDirective | undefined,
  operation: Operation,
  body: Record<string, unknown>,
): CacheUse | undefined {
  if (settings === undefined) return undefined;
  const asked = settings.allowRequestHeader ? directive : undefined;
  if (asked === 'off') return undefined;
  const cacheable = asked !== undefined || settings.requests === 'all' || isDeterministic(operation, body);
  return cacheable ? { lookup: asked !== 'refresh' } : undefined;
}
