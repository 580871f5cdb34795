/**
 * `npm run build`, also run by `npm install` / `npm ci` (the `prepare` script): everything
 * the start paths run, built once.
 *
 * - dist/: the server, client SDK and protocol compiled by tsc (tsconfig.build.json), with
 *   `.d.ts`; files left over from deleted sources are removed.
 * - dist/workers/synthetic/main.js: the synthetic worker program. Its imports of src/ are
 *   pointed at the compiled modules in dist/, so it shares them (and their thread files)
 *   with the server rather than carrying copies.
 * - web/dist: the player page (scripts/build-web.ts), swapped in whole, so a server
 *   reading it never sees half a build.
 * - dist/.build-stamp, last, with the time the build started: bin/start.js runs dist/ only
 *   when no source changed since (a change during the build counts as after it).
 *
 * `--if-stale` builds only what is missing or older than its sources (with LIVEGEN_DEV=1,
 * only the page); `--page` builds only the page. Progress goes to stderr.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, rmdirSync, utimesSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build as esbuild, type Plugin } from 'esbuild';
import { BUILD_STAMP, pageBuildState, serverBuildState } from '../bin/start.js';
import { buildWeb } from './build-web.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

export interface BuildOptions {
  /** Only what is missing or stale. */
  ifStale?: boolean;
  server?: boolean;
  page?: boolean;
  log?: (line: string) => void;
}

/** Compiles src/ into dist/ with tsc and removes outputs whose source is gone. */
function compileServer(): void {
  const tsc = createRequire(join(ROOT, 'package.json')).resolve('typescript/bin/tsc');
  const result = spawnSync(process.execPath, [tsc, '-p', join(ROOT, 'tsconfig.build.json')], { cwd: ROOT, stdio: ['ignore', process.stderr, process.stderr] });
  if (result.status !== 0) throw new Error(`tsc -p tsconfig.build.json failed (${result.error?.message ?? `exit code ${result.status}`})`);
  pruneOrphans(join(ROOT, 'dist'), '');
}

/** Removes dist/X.js and dist/X.d.ts whose src/X.ts no longer exists (dist/workers/ and dotfiles are the build's own). */
function pruneOrphans(dir: string, rel: string): void {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    const relPath = rel ? join(rel, entry.name) : entry.name;
    if (entry.name.startsWith('.') || relPath === 'workers') continue;
    if (entry.isDirectory()) {
      pruneOrphans(path, relPath);
      if (readdirSync(path).length === 0) rmdirSync(path);
    } else if (/\.(d\.ts|js)$/.test(entry.name) && !existsSync(join(ROOT, 'src', relPath.replace(/(\.d\.ts|\.js)$/, '.ts')))) {
      rmSync(path);
    }
  }
}

/** Compiles workers/synthetic/main.ts into dist/workers/synthetic/main.js, importing the compiled src/ modules. */
async function buildSyntheticWorker(): Promise<void> {
  const outfile = join(ROOT, 'dist', 'workers', 'synthetic', 'main.js');
  const srcDir = join(ROOT, 'src') + sep;
  const useCompiledSrc: Plugin = {
    name: 'livegen-compiled-src',
    setup(b) {
      b.onResolve({ filter: /^\.\.?\// }, (args) => {
        const target = resolve(args.resolveDir, args.path);
        if (!target.startsWith(srcDir)) return undefined;
        const compiled = join(ROOT, 'dist', relative(srcDir, target));
        const path = relative(dirname(outfile), compiled).split(sep).join('/');
        return { path: path.startsWith('.') ? path : `./${path}`, external: true };
      });
    },
  };
  await esbuild({
    entryPoints: [join(ROOT, 'workers', 'synthetic', 'main.ts')],
    outfile,
    bundle: true,
    packages: 'external',
    platform: 'node',
    format: 'esm',
    target: 'node20',
    logLevel: 'warning',
    absWorkingDir: ROOT,
    plugins: [useCompiledSrc],
  });
}

/** Builds the page beside web/dist and swaps it in; when another build swapped first, keeps that one. */
async function buildPage(): Promise<void> {
  const target = join(ROOT, 'web', 'dist');
  const staging = join(ROOT, 'web', `.dist-${process.pid}`);
  const old = join(ROOT, 'web', `.dist-old-${process.pid}`);
  try {
    await buildWeb({ outDir: staging });
    try {
      renameSync(target, old);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    try {
      renameSync(staging, target);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
    }
  } finally {
    rmSync(staging, { recursive: true, force: true });
    rmSync(old, { recursive: true, force: true });
  }
}

export async function build(options: BuildOptions = {}): Promise<void> {
  const log = options.log ?? ((line: string) => process.stderr.write(`build: ${line}\n`));
  const wantServer = options.server ?? true;
  const wantPage = options.page ?? true;
  const started = Date.now();
  const dev = process.env.LIVEGEN_DEV === '1';
  const server = serverBuildState(ROOT);
  if (wantServer && !(options.ifStale && (server.state === 'fresh' || dev))) {
    const t0 = performance.now();
    // Without the stamp, nothing runs a half-built dist/.
    rmSync(join(ROOT, BUILD_STAMP), { force: true });
    compileServer();
    await buildSyntheticWorker();
    writeFileSync(join(ROOT, BUILD_STAMP), `built by scripts/build.ts at ${new Date(started).toISOString()}\n`);
    utimesSync(join(ROOT, BUILD_STAMP), started / 1000, started / 1000);
    log(`compiled the server into dist/ in ${Math.round(performance.now() - t0)} ms${server.state === 'stale' ? ` (${server.newer} changed)` : ''}`);
  }
  const page = pageBuildState(ROOT);
  if (wantPage && !(options.ifStale && page.state === 'fresh')) {
    const t0 = performance.now();
    mkdirSync(join(ROOT, 'web'), { recursive: true });
    await buildPage();
    log(`built the web player into web/dist in ${Math.round(performance.now() - t0)} ms`);
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const args = process.argv.slice(2);
  const unknown = args.filter((a) => a !== '--if-stale' && a !== '--page');
  if (unknown.length > 0) {
    console.error(`usage: tsx scripts/build.ts [--if-stale] [--page]; unknown: ${unknown.join(' ')}`);
    process.exit(2);
  }
  const pageOnly = args.includes('--page');
  build({ ifStale: args.includes('--if-stale'), server: !pageOnly }).catch((err: unknown) => {
    console.error(`build failed: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
}
