/**
 * The simulated provider the demo measures against: a `tokenlease sim-provider` process the demo
 * starts, or one already running (--provider-url), driven through its admin API. Either way its
 * ledger is the source of truth for what the provider saw.
 */
import { spawn } from 'node:child_process';
import { extname } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import type { LedgerEntry, LedgerSummary, SimSettingsInput } from '../sim-provider/index.ts';

export interface SimHandle {
  /** `http://host:port`, without a path. */
  url: string;
  /** Whether the demo started it (rather than being given one). */
  embedded: boolean;
  summary(): Promise<LedgerSummary>;
  /** Entries with id > sinceId, oldest first. */
  entries(sinceId: number): Promise<LedgerEntry[]>;
  close(): Promise<void>;
}

/** The CLI beside this module: bin/tokenlease.ts from source, bin/tokenlease.js from dist/. */
const CLI = fileURLToPath(new URL(`../bin/tokenlease${extname(import.meta.url)}`, import.meta.url));

/**
 * Starts `tokenlease sim-provider` as a child process: a provider is another process, and keeping
 * it out of the demo's event loop keeps its timing its own.
 */
export async function startSimProcess(settings: SimSettingsInput): Promise<SimHandle> {
  const child = spawn(process.execPath, [CLI, 'sim-provider', '--host', '127.0.0.1', '--port', '0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`sim-provider did not start:\n${output.join('\n')}`)),
      20_000,
    );
    const onLine = (line: string) => {
      output.push(line);
      const match = /listening on (http:\/\/\S+)/.exec(line);
      if (!match) return;
      clearTimeout(timer);
      resolve(match[1]!);
    };
    createInterface({ input: child.stdout }).on('line', onLine);
    createInterface({ input: child.stderr }).on('line', onLine);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`sim-provider exited with ${code}:\n${output.join('\n')}`));
    });
  });
  // If the demo exits early (Ctrl-C, an error), the provider goes with it.
  const killChild = () => child.kill('SIGTERM');
  process.once('exit', killChild);
  const handle = await connectSim(url, settings);
  return {
    ...handle,
    embedded: true,
    close: () =>
      new Promise<void>((resolve) => {
        process.off('exit', killChild);
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

async function call<T>(url: string, method: 'GET' | 'POST', body?: unknown): Promise<T> {
  const response = await request(url, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    headersTimeout: 10_000,
    bodyTimeout: 30_000,
  });
  const text = await response.body.text();
  if (response.statusCode !== 200) {
    throw new Error(`${method} ${url} answered ${response.statusCode}: ${text.slice(0, 300)}`);
  }
  return JSON.parse(text) as T;
}

/** A running sim-provider at `url`, given `settings` through POST /_sim/config. */
export async function connectSim(url: string, settings: SimSettingsInput): Promise<SimHandle> {
  await call(`${url}/_sim/config`, 'POST', settings);
  return {
    url,
    embedded: false,
    summary: () => call<LedgerSummary>(`${url}/_sim/summary`, 'GET'),
    entries: async (sinceId) =>
      (await call<{ entries: LedgerEntry[] }>(`${url}/_sim/ledger?since=${sinceId}`, 'GET')).entries,
    close: async () => {},
  };
}
