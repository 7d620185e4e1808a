/**
 * The sidecar's production modules: `npm run build` bundles dist/sidecar/main.js with the packages
 * it uses (zod, yaml, prom-client, @grpc/grpc-js, protobufjs, @opentelemetry/api, ...) into
 * dist/sidecar/main.js and a few chunks in dist/sidecar/chunks/ (named after their packages), so
 * `tokenlease sidecar` loads ~50 files (17 of ours, undici's 30) instead of ~600.
 *
 * Why: the sidecar's target is under 80 MB resident when idle. Loading ~600
 * separate modules costs ~7 MB of that on its own: Node's module resolution runs hot enough to be
 * JIT-compiled (touching the compilers' code in the node binary), and every module keeps its
 * source, comments included, in the heap. bench:memory, median of 3: 82.3 MB idle unbundled, 74.6
 * MB bundled. The saving is at start-up and while idle: under load both reach about the same peak,
 * the compilers being in use by then anyway. Nothing is minified: names and code stay as written,
 * for stack traces.
 *
 * The bundle is the same code: no module is replaced or stubbed, only unused exports are dropped.
 * A few modules stay out of it and are loaded from their own files (SIDECAR_UNBUNDLED), and undici
 * is loaded from node_modules (sidecar/proxy/upstream.ts requires its files at run time);
 * test/sidecar/bundle.test.ts builds the bundle from source and runs calls through it.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { isBuiltin } from 'node:module';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { rolldown, type Plugin } from 'rolldown';

/** Modules of ours the bundle imports from their own files (paths without extension). */
export const SIDECAR_UNBUNDLED = [
  // One copy of the error classes in the process: bin/tokenlease.ts tells a ConfigError (exit 2)
  // from other failures by instanceof, and the lazily loaded modules below throw them too.
  'common/errors/errors',
  // They find files beside themselves through import.meta.url (proto/, o200k_base.bpe).
  'common/grpc/proto-options',
  'common/tokens/o200k-base',
  // Loaded on demand only (--quota embedded, --cache-redis): not worth loading up front.
  'controller/quota/engine/index',
  'sidecar/cache/redis-cache-store',
] as const;

/**
 * Modules of ours that may use import.meta in the bundle: upstream.ts resolves undici's files with
 * createRequire(import.meta.url), which finds the same node_modules from the bundle's directory.
 */
const IMPORT_META_ALLOWED = ['sidecar/proxy/upstream'];

/** Packages that are never bundled (loaded on demand, and only with --cache-redis). */
const EXTERNAL_PACKAGES = ['ioredis'];

function packageOf(id: string): string | undefined {
  return /[\\/]node_modules[\\/]((?:@[^\\/]+[\\/])?[^\\/]+)[\\/]/.exec(id)?.[1]?.replace(/\\/g, '/');
}

/** Where the chunks go, below the output directory: every package's code is in one of them. */
const CHUNKS = 'chunks';

/**
 * CommonJS code in node_modules that uses __dirname or __filename (grpc-js finds its own .proto
 * files with it) gets the module's original path, relative to the chunk it runs from.
 */
function originalDirname(chunkDir: string): Plugin {
  return {
    name: 'tokenlease:original-dirname',
    transform(code, id) {
      if (packageOf(id) === undefined || !/\b__(dirname|filename)\b/.test(code)) return null;
      const path = (to: string) => JSON.stringify(`/${relative(chunkDir, to).split(sep).join('/')}`);
      return code
        .replace(/\b__dirname\b/g, `(import.meta.dirname + ${path(dirname(id))})`)
        .replace(/\b__filename\b/g, `(import.meta.dirname + ${path(id)})`);
    },
  };
}

/**
 * Imports of the unbundled modules stay imports of their files. Rendered absolute here, then made
 * relative to each chunk's place in the output by relativeImports (rolldown would make them
 * relative to the entry's source directory, right only when the output goes there).
 */
function unbundledModules(unbundled: ReadonlySet<string>): Plugin {
  return {
    name: 'tokenlease:unbundled',
    resolveId(source, importer) {
      if (importer === undefined || !source.startsWith('.')) return null;
      const id = resolve(dirname(importer), source);
      return unbundled.has(id) ? { id, external: 'absolute' } : null;
    },
  };
}

function relativeImports(code: string, file: string, unbundled: ReadonlySet<string>): string {
  for (const id of unbundled) {
    const path = relative(dirname(file), id).split(sep).join('/');
    code = code.replaceAll(JSON.stringify(id), JSON.stringify(path.startsWith('.') ? path : `./${path}`));
  }
  return code;
}

/** Refuses a module of ours that looks up files relative to itself: it belongs in SIDECAR_UNBUNDLED. */
function noImportMeta(root: string): Plugin {
  return {
    name: 'tokenlease:no-import-meta',
    transform(code, id) {
      const ours = id.startsWith(root) && packageOf(id) === undefined;
      if (!ours || !code.includes('import.meta')) return null;
      const module = relative(root, id).replace(/\.[jt]s$/, '');
      if (!IMPORT_META_ALLOWED.includes(module)) {
        this.error(`${module} uses import.meta: bundled, it would resolve from the bundle's directory`);
      }
      return null;
    },
  };
}

export interface BundleSidecarOptions {
  /** The tree to bundle: dist/ (compiled, `.js`) or the repository (source, `.ts`). */
  root: string;
  extension: '.js' | '.ts';
  /** Where main.js and its chunks go; the unbundled modules are imported relative to it. */
  outDir: string;
}

/** Bundles `<root>/sidecar/main<extension>` into `<outDir>/main.js` + chunks; the files written. */
export async function bundleSidecar({ root, extension, outDir }: BundleSidecarOptions): Promise<string[]> {
  const unbundled = new Set(SIDECAR_UNBUNDLED.map((module) => join(root, `${module}${extension}`)));
  const bundle = await rolldown({
    input: join(root, 'sidecar', `main${extension}`),
    platform: 'node',
    external: (id) =>
      isBuiltin(id) || EXTERNAL_PACKAGES.some((name) => id === name || id.startsWith(`${name}/`)),
    plugins: [unbundledModules(unbundled), originalDirname(join(outDir, CHUNKS)), noImportMeta(root)],
  });
  try {
    const { output } = await bundle.generate({
      format: 'esm',
      entryFileNames: 'main.js',
      chunkFileNames: `${CHUNKS}/[name].js`,
      // Licence headers stay; other comments go (they would sit in the heap as source text).
      comments: { legal: true, annotation: false, jsdoc: false },
      // Chunks named after the packages in them (so a stack trace names the package); our own code
      // stays in main.js, bar the quota client that main.ts imports on demand.
      codeSplitting: {
        groups: [
          {
            debugName: 'one chunk per package',
            name: (id) => {
              const name = packageOf(id);
              return name === undefined ? null : `vendor-${name.replace('/', '-').replace('@', '')}`;
            },
          },
        ],
      },
    });
    mkdirSync(join(outDir, CHUNKS), { recursive: true });
    // The entry last: its presence means the chunks it imports are there.
    const files = [...output].sort(
      (a, b) => Number(a.fileName === 'main.js') - Number(b.fileName === 'main.js'),
    );
    for (const file of files) {
      const path = join(outDir, file.fileName);
      writeFileSync(path, file.type === 'chunk' ? relativeImports(file.code, path, unbundled) : file.source);
    }
    return output.map((file) => file.fileName);
  } finally {
    await bundle.close();
  }
}
