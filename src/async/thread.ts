import { Worker, type ResourceLimits } from 'node:worker_threads';

/**
 * Starts a worker thread running the module `name` beside `callerUrl` (a sibling file).
 * Run from compiled JavaScript, that is `name.js`; run from the TypeScript sources (a
 * `.ts` caller), the thread first registers the same TypeScript loader (tsx) the
 * process runs under, then loads `name.ts`.
 */
export function startThread(callerUrl: string, name: string, options: { workerData?: unknown; resourceLimits?: ResourceLimits } = {}): Worker {
  const fromSources = callerUrl.endsWith('.ts');
  const url = new URL(`./${name}${fromSources ? '.ts' : '.js'}`, callerUrl);
  if (!fromSources) return new Worker(url, options);
  // Resolved here, from this package: a bare name in eval code resolves from the process's
  // working directory, which need not be this checkout.
  const tsx = import.meta.resolve('tsx/esm/api');
  const bootstrap = `import(${JSON.stringify(tsx)}).then(({ register }) => { register(); return import(${JSON.stringify(url.href)}); });`;
  return new Worker(bootstrap, { ...options, eval: true });
}
