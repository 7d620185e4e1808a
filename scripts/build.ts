/**
 * `npm run build`: the production tree in dist/, so images run `node dist/bin/tokenlease.js`
 * without Node's TypeScript type-stripper (~18 MB of RSS per process, and start-up time).
 *
 * tsc compiles everything tsconfig.build.json includes (no tests, benchmarks or scripts), with
 * relative `.ts` imports rewritten to `.js`; then the files read at run time next to the code (the
 * Redis Lua script, the .proto contract, the example budgets the demo loads) are copied beside it,
 * and the o200k_base rank table is written in its binary form (common/tokens/o200k-base.ts reads
 * it instead of parsing gpt-tokenizer's `.tiktoken` file at every start). Last, the sidecar's entry
 * module is replaced by a bundle of it and the packages it uses (./bundle-sidecar.ts: ~8 MB less
 * idle RSS, for its 80 MB target). dist/ is rebuilt from scratch each time, so nothing stale
 * survives a renamed module or an upgraded tokenizer.
 */
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { O200K_BINARY_NAME, o200kRanks } from '../common/tokens/o200k-base.ts';
import { bundleSidecar } from './bundle-sidecar.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const OUT = join(ROOT, 'dist');
const CONFIG = join(ROOT, 'tsconfig.build.json');
/** Non-TypeScript files the code opens relative to itself. */
const ASSET_EXTENSIONS = new Set(['.lua', '.proto', '.yaml']);

function compile(): void {
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  const result = spawnSync(process.execPath, [tsc, '-p', CONFIG], { cwd: ROOT, stdio: 'inherit' });
  if (result.status !== 0) throw new Error(`tsc -p tsconfig.build.json failed (exit ${result.status})`);
}

function copyAssets(): string[] {
  const { include } = JSON.parse(readFileSync(CONFIG, 'utf8')) as { include: string[] };
  const copied: string[] = [];
  for (const folder of include) {
    for (const entry of readdirSync(join(ROOT, folder), { recursive: true, withFileTypes: true })) {
      if (!entry.isFile() || !ASSET_EXTENSIONS.has(extname(entry.name))) continue;
      const relative = join(entry.parentPath.slice(ROOT.length), entry.name);
      mkdirSync(dirname(join(OUT, relative)), { recursive: true });
      copyFileSync(join(ROOT, relative), join(OUT, relative));
      copied.push(relative);
    }
  }
  return copied;
}

const started = performance.now();
rmSync(OUT, { recursive: true, force: true });
compile();
const assets = copyAssets();
writeFileSync(join(OUT, 'common', 'tokens', O200K_BINARY_NAME), o200kRanks().toBinary());
chmodSync(join(OUT, 'bin', 'tokenlease.js'), 0o755);
const bundled = await bundleSidecar({ root: OUT, extension: '.js', outDir: join(OUT, 'sidecar') });
const seconds = ((performance.now() - started) / 1000).toFixed(1);
console.log(
  `dist/ built in ${seconds}s; assets copied: ${assets.sort().join(', ')}, common/tokens/${O200K_BINARY_NAME} ` +
    `written; sidecar bundled into ${bundled.length} files`,
);
