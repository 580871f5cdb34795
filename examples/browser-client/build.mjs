// Bundles the example page for the browser: main.js with the livegen client SDK (resolved
// by its package name, `livegen/client`) and zod inside, into app.js beside index.html.
// `node build.mjs [outDir]` (default: livegen-example in the OS temp dir, outside the
// linted tree); serve.mjs and the tests call buildExample(outDir).
import { copyFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build } from 'esbuild';

const HERE = dirname(fileURLToPath(import.meta.url));
export const DEFAULT_OUT_DIR = join(tmpdir(), 'livegen-example');

export async function buildExample(outDir = DEFAULT_OUT_DIR) {
  await mkdir(outDir, { recursive: true });
  // platform 'browser': a node: module anywhere in the SDK's imports fails the build.
  await build({
    entryPoints: [join(HERE, 'main.js')],
    outfile: join(outDir, 'app.js'),
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: ['chrome110', 'firefox115', 'safari16'],
    minify: true,
    logLevel: 'warning',
  });
  await copyFile(join(HERE, 'index.html'), join(outDir, 'index.html'));
  return outDir;
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const outDir = await buildExample(process.argv[2] ? resolve(process.argv[2]) : DEFAULT_OUT_DIR);
  console.log(`built the example into ${outDir}`);
}
