// The `prepare` script: npm runs it after `npm install` / `npm ci` in a checkout (and
// before `npm pack`), so every start path finds the server compiled into dist/ and the
// player page in web/dist: `scripts/build.ts --if-stale`. Without the development
// dependencies (`npm ci --omit=dev`) there is nothing to build with: it says so and
// succeeds, and `bin/livegen.js` reports what is missing when it starts.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const missing = ['tsx/esm/api', 'typescript', 'esbuild'].filter((specifier) => {
  try {
    import.meta.resolve(specifier);
    return false;
  } catch {
    return true;
  }
});
if (missing.length > 0) {
  console.error(`prepare: not building dist/ and web/dist: ${missing.join(', ')} not installed (development dependencies)`);
  process.exit(0);
}
// Only what is missing or stale: npm also runs this when `npx livegen` links the checkout.
const env = { ...process.env };
delete env.LIVEGEN_DEV;
const result = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'scripts', 'build.ts'), '--if-stale'], { cwd: root, env, stdio: 'inherit' });
process.exit(result.status ?? 1);
