/**
 * livegen as others get it, in a copy of this checkout (so the working tree's dist/ and
 * web/dist are never touched):
 *
 * - start paths: with nothing built, `livegen serve` runs the sources through tsx (saying
 *   so) and builds the page before serving it; `npm run build` makes dist/, which then runs
 *   without the sources being read; a source changed after the build sends it back to the
 *   sources, with a notice.
 * - the package: `npm pack` of the built copy, unpacked into a throwaway project whose
 *   other dependencies are links to this checkout's node_modules (no registry). Its three
 *   entry points load in Node, their `.d.ts` type-check in a Node project (and the client's
 *   in a browser project without Node's types), the client bundles for the browser with no
 *   node: module, and the packed CLI serves the page and streams a segment from a synthetic
 *   worker process through an opening frame large enough for the parser thread, all
 *   compiled JavaScript (tsx is not installed there).
 * - the example (examples/browser-client): bundled from the package, served by livegen,
 *   and its bundled code streams a segment when loaded in Node with `ws` as its WebSocket.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build as esbuild } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const TSC = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
/** Two shared cores: a tsc build of the server takes 10-20 s, a start through tsx a few. */
const BUILD_TIMEOUT_MS = 180_000;
const START_TIMEOUT_MS = 30_000;

const work = mkdtempSync(join(tmpdir(), 'livegen-package-'));
const checkout = join(work, 'checkout');
const consumer = join(work, 'consumer');
const children: ChildProcess[] = [];

/** The environment of every child: none of the caller's LIVEGEN_* settings. */
function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('LIVEGEN_'))), ...extra };
}

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(command: string, args: string[], cwd: string, timeoutMs = BUILD_TIMEOUT_MS, env = childEnv()): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

async function runOk(command: string, args: string[], cwd: string, timeoutMs?: number): Promise<Ran> {
  const ran = await run(command, args, cwd, timeoutMs);
  if (ran.code !== 0) throw new Error(`${command} ${args.join(' ')} exited ${ran.code}\nstdout: ${ran.stdout}\nstderr: ${ran.stderr}`);
  return ran;
}

interface Served {
  child: ChildProcess;
  url: string;
  stderr: () => string;
}

/** Starts `node <bin> serve ...args` and resolves at its listening line. */
function serve(bin: string, args: string[], cwd: string, env = childEnv()): Promise<Served> {
  const child = spawn(process.execPath, [bin, 'serve', '--log-level', 'info', ...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString('utf8')));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no listening line within ${START_TIMEOUT_MS} ms; stderr: ${err}`)), START_TIMEOUT_MS);
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString('utf8');
      const match = /"msg":"livegen listening on (http:\/\/[^"]+)"/.exec(out);
      if (!match) return;
      clearTimeout(timer);
      resolve({ child, url: match[1] as string, stderr: () => err });
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`exited with code ${code} before listening; stderr: ${err}`));
    });
  });
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

/** What `/` answers: the status, content type and body. */
async function page(url: string): Promise<{ status: number; type: string; body: string }> {
  const res = await fetch(`${url}/`);
  return { status: res.status, type: res.headers.get('content-type') ?? '', body: await res.text() };
}

/** The child processes of a process (any of its threads may have spawned them) and their command lines. */
function childCommands(pid: number): string[] {
  const out: string[] = [];
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    for (const child of readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean)) {
      out.push(readFileSync(`/proc/${child}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' '));
    }
  }
  return out;
}

/** A copy of what a clone has (sources, scripts, page sources, package files), with this checkout's node_modules linked in. */
function copyCheckout(): void {
  mkdirSync(checkout, { recursive: true });
  const skip = new Set([join(ROOT, 'web', 'dist'), join(ROOT, 'dist')]);
  for (const entry of ['package.json', 'package-lock.json', 'README.md', 'tsconfig.json', 'tsconfig.build.json', 'bin', 'src', 'scripts', 'web', 'workers', 'examples']) {
    cpSync(join(ROOT, entry), join(checkout, entry), {
      recursive: true,
      filter: (src) => !skip.has(src) && !basename(src).startsWith('.dist-') && basename(src) !== '__pycache__',
    });
  }
  symlinkSync(join(ROOT, 'node_modules'), join(checkout, 'node_modules'), 'dir');
}

/** Links a package of this checkout's node_modules into the consumer's. */
function linkPackage(name: string): void {
  const target = join(consumer, 'node_modules', name);
  mkdirSync(dirname(target), { recursive: true });
  symlinkSync(join(ROOT, 'node_modules', name), target, 'dir');
}

beforeAll(() => copyCheckout());

afterAll(async () => {
  await Promise.all(children.map(stop));
  rmSync(work, { recursive: true, force: true });
});

const bin = () => join(checkout, 'bin', 'livegen.js');

describe('start paths in a checkout', () => {
  it(
    'with nothing built, runs the sources through tsx (saying so) and builds the page before serving it',
    async () => {
      expect(existsSync(join(checkout, 'web', 'dist'))).toBe(false);
      const server = await serve(bin(), ['--port', '0'], checkout);
      expect(server.stderr()).toContain('livegen: dist/ is not built; running the TypeScript sources through tsx');
      expect(server.stderr()).toContain('livegen: building the web player into web/dist (not built yet)');
      const root = await page(server.url);
      expect(root.status).toBe(200);
      expect(root.type).toContain('text/html');
      expect(root.body).toContain('app.js');
      expect((await fetch(`${server.url}/app.js`)).status).toBe(200);
      await stop(server.child);
    },
    BUILD_TIMEOUT_MS,
  );

  it(
    '`npm run build` compiles dist/ (with .d.ts), the synthetic worker and the page, and stamps dist/; `--if-stale` then does nothing',
    async () => {
      const built = await runOk('npm', ['run', 'build'], checkout);
      expect(built.stderr).toMatch(/compiled the server into dist\/ in \d+ ms/);
      for (const file of [
        'dist/cli.js',
        'dist/server/index.js',
        'dist/server/index.d.ts',
        'dist/server/opening-frame-thread.js',
        'dist/client/index.js',
        'dist/client/index.d.ts',
        'dist/protocol/index.d.ts',
        'dist/workers/synthetic/main.js',
        'dist/.build-stamp',
        'web/dist/index.html',
        'web/dist/app.js',
      ]) {
        expect(existsSync(join(checkout, file)), file).toBe(true);
      }
      // The compiled worker imports the compiled modules beside the server's, not copies.
      expect(readFileSync(join(checkout, 'dist/workers/synthetic/main.js'), 'utf8')).toContain('from "../../generation/index.js"');
      const again = await runOk('npm', ['run', '--silent', 'build', '--', '--if-stale'], checkout);
      expect(again.stderr).not.toContain('compiled');
      expect(again.stderr).not.toContain('built the web player');
    },
    BUILD_TIMEOUT_MS,
  );

  it(
    'a fresh dist/ runs without reading the sources, and without a notice',
    async () => {
      // Sources that would fail, dated before the build: only dist/ can start.
      const cli = join(checkout, 'src', 'cli.ts');
      const original = readFileSync(cli);
      const before = statSync(join(checkout, 'dist', '.build-stamp')).mtime.getTime() / 1000 - 60;
      writeFileSync(cli, "throw new Error('the sources ran');\n");
      utimesSync(cli, before, before);
      try {
        const server = await serve(bin(), ['--port', '0'], checkout);
        expect(server.stderr()).toBe('');
        expect((await page(server.url)).status).toBe(200);
        expect(childCommands(server.child.pid as number).join('\n')).not.toContain('esbuild');
        await stop(server.child);
      } finally {
        writeFileSync(cli, original);
        utimesSync(cli, before, before);
      }
    },
    BUILD_TIMEOUT_MS,
  );

  it(
    'a source changed after the build runs the sources, naming the file',
    async () => {
      const routes = join(checkout, 'src', 'server', 'routes.ts');
      const touched = Date.now() / 1000 + 5;
      utimesSync(routes, touched, touched);
      try {
        const server = await serve(bin(), ['--port', '0'], checkout);
        expect(server.stderr()).toContain('livegen: dist/ is older than src/server/routes.ts; running the TypeScript sources through tsx');
        await stop(server.child);
      } finally {
        const before = statSync(join(checkout, 'dist', '.build-stamp')).mtime.getTime() / 1000 - 60;
        utimesSync(routes, before, before);
      }
    },
    BUILD_TIMEOUT_MS,
  );
});

describe('the package', () => {
  let files: string[] = [];

  beforeAll(async () => {
    // `prepare` (the build) already ran above; pack what it built.
    const packed = await runOk('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], checkout);
    const [info] = JSON.parse(packed.stdout) as { filename: string; files: { path: string }[] }[];
    files = (info?.files ?? []).map((f) => f.path);
    const target = join(consumer, 'node_modules', 'livegen');
    mkdirSync(target, { recursive: true });
    await runOk('tar', ['-xzf', join(work, info?.filename as string), '-C', target, '--strip-components=1'], work);
    writeFileSync(join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
    // The package's dependencies, and what the checks below use; never tsx.
    const pkg = JSON.parse(readFileSync(join(target, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
    for (const name of [...Object.keys(pkg.dependencies), '@types/node', '@types/ws', 'esbuild']) linkPackage(name);
  }, BUILD_TIMEOUT_MS);

  it('holds the CLI, the compiled entry points with their .d.ts, the compiled worker and the page; no sources, no tsx', () => {
    for (const file of [
      'package.json',
      'bin/livegen.js',
      'bin/start.js',
      'dist/cli.js',
      'dist/server/index.js',
      'dist/server/index.d.ts',
      'dist/client/index.js',
      'dist/client/index.d.ts',
      'dist/protocol/index.js',
      'dist/protocol/index.d.ts',
      'dist/server/opening-frame-thread.js',
      'dist/workers/synthetic/main.js',
      'web/dist/index.html',
      'web/dist/app.js',
    ]) {
      expect(files, file).toContain(file);
    }
    expect(files.filter((f) => /^(src|test|scripts|bench|examples)\//.test(f) || f.endsWith('.map'))).toEqual([]);
    const pkg = JSON.parse(readFileSync(join(consumer, 'node_modules', 'livegen', 'package.json'), 'utf8')) as Record<string, Record<string, string>>;
    expect(Object.keys(pkg.dependencies ?? {})).not.toContain('tsx');
    expect(existsSync(join(consumer, 'node_modules', 'tsx'))).toBe(false);
  });

  it('loads its three entry points in Node', async () => {
    const script = `
      const server = await import('livegen');
      const client = await import('livegen/client');
      const protocol = await import('livegen/protocol');
      console.log(JSON.stringify({
        createLivegenServer: typeof server.createLivegenServer,
        parseConfig: typeof server.parseConfig,
        loadConfigFile: typeof server.loadConfigFile,
        port: server.parseConfig({}).server.port,
        LivegenClient: typeof client.LivegenClient,
        LivegenError: typeof client.LivegenError,
        ClientMessageSchema: typeof protocol.ClientMessageSchema?.safeParse,
        errorCode: protocol.ErrorCode.WORKER_FAILED,
      }));`;
    const ran = await runOk(process.execPath, ['--input-type=module', '-e', script], consumer);
    expect(JSON.parse(ran.stdout)).toEqual({
      createLivegenServer: 'function',
      parseConfig: 'function',
      loadConfigFile: 'function',
      port: 8000,
      LivegenClient: 'function',
      LivegenError: 'function',
      ClientMessageSchema: 'function',
      errorCode: 'worker_failed',
    });
  });

  it(
    'type-checks a Node project on all three entry points, and a browser project (no Node types) on livegen/client',
    async () => {
      const dir = join(consumer, 'typecheck');
      mkdirSync(dir, { recursive: true });
      writeFileSync(
        join(dir, 'node-app.ts'),
        [
          "import { createLivegenServer, loadConfigFile, parseConfig, type LivegenServer, type ServeConfig } from 'livegen';",
          "import { LivegenClient, LivegenError, type MediaChunk } from 'livegen/client';",
          "import { ClientMessageSchema, ErrorCode, type ServerMessage } from 'livegen/protocol';",
          "import WebSocket from 'ws';",
          '',
          'const config: ServeConfig = parseConfig({ server: { port: 0 } });',
          'const server: LivegenServer = createLivegenServer(config);',
          "export const fromFile: () => ServeConfig = () => loadConfigFile('serve.yaml');",
          '// @ts-expect-error the port is a number',
          'export const port: string = config.server.port;',
          'export async function watch(): Promise<MediaChunk[]> {',
          '  const client = await LivegenClient.connect(await server.listen(), { WebSocket });',
          '  const media: MediaChunk[] = [];',
          "  client.on('media', (chunk) => media.push(chunk));",
          "  client.on('error', (e: LivegenError) => console.error(e.code, e.retryable));",
          "  client.init({ curated_prompts: ['a fox'] });",
          "  // @ts-expect-error curated_prompts is a list",
          "  client.init({ curated_prompts: 'a fox' });",
          "  client.requestSegment('a fox', { seed: 7 });",
          "  await client.next('ltx2_segment_complete');",
          '  return media;',
          '}',
          "export const parsed = ClientMessageSchema.safeParse({ type: 'snapshot_state' }).success;",
          'export const code: ErrorCode = ErrorCode.INTERNAL_ERROR;',
          "export const isQueue = (m: ServerMessage): boolean => m.type === 'queue_status' && m.position >= 0;",
        ].join('\n'),
      );
      writeFileSync(
        join(dir, 'browser-app.ts'),
        [
          "import { LivegenClient, type MediaChunk } from 'livegen/client';",
          '',
          'export async function watch(video: HTMLVideoElement): Promise<void> {',
          '  const client = await LivegenClient.connect(location.href);',
          "  client.on('media', (chunk: MediaChunk) => console.log(chunk.mime, chunk.data.byteLength, video.currentTime));",
          "  client.on('step_complete', (m) => console.log(m.step, m.total_steps));",
          '  // @ts-expect-error segment_idx is a number',
          "  client.on('ltx2_segment_complete', (m) => m.segment_idx.toUpperCase());",
          '  client.init({});',
          "  client.requestSegment('a lighthouse in a storm');",
          '}',
        ].join('\n'),
      );
      const common = { strict: true, noEmit: true, skipLibCheck: false, target: 'ES2022', isolatedModules: true, verbatimModuleSyntax: true };
      writeFileSync(
        join(dir, 'tsconfig.node.json'),
        JSON.stringify({ compilerOptions: { ...common, module: 'NodeNext', moduleResolution: 'NodeNext', lib: ['ES2023'], types: ['node'] }, files: ['node-app.ts'] }),
      );
      writeFileSync(
        join(dir, 'tsconfig.browser.json'),
        JSON.stringify({ compilerOptions: { ...common, module: 'ESNext', moduleResolution: 'Bundler', lib: ['ES2023', 'DOM', 'DOM.Iterable'], types: [] }, files: ['browser-app.ts'] }),
      );
      // skipLibCheck is off: livegen's own .d.ts are checked too (zod's and pino's with them).
      for (const project of ['tsconfig.node.json', 'tsconfig.browser.json']) {
        const ran = await run(process.execPath, [TSC, '-p', project], dir);
        expect(`${ran.stdout}${ran.stderr}`, project).toBe('');
        expect(ran.code, project).toBe(0);
      }
    },
    BUILD_TIMEOUT_MS,
  );

  it('bundles livegen/client for the browser with no node: module', async () => {
    const result = await esbuild({
      stdin: { contents: "export { LivegenClient } from 'livegen/client';", resolveDir: consumer, loader: 'js' },
      bundle: true,
      write: false,
      format: 'esm',
      platform: 'browser',
      logLevel: 'silent',
      metafile: true,
    });
    const inputs = Object.keys(result.metafile.inputs);
    expect(inputs.some((i) => i.includes('livegen/dist/client/client.js'))).toBe(true);
    expect(inputs.filter((i) => i.startsWith('node:') || i.includes('livegen/dist/server/'))).toEqual([]);
    expect(result.outputFiles[0]?.text).not.toMatch(/from\s*"node:/);
  });

  describe('its CLI and the example', () => {
    let server: Served;

    beforeAll(async () => {
      const config = join(consumer, 'serve.yaml');
      writeFileSync(config, 'server:\n  port: 0\ngenerator:\n  kind: worker\n  synthetic:\n    pace: fast\n');
      server = await serve(join(consumer, 'node_modules', 'livegen', 'bin', 'livegen.js'), ['--config', config], consumer);
    }, START_TIMEOUT_MS);

    /** Runs a module in the consumer that streams one segment and prints what arrived. */
    async function streamOne(importLine: string, call: string): Promise<{ chunks: number; bytes: number; generationMs: number }> {
      const script = join(consumer, `stream-${Date.now()}.mjs`);
      writeFileSync(script, `import WebSocket from 'ws';\n${importLine}\nconst got = await ${call};\nconsole.log(JSON.stringify(got));\nprocess.exit(0);\n`);
      const ran = await runOk(process.execPath, [script], consumer, 60_000);
      return JSON.parse(ran.stdout.trim().split('\n').at(-1) as string) as { chunks: number; bytes: number; generationMs: number };
    }

    it(
      'runs compiled: serves the page, streams from a compiled synthetic worker process, parses a large opening frame in its thread',
      async () => {
        expect(server.stderr()).toBe('');
        const root = await page(server.url);
        expect(root.status).toBe(200);
        expect(root.type).toContain('text/html');
        // The worker process is the compiled program, started by node with no loader.
        let ready = false;
        for (let i = 0; i < 100 && !ready; i++) {
          ready = (await fetch(`${server.url}/readyz`)).status === 200;
          if (!ready) await new Promise((r) => setTimeout(r, 100));
        }
        expect(ready).toBe(true);
        const workers = childCommands(server.child.pid as number).filter((c) => c.includes('synthetic'));
        expect(workers).toEqual([`${process.execPath} ${join(consumer, 'node_modules', 'livegen', 'dist', 'workers', 'synthetic', 'main.js')}`]);

        // 400 prompts of 1 KiB: an opening frame over the 256 KiB parsed on the event loop.
        const got = await streamOne(
          "import { LivegenClient } from 'livegen/client';",
          `(async () => {
            const client = await LivegenClient.connect(${JSON.stringify(server.url)}, { WebSocket });
            let chunks = 0, bytes = 0;
            client.on('media', (c) => { chunks++; bytes += c.data.byteLength; });
            client.init({ curated_prompts: Array.from({ length: 400 }, (_, i) => String(i).padEnd(1024, '.')) });
            client.requestSegment('a red fox in snow');
            const done = await client.next('ltx2_segment_complete', { timeoutMs: 45000 });
            await client.leave();
            return { chunks, bytes, generationMs: done.generation_time_ms };
          })()`,
        );
        expect(got.chunks).toBeGreaterThan(1);
        expect(got.bytes).toBeGreaterThan(1000);
      },
      90_000,
    );

    it(
      'the example bundles from the package, is served by livegen, and its bundled code streams a segment',
      async () => {
        const example = join(consumer, 'example');
        cpSync(join(checkout, 'examples', 'browser-client'), example, { recursive: true });
        const out = join(consumer, 'example-out');
        await runOk(process.execPath, [join(example, 'build.mjs'), out], consumer, 60_000);
        const bundle = readFileSync(join(out, 'app.js'), 'utf8');
        expect(bundle).not.toMatch(/from\s*"node:|require\("node:/);

        // The bundle alone (SDK and zod inside) streams a segment; Node 20 lends it `ws`.
        const got = await streamOne(
          `import { watchOneSegment } from ${JSON.stringify(join(out, 'app.js'))};`,
          `watchOneSegment(${JSON.stringify(server.url)}, { prompt: 'a lighthouse in a storm', WebSocket })`,
        );
        expect(got.chunks).toBeGreaterThan(1);
        expect(got.generationMs).toBeGreaterThan(0);

        // serve.mjs: livegen (the package's main entry) serving the example page.
        const child = spawn(process.execPath, [join(example, 'serve.mjs'), '--port', '0'], { cwd: consumer, env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
        children.push(child);
        const url = await new Promise<string>((resolve, reject) => {
          let out = '';
          let err = '';
          child.stderr.on('data', (d: Buffer) => (err += d.toString('utf8')));
          child.stdout.on('data', (d: Buffer) => {
            out += d.toString('utf8');
            const match = /livegen example on (http:\/\/\S+)\//.exec(out);
            if (match) resolve(match[1] as string);
          });
          child.once('exit', (code) => reject(new Error(`serve.mjs exited ${code}: ${err}`)));
        });
        const root = await page(url);
        expect(root.status).toBe(200);
        expect(root.body).toContain('<script type="module" src="./app.js">');
        const app = await fetch(`${url}/app.js`);
        expect(app.status).toBe(200);
        expect(app.headers.get('content-type')).toContain('text/javascript');
        await stop(child);
      },
      120_000,
    );
  });
});
