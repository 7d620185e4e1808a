/** `tokenlease sim-provider` as a process: prints its URL, serves, stops cleanly on SIGTERM. */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const CLI = fileURLToPath(new URL('../../sim-provider/cli.ts', import.meta.url));

function startCli(args: string[]) {
  const script = `import(${JSON.stringify(CLI)}).then((m) => m.runSimProvider(${JSON.stringify(args)})).catch((e) => { console.error(e.message); process.exitCode = 2; });`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  return { child, out: () => stdout, err: () => stderr };
}

describe('sim-provider CLI', () => {
  it('serves with the given flavour and limits, then prints the ledger summary on SIGTERM', async () => {
    const cli = startCli(['--flavor', 'glm', '--limits', 'requests=1/1m']);
    while (!/listening on (http:\S+)/.test(cli.out())) {
      if (cli.child.exitCode !== null) throw new Error(`exited: ${cli.err()}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const url = /listening on (http:\S+)/.exec(cli.out())![1]!;
    const body = JSON.stringify({ model: 'glm-4.6', messages: [{ role: 'user', content: 'hi' }] });
    expect((await fetch(`${url}/v1/chat/completions`, { method: 'POST', body })).status).toBe(200);
    const refused = await fetch(`${url}/v1/chat/completions`, { method: 'POST', body });
    expect(refused.status).toBe(429);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('1303');
    cli.child.kill('SIGTERM');
    const [code] = await once(cli.child, 'exit');
    expect(code).toBe(0);
    const summary = JSON.parse(cli.out().trim().split('\n').at(-1)!);
    expect(summary).toMatchObject({ total: 2, ok: 1, refusedByCode: { '1303': 1 } });
  });

  it('refuses a bad flag, naming it', async () => {
    const cli = startCli(['--flavor', 'acme']);
    const [code] = await once(cli.child, 'exit');
    expect(code).toBe(2);
    expect(cli.err()).toContain('--flavor');
  });
});
