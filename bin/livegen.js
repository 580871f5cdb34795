#!/usr/bin/env node
// Runs the compiled server (dist/, built once by `npm install` / `npm run build`). In a
// checkout whose dist/ is missing or older than the sources, or with LIVEGEN_DEV=1, it runs
// the TypeScript sources through tsx instead, saying so on stderr. `serve` first builds the
// player page when a checkout lacks it. The rule is in ./start.js.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { canResolve, chooseEntry, ensurePage } from './start.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

let entry;
try {
  entry = chooseEntry(root);
} catch (err) {
  console.error(`livegen: ${err.message}`);
  process.exit(1);
}
if (entry.notice) process.stderr.write(`livegen: ${entry.notice}\n`);
if (entry.kind === 'sources') {
  if (!canResolve('tsx/esm/api')) {
    console.error('livegen: dist/ is not usable and tsx is not installed to run the sources: run `npm install` (it builds dist/) or `npm run build`');
    process.exit(1);
  }
  const { register } = await import('tsx/esm/api');
  register();
}
if (process.argv[2] === 'serve') ensurePage(root);
const { main } = await import(entry.url);
await main(process.argv);
