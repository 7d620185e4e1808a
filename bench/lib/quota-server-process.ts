/** Runs `tokenlease quota-server` as a child process, for benchmarks and multi-replica tests. */
import { fileURLToPath } from 'node:url';
import { startCliProcess, type CliProcess } from './cli-process.ts';

const CLI = fileURLToPath(new URL('../../bin/tokenlease.ts', import.meta.url));

export interface QuotaServerProcess extends CliProcess {
  port: number;
  target: string;
}

export async function startQuotaServerProcess(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<QuotaServerProcess> {
  const server = await startCliProcess(CLI, 'quota-server', args, env);
  const port = server.listening.port!;
  return { ...server, port, target: `127.0.0.1:${port}` };
}
