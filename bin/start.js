// How `livegen` starts: which code it runs (compiled dist/ or the TypeScript sources) and
// whether the player page needs building first. Plain JavaScript with no dependencies, so
// it runs before anything is compiled. The rule (docs/config.md, "Running"):
//
// - An installed package (no src/ beside dist/) always runs dist/.
// - A checkout runs dist/ when `npm run build` stamped it (dist/.build-stamp) after the
//   last change to what it is built from (src/, workers/synthetic/, the tsconfigs).
//   Otherwise, or with LIVEGEN_DEV=1, it runs the sources through tsx, and says why on
//   stderr unless LIVEGEN_DEV=1 asked for it: a stale dist/ never runs silently.
// - A checkout builds the page (web/dist) when it is missing or older than its sources.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';

/** Written by `npm run build` once everything in dist/ is in place; its mtime is when the build started. */
export const BUILD_STAMP = join('dist', '.build-stamp');
/** What dist/ is compiled from. */
export const SERVER_SOURCES = ['src', join('workers', 'synthetic'), 'tsconfig.json', 'tsconfig.build.json'];
/** What web/dist is bundled from. */
export const PAGE_SOURCES = [
  join('web', 'src'),
  join('web', 'index.html'),
  join('web', 'style.css'),
  join('src', 'client'),
  join('src', 'protocol'),
  join('src', 'core'),
  join('scripts', 'build-web.ts'),
];
/** The built page. */
export const PAGE_FILES = [join('web', 'dist', 'index.html'), join('web', 'dist', 'app.js'), join('web', 'dist', 'style.css')];

/** A checkout has the sources; an installed package has only dist/. */
export function isCheckout(root) {
  return existsSync(join(root, 'src', 'cli.ts'));
}

function mtimeOf(path) {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return undefined;
  }
}

/** The most recently modified file under `paths` (files or directories, relative to root). */
export function newestFile(root, paths) {
  let newest;
  const visit = (path) => {
    let stat;
    try {
      stat = statSync(path);
    } catch {
      return;
    }
    if (stat.isDirectory()) {
      for (const name of readdirSync(path)) visit(join(path, name));
    } else if (!newest || stat.mtimeMs > newest.mtimeMs) {
      newest = { file: relative(root, path), mtimeMs: stat.mtimeMs };
    }
  };
  for (const p of paths) visit(join(root, p));
  return newest;
}

/** `fresh`, `missing` or `stale` (with the newer source) for the compiled server in dist/. */
export function serverBuildState(root) {
  if (!isCheckout(root)) return existsSync(join(root, 'dist', 'cli.js')) ? { state: 'fresh' } : { state: 'missing' };
  const stamp = mtimeOf(join(root, BUILD_STAMP));
  if (stamp === undefined || !existsSync(join(root, 'dist', 'cli.js'))) return { state: 'missing' };
  const newest = newestFile(root, SERVER_SOURCES);
  return newest && newest.mtimeMs > stamp ? { state: 'stale', newer: newest.file } : { state: 'fresh' };
}

/** `fresh`, `missing` or `stale` (with the newer source) for the page in web/dist. */
export function pageBuildState(root) {
  const times = PAGE_FILES.map((f) => mtimeOf(join(root, f)));
  if (times.some((t) => t === undefined)) return { state: 'missing' };
  if (!isCheckout(root)) return { state: 'fresh' };
  const built = Math.min(...times);
  const newest = newestFile(root, PAGE_SOURCES);
  return newest && newest.mtimeMs > built ? { state: 'stale', newer: newest.file } : { state: 'fresh' };
}

/**
 * What to run: `{ kind: 'dist' | 'sources', url, notice? }`. `notice` is the line to print
 * on stderr. Throws when an installed package has no dist/.
 */
export function chooseEntry(root, env = process.env) {
  const dist = { kind: 'dist', url: pathToFileURL(join(root, 'dist', 'cli.js')).href };
  const sources = { kind: 'sources', url: pathToFileURL(join(root, 'src', 'cli.ts')).href };
  if (!isCheckout(root)) {
    if (serverBuildState(root).state !== 'fresh') throw new Error(`${join(root, 'dist', 'cli.js')} is missing: this install of livegen is incomplete; reinstall it`);
    return dist;
  }
  if (env.LIVEGEN_DEV === '1') return sources;
  const build = serverBuildState(root);
  if (build.state === 'fresh') return dist;
  const why = build.state === 'missing' ? 'dist/ is not built' : `dist/ is older than ${build.newer}`;
  return { ...sources, notice: `${why}; running the TypeScript sources through tsx (\`npm run build\` compiles them once; LIVEGEN_DEV=1 always runs the sources)` };
}

/** Whether `specifier` resolves from this file (tsx is a development dependency). */
export function canResolve(specifier) {
  try {
    import.meta.resolve(specifier);
    return true;
  } catch {
    return false;
  }
}

/**
 * In a checkout, builds the page when it is missing or older than its sources (about a
 * second, in a child process so nothing of the build stays in the server). Progress goes to
 * stderr; a failure is reported and the server starts anyway (it answers 503 at `/`).
 */
export function ensurePage(root, log = (line) => process.stderr.write(`livegen: ${line}\n`)) {
  if (!isCheckout(root)) return;
  const page = pageBuildState(root);
  if (page.state === 'fresh') return;
  if (!canResolve('tsx/esm/api')) {
    log('the web player (web/dist) is not built and tsx is not installed to build it: run `npm install`');
    return;
  }
  log(`building the web player into web/dist (${page.state === 'missing' ? 'not built yet' : `older than ${page.newer}`})`);
  const result = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'scripts', 'build.ts'), '--page'], {
    cwd: root,
    stdio: ['ignore', process.stderr, process.stderr],
  });
  if (result.status !== 0) log(`building the web player failed (${result.error?.message ?? `exit code ${result.status}`}); \`npm run build:web\` shows why`);
}
