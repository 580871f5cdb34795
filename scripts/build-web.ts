/**
 * Builds the player page into web/dist (index.html, app.js, style.css): one esbuild bundle
 * of web/src/main.ts with the client SDK and zod inside, so the page needs no CDN and
 * works offline. `npm run build:web`; tests call `buildWeb({ outDir })`.
 */
import { copyFile, mkdir, rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build, type Plugin } from 'esbuild';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const WEB_DIR = join(ROOT, 'web');
export const DEFAULT_OUT_DIR = join(WEB_DIR, 'dist');

export interface BuildWebOptions {
  /** Where the page goes (default web/dist); emptied first. */
  outDir?: string;
  minify?: boolean;
}

export interface BuiltWeb {
  outDir: string;
  files: string[];
}

/**
 * zod re-exports every error-message locale as `z.locales`, which no bundler can drop
 * (about half the bundle). The page only needs English, zod's default.
 */
const englishOnlyZodLocales: Plugin = {
  name: 'zod-english-locale-only',
  setup(b) {
    b.onResolve({ filter: /^\.\.\/locales\/index\.js$/ }, (args) =>
      /[\\/]zod[\\/]v4[\\/]/.test(args.importer) ? { path: 'zod-locales-en', namespace: 'livegen-web' } : undefined,
    );
    b.onLoad({ filter: /^zod-locales-en$/, namespace: 'livegen-web' }, () => ({
      contents: "export { default as en } from 'zod/v4/locales/en.js';",
      resolveDir: ROOT,
      loader: 'js',
    }));
  },
};

export async function buildWeb(options: BuildWebOptions = {}): Promise<BuiltWeb> {
  const outDir = resolve(options.outDir ?? DEFAULT_OUT_DIR);
  await rm(outDir, { recursive: true, force: true });
  await mkdir(outDir, { recursive: true });
  await build({
    entryPoints: [join(WEB_DIR, 'src', 'main.ts')],
    outfile: join(outDir, 'app.js'),
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: ['chrome110', 'firefox115', 'safari16'],
    minify: options.minify ?? true,
    sourcemap: 'linked',
    legalComments: 'none',
    logLevel: 'warning',
    absWorkingDir: ROOT,
    plugins: [englishOnlyZodLocales],
  });
  await copyFile(join(WEB_DIR, 'index.html'), join(outDir, 'index.html'));
  await copyFile(join(WEB_DIR, 'style.css'), join(outDir, 'style.css'));
  return { outDir, files: ['index.html', 'app.js', 'app.js.map', 'style.css'] };
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const started = performance.now();
  buildWeb().then(
    (built) => console.log(`built the web player into ${built.outDir} in ${Math.round(performance.now() - started)} ms`),
    (err: unknown) => {
      console.error(err instanceof Error ? err.message : err);
      process.exit(1);
    },
  );
}
