/** Runs `tokenlease quota-server` as a child process, for benchmarks and multi-replica tests. */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../../bin/tokenlease.ts', import.meta.url));

export interface QuotaServerProcess {
  child: ChildProcess;
  pid: number;
  port: number;
  target: string;
  stop(): Promise<number | null>;
}

export async function startQuotaServerProcess(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<QuotaServerProcess> {
  const child = spawn(process.execPath, [CLI, 'quota-server', '--listen', '127.0.0.1:0', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  const lines: string[] = [];
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`quota-server did not start:\n${lines.join('\n')}`)),
      20_000,
    );
    const onLine = (line: string) => {
      lines.push(line);
      if (!line.includes('"listening"')) return;
      clearTimeout(timer);
      resolve((JSON.parse(line) as { port: number }).port);
    };
    createInterface({ input: child.stderr! }).on('line', onLine);
    createInterface({ input: child.stdout! }).on('line', onLine);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`quota-server exited with ${code}:\n${lines.join('\n')}`));
    });
  });
  return {
    child,
    pid: child.pid!,
    port,
    target: `127.0.0.1:${port}`,
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve(child.exitCode);
        child.once('exit', (code) => resolve(code));
        child.kill('SIGTERM');
      }),
  };
}
