/**
 * The simulated provider as a child process (`tokenlease sim-provider`), so that its event loop
 * does not share a core with the clients it measures; its ledger is read over the admin API.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { LedgerEntry, LedgerSummary, SimSettingsInput } from '../../sim-provider/index.ts';

const CLI = fileURLToPath(new URL('../../bin/tokenlease.ts', import.meta.url));

export interface SimProcess {
  child: ChildProcess;
  /** `http://127.0.0.1:PORT`. */
  url: string;
  ledger(sinceId?: number): Promise<LedgerEntry[]>;
  summary(): Promise<LedgerSummary>;
  setConfig(settings: SimSettingsInput): Promise<void>;
  reset(): Promise<void>;
  stop(): Promise<void>;
}

async function admin(url: string, path: string, body?: unknown): Promise<unknown> {
  const response = await fetch(`${url}${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`sim-provider ${path}: ${response.status} ${text}`);
  return text === '' ? undefined : JSON.parse(text);
}

/** Starts `tokenlease sim-provider` with `args` (flags such as --limits, --flavor). */
export async function startSimProcess(args: string[]): Promise<SimProcess> {
  const child = spawn(process.execPath, [CLI, 'sim-provider', '--port', '0', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`sim-provider did not start:\n${lines.join('\n')}`)),
      20_000,
    );
    const onLine = (line: string) => {
      lines.push(line);
      const match = /listening on (http:\/\/\S+)/.exec(line);
      if (!match) return;
      clearTimeout(timer);
      resolve(match[1]!);
    };
    createInterface({ input: child.stdout! }).on('line', onLine);
    createInterface({ input: child.stderr! }).on('line', onLine);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`sim-provider exited with ${code}:\n${lines.join('\n')}`));
    });
  });
  return {
    child,
    url,
    ledger: async (sinceId = 0) => {
      const value = (await admin(url, `/_sim/ledger${sinceId ? `?since=${sinceId}` : ''}`)) as
        LedgerEntry[] | { entries: LedgerEntry[] };
      return Array.isArray(value) ? value : value.entries;
    },
    summary: async () => (await admin(url, '/_sim/summary')) as LedgerSummary,
    setConfig: async (settings) => void (await admin(url, '/_sim/config', settings)),
    reset: async () => void (await admin(url, '/_sim/reset', {})),
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}
