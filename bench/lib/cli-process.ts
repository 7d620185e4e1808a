/**
 * Runs a `tokenlease <command>` that serves on `--listen 127.0.0.1:0` as a child process (for
 * benchmarks and multi-process tests): resolves once it logs its `listening` line, whose JSON
 * says where it listens; rejects with what it logged if it exits or takes over 20 s.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

export interface CliProcess {
  child: ChildProcess;
  pid: number;
  /** What the process logged as `listening`: the sidecar's url, the quota-server's port. */
  listening: { url?: string; port?: number };
  /** SIGTERM, then its exit code. */
  stop(): Promise<number | null>;
}

/** `node <entry> <command> --listen 127.0.0.1:0 ...args`, with `env` over this process's own. */
export async function startCliProcess(
  entry: string,
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<CliProcess> {
  const child = spawn(process.execPath, [entry, command, '--listen', '127.0.0.1:0', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  const listening = JSON.parse(
    await awaitLine(child, command, (line) => line.includes('"listening"')),
  ) as CliProcess['listening'];
  return {
    child,
    pid: child.pid!,
    listening,
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve(child.exitCode);
        child.once('exit', (code) => resolve(code));
        child.kill('SIGTERM');
      }),
  };
}

/**
 * The first line `child` writes (stdout or stderr) that `ready` accepts; rejects with what it wrote
 * if it exits first or takes over 20 s. `what` names it in the error.
 */
export function awaitLine(
  child: ChildProcess,
  what: string,
  ready: (line: string) => boolean,
): Promise<string> {
  const lines: string[] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} did not start:\n${lines.join('\n')}`)), 20_000);
    const onLine = (line: string) => {
      if (lines.length < 200) lines.push(line);
      if (!ready(line)) return;
      clearTimeout(timer);
      resolve(line);
    };
    createInterface({ input: child.stderr! }).on('line', onLine);
    createInterface({ input: child.stdout! }).on('line', onLine);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited with ${code}:\n${lines.join('\n')}`));
    });
  });
}
