/** Runs `tokenlease demo` as a child process, stdout piped (so not a terminal), and parses its summary. */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { DemoSummary } from '../../demo/summary.ts';

const CLI = fileURLToPath(new URL('../../bin/tokenlease.ts', import.meta.url));

export interface DemoRun {
  code: number | null;
  stdout: string;
  stderr: string;
  /** The last stdout line, parsed. */
  summary: DemoSummary | undefined;
}

export function runDemo(args: string[], cwd: string): Promise<DemoRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, 'demo', ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('error', reject);
    child.once('close', (code) => {
      const last = stdout.trim().split('\n').at(-1) ?? '';
      let summary: DemoSummary | undefined;
      try {
        summary = JSON.parse(last) as DemoSummary;
      } catch {
        summary = undefined;
      }
      resolve({ code, stdout, stderr, summary });
    });
  });
}
