/** dist/ for the benchmarks that run the production tree (`node dist/bin/tokenlease.js`). */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Runs `npm run build` unless dist/ is newer than every file it is built from. */
export function ensureBuilt(): void {
  const stamp = join(ROOT, 'dist/sidecar/main.js'); // the build's last output (the sidecar bundle)
  const builtAt = existsSync(stamp) ? statSync(stamp).mtimeMs : 0;
  const { include } = JSON.parse(readFileSync(join(ROOT, 'tsconfig.build.json'), 'utf8')) as {
    include: string[];
  };
  const sources = [join(ROOT, 'tsconfig.build.json'), join(ROOT, 'package-lock.json')];
  for (const folder of include) {
    for (const name of readdirSync(join(ROOT, folder), { recursive: true, encoding: 'utf8' })) {
      sources.push(join(ROOT, folder, name));
    }
  }
  if (sources.every((file) => statSync(file).mtimeMs <= builtAt)) return;
  const build = spawnSync(process.execPath, [join(ROOT, 'scripts/build.ts')], {
    cwd: ROOT,
    stdio: 'inherit',
  });
  if (build.status !== 0) throw new Error('npm run build failed');
}
