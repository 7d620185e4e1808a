/**
 * The worked example of examples/app/README.md, step by step: a simulated GLM provider, a sidecar
 * from examples/app/budgets.yaml (as `tokenlease sidecar`), and examples/app/ask.ts run with only
 * OPENAI_BASE_URL and OPENAI_API_KEY pointing it at the sidecar.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimProvider, type SimProvider } from '../../sim-provider/index.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

function runNode(args: string[], env: Record<string, string>): ChildProcess {
  return spawn(process.execPath, args, {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

describe('examples/app: the openai client through the sidecar', () => {
  let sim: SimProvider;
  let sidecar: ChildProcess;
  let sidecarUrl: string;

  beforeAll(async () => {
    sim = await startSimProvider({
      port: 9100,
      flavor: 'glm',
      limits: [{ dimension: 'concurrency', amount: 2 }],
      latencyMs: 300,
      perTokenMs: 10,
      outputTokens: 20,
    });
    sidecar = runNode(
      [
        'bin/tokenlease.ts',
        'sidecar',
        '--budgets',
        'examples/app/budgets.yaml',
        '--budget',
        'examples/ask',
        '--listen',
        '127.0.0.1:0',
      ],
      { GLM_API_KEY: 'sk-example' },
    );
    sidecarUrl = await new Promise<string>((resolve, reject) => {
      const lines: string[] = [];
      createInterface({ input: sidecar.stderr! }).on('line', (line) => {
        lines.push(line);
        const url = (JSON.parse(line) as { url?: string }).url;
        if (url) resolve(url);
      });
      sidecar.once('exit', (code) => reject(new Error(`sidecar exited ${code}: ${lines.join('\n')}`)));
    });
  });

  afterAll(async () => {
    if (sidecar && sidecar.exitCode === null) {
      await new Promise((resolve) => {
        sidecar.once('exit', resolve);
        sidecar.kill('SIGTERM');
      });
    }
    await sim?.close();
  });

  it('answers every question at once, the provider refusing none and never holding more than 2', async () => {
    const app = runNode(['examples/app/ask.ts', 'one?', 'two?', 'three?', 'four?', 'five?'], {
      OPENAI_BASE_URL: `${sidecarUrl}/v1`,
      OPENAI_API_KEY: 'unused',
    });
    let stdout = '';
    let stderr = '';
    app.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    app.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise((resolve) => app.once('close', resolve));
    expect(code, stderr).toBe(0);
    expect(stdout.match(/^Q: /gm)).toHaveLength(5);
    expect(stdout).toMatch(/^5 answers in [\d.]+s$/m);
    const summary = sim.ledger.summary();
    expect(summary).toMatchObject({ total: 5, ok: 5, refused: 0, maxInFlight: 2 });
    expect(sim.ledger.entries().every((entry) => entry.path === '/api/paas/v4/chat/completions')).toBe(true);
  });
});
