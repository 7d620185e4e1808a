/**
 * Provider keys, which only the sidecar ever holds: read from a file (a mounted Secret on
 * Kubernetes) or an environment variable, and written upstream in the API's own header. Keys are
 * never logged or echoed in errors.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { BudgetSet } from '../../common/budgets/load-budgets.ts';
import type { LLMProvider } from '../../common/budgets/types.ts';
import { ConfigError } from '../../common/errors/errors.ts';

export interface CredentialSources {
  /** The sidecar's environment (from loadConfig), for `credentials.env`. */
  env: Record<string, string | undefined>;
  /** Where Secrets named by `credentials.secretRef` are mounted: `<dir>/<secret>/<key>`. */
  secretsDir: string;
}

async function keyOf(
  id: string,
  provider: LLMProvider,
  sources: CredentialSources,
): Promise<string | undefined> {
  const credentials = provider.spec.credentials;
  if (credentials === undefined) return undefined;
  const field = `LLMProvider ${id} spec.credentials`;
  if (credentials.env !== undefined) {
    const value = sources.env[credentials.env];
    if (value === undefined || value.trim() === '')
      throw new ConfigError(`${field}.env`, `environment variable ${credentials.env} is not set`);
    return value.trim();
  }
  const file =
    credentials.file ??
    (credentials.secretRef
      ? join(sources.secretsDir, credentials.secretRef.name, credentials.secretRef.key)
      : undefined);
  if (file === undefined) return undefined;
  try {
    const value = (await readFile(file, 'utf8')).trim();
    if (value === '') throw new ConfigError(`${field}`, `key file ${file} is empty`);
    return value;
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    throw new ConfigError(field, `cannot read key file ${file}`, { cause: error });
  }
}

/** Reads the keys of the providers this sidecar calls, once, at start-up: a missing key stops it. */
export async function loadProviderKeys(
  budgets: BudgetSet,
  providerIds: readonly string[],
  sources: CredentialSources,
): Promise<Map<string, string>> {
  const keys = new Map<string, string>();
  for (const id of providerIds) {
    const provider = budgets.providers.get(id);
    if (provider === undefined) continue;
    const key = await keyOf(id, provider, sources);
    if (key !== undefined) keys.set(id, key);
  }
  return keys;
}

/** The header that carries a key for this provider. */
export function authHeader(provider: LLMProvider, key: string): [string, string] {
  if (provider.spec.api === 'anthropic') return ['x-api-key', key];
  if (provider.spec.flavor === 'azure') return ['api-key', key];
  return ['authorization', `Bearer ${key}`];
}
