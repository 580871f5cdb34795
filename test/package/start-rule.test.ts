/**
 * The start-path rule of bin/start.js on made-up trees: which code `livegen` runs
 * (dist/ or the sources through tsx) and when the page needs building.
 */
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { BUILD_STAMP, chooseEntry, pageBuildState, serverBuildState } from '../../bin/start.js';

const base = mkdtempSync(join(tmpdir(), 'livegen-start-rule-'));
afterAll(() => rmSync(base, { recursive: true, force: true }));

let n = 0;
/** A tree with the given files, each with an mtime in seconds since 2024-01-01. */
function tree(files: Record<string, number>): string {
  const root = join(base, `t${n++}`);
  for (const [file, at] of Object.entries(files)) {
    const path = join(root, file);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, '');
    const t = 1_704_067_200 + at;
    utimesSync(path, t, t);
  }
  return root;
}

const SOURCES = { 'src/cli.ts': 0, 'src/server/app.ts': 0, 'workers/synthetic/main.ts': 0, 'tsconfig.json': 0 };
const BUILT = { 'dist/cli.js': 10, [BUILD_STAMP]: 10 };
const PAGE = { 'web/src/main.ts': 0, 'web/index.html': 0, 'web/style.css': 0, 'web/dist/index.html': 10, 'web/dist/app.js': 10, 'web/dist/style.css': 10 };
const noEnv = {};

describe('which code livegen runs', () => {
  it('runs dist/ in a checkout whose build is newer than every source', () => {
    const root = tree({ ...SOURCES, ...BUILT });
    expect(serverBuildState(root)).toEqual({ state: 'fresh' });
    expect(chooseEntry(root, noEnv)).toEqual({ kind: 'dist', url: pathToFileURL(join(root, 'dist/cli.js')).href });
  });

  it('runs the sources, saying which file is newer, when a source changed after the build', () => {
    const root = tree({ ...SOURCES, ...BUILT, 'src/server/app.ts': 20 });
    expect(serverBuildState(root)).toEqual({ state: 'stale', newer: join('src', 'server', 'app.ts') });
    const entry = chooseEntry(root, noEnv);
    expect(entry.kind).toBe('sources');
    expect(entry.url).toBe(pathToFileURL(join(root, 'src/cli.ts')).href);
    expect(entry.notice).toContain('dist/ is older than src/server/app.ts');
  });

  it('counts the synthetic worker and the tsconfigs as sources', () => {
    expect(chooseEntry(tree({ ...SOURCES, ...BUILT, 'workers/synthetic/main.ts': 11 }), noEnv).kind).toBe('sources');
    expect(chooseEntry(tree({ ...SOURCES, ...BUILT, 'tsconfig.build.json': 11 }), noEnv).kind).toBe('sources');
    // Tests, docs and the page do not make dist/ stale.
    expect(chooseEntry(tree({ ...SOURCES, ...BUILT, 'test/x.test.ts': 11, 'web/src/main.ts': 11, 'README.md': 11 }), noEnv).kind).toBe('dist');
  });

  it('runs the sources when dist/ was never stamped (not built, or a build in progress)', () => {
    for (const root of [tree(SOURCES), tree({ ...SOURCES, 'dist/cli.js': 10 }), tree({ ...SOURCES, [BUILD_STAMP]: 10 })]) {
      expect(serverBuildState(root)).toEqual({ state: 'missing' });
      const entry = chooseEntry(root, noEnv);
      expect(entry.kind).toBe('sources');
      expect(entry.notice).toContain('dist/ is not built');
    }
  });

  it('runs the sources without a notice when LIVEGEN_DEV=1 asks for them', () => {
    const entry = chooseEntry(tree({ ...SOURCES, ...BUILT }), { LIVEGEN_DEV: '1' });
    expect(entry).toEqual({ kind: 'sources', url: expect.stringMatching(/src\/cli\.ts$/) });
    expect(chooseEntry(tree({ ...SOURCES, ...BUILT }), { LIVEGEN_DEV: '0' }).kind).toBe('dist');
  });

  it('always runs dist/ in an installed package (no sources beside it), whatever its mtimes', () => {
    const root = tree({ 'dist/cli.js': 0, 'package.json': 5 });
    expect(chooseEntry(root, noEnv).kind).toBe('dist');
    expect(chooseEntry(root, { LIVEGEN_DEV: '1' }).kind).toBe('dist');
    expect(() => chooseEntry(tree({ 'package.json': 0 }), noEnv)).toThrow(/dist\/cli\.js is missing/);
  });
});

describe('when the page is built', () => {
  it('is fresh when every built file is newer than the page sources', () => {
    expect(pageBuildState(tree({ ...SOURCES, ...PAGE }))).toEqual({ state: 'fresh' });
  });

  it('is missing when a built file is absent', () => {
    const { 'web/dist/app.js': _, ...rest } = PAGE;
    expect(pageBuildState(tree({ ...SOURCES, ...rest }))).toEqual({ state: 'missing' });
    expect(pageBuildState(tree(SOURCES))).toEqual({ state: 'missing' });
  });

  it('is stale when the page or the SDK it bundles changed after the build', () => {
    expect(pageBuildState(tree({ ...SOURCES, ...PAGE, 'web/src/main.ts': 20 }))).toEqual({ state: 'stale', newer: join('web', 'src', 'main.ts') });
    expect(pageBuildState(tree({ ...SOURCES, ...PAGE, 'src/client/client.ts': 20 }))).toEqual({ state: 'stale', newer: join('src', 'client', 'client.ts') });
    // The server's own sources are not in the page.
    expect(pageBuildState(tree({ ...SOURCES, ...PAGE, 'src/server/app.ts': 20 }))).toEqual({ state: 'fresh' });
  });
});
