/**
 * Which provider API a request path belongs to. Paths are those the official SDKs call with
 * their base URL set to the sidecar: OpenAI-style under an optional `/v1` (the provider's
 * baseURL already carries its version, e.g. `https://api.openai.com/v1`), Anthropic under `/v1`
 * (its baseURL does not, e.g. `https://api.anthropic.com`).
 */
import type { Api } from '../../common/budgets/types.ts';

export const OPERATIONS = ['chat', 'completions', 'embeddings', 'responses', 'messages'] as const;
export type Operation = (typeof OPERATIONS)[number];

export interface Route {
  api: Api;
  operation: Operation;
  /** Appended to the provider's baseURL. */
  upstreamPath: string;
}

const OPENAI_PATHS: Record<string, Operation> = {
  '/chat/completions': 'chat',
  '/completions': 'completions',
  '/embeddings': 'embeddings',
  '/responses': 'responses',
};

/** The route of a POST to `pathname`, or undefined when the sidecar serves nothing there. */
export function matchRoute(method: string, pathname: string): Route | undefined {
  if (method !== 'POST') return undefined;
  const path = pathname.length > 1 && pathname.endsWith('/') ? pathname.slice(0, -1) : pathname;
  if (path === '/v1/messages')
    return { api: 'anthropic', operation: 'messages', upstreamPath: '/v1/messages' };
  const openaiPath = path.startsWith('/v1/') ? path.slice(3) : path;
  const operation = OPENAI_PATHS[openaiPath];
  return operation === undefined ? undefined : { api: 'openai', operation, upstreamPath: openaiPath };
}

/** The error format to answer in before a route is known: Anthropic's for its paths, else OpenAI's. */
export function apiOfPath(pathname: string): Api {
  return pathname.startsWith('/v1/messages') ? 'anthropic' : 'openai';
}
