// Types of ./start.js for the TypeScript that imports it (scripts/build.ts, tests).

export type BuildState = { state: 'fresh' } | { state: 'missing' } | { state: 'stale'; newer: string };

export interface Entry {
  kind: 'dist' | 'sources';
  /** file: URL of the module whose `main(argv)` runs the CLI. */
  url: string;
  /** Why the sources run instead of dist/, for stderr. */
  notice?: string;
}

export const BUILD_STAMP: string;
export const SERVER_SOURCES: string[];
export const PAGE_SOURCES: string[];
export const PAGE_FILES: string[];
export function isCheckout(root: string): boolean;
export function newestFile(root: string, paths: string[]): { file: string; mtimeMs: number } | undefined;
export function serverBuildState(root: string): BuildState;
export function pageBuildState(root: string): BuildState;
export function chooseEntry(root: string, env?: Record<string, string | undefined>): Entry;
export function canResolve(specifier: string): boolean;
export function ensurePage(root: string, log?: (line: string) => void): void;
