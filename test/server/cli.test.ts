import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { freePort } from '../support/net.js';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { chooseEntry } from '../../bin/start.js';
import { TestClient } from './harness.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = join(ROOT, 'bin', 'livegen.js');
/**
 * Bound on start-up: dist/ when built and fresh, else the sources through tsx; the first
 * `serve` of a checkout without web/dist builds the page first (two shared cores).
 */
const START_TIMEOUT_MS = 15_000;

interface Run {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const running: Run[] = [];
const tmp = mkdtempSync(join(tmpdir(), 'livegen-cli-test-'));

afterEach(async () => {
  const runs = running.splice(0);
  for (const run of runs) {
    if (run.child.exitCode === null && run.child.signalCode === null) run.child.kill('SIGKILL');
  }
  await Promise.all(runs.map((run) => run.exited));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Spawns `node bin/livegen.js ...args` with no LIVEGEN_* variables but those in `env`. */
function livegen(args: string[], env: Record<string, string> = {}, cwd = ROOT): Run {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('LIVEGEN_')));
  const child = spawn(process.execPath, [BIN, ...args], { cwd, env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString('utf8')));
  child.stderr?.on('data', (d: Buffer) => (err += d.toString('utf8')));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('close', (code, signal) => resolve({ code, signal }));
  });
  const run = { child, stdout: () => out, stderr: () => err, exited };
  running.push(run);
  return run;
}

function listeningUrl(stdout: string): string | undefined {
  for (const line of stdout.split('\n')) {
    if (!line.trim().startsWith('{')) continue;
    try {
      const entry = JSON.parse(line) as { msg?: unknown; url?: unknown };
      const match = typeof entry.msg === 'string' ? /^livegen listening on (http:\/\/\S+)$/.exec(entry.msg) : null;
      if (match) return match[1];
    } catch {
      // not a log line
    }
  }
  return undefined;
}

/** Resolves with the URL of the start-up log line; rejects if the process exits first or it takes too long. */
function waitForListening(run: Run): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const done = (fn: () => void) => {
      clearTimeout(timer);
      run.child.stdout?.off('data', check);
      fn();
    };
    const check = () => {
      const url = listeningUrl(run.stdout());
      if (url) done(() => resolve(url));
    };
    const timer = setTimeout(
      () => done(() => reject(new Error(`no listening line within ${START_TIMEOUT_MS} ms; stdout: ${run.stdout()} stderr: ${run.stderr()}`))),
      START_TIMEOUT_MS,
    );
    run.child.stdout?.on('data', check);
    void run.exited.then(({ code, signal }) => {
      // Let the last buffered output through before deciding.
      setImmediate(() => {
        check();
        done(() => reject(new Error(`exited (code ${code}, signal ${signal}) before listening; stderr: ${run.stderr()}`)));
      });
    });
    check();
  });
}

/** Waits for the process to exit (bounded). A server that starts instead fails the wait. */
async function expectExit(run: Run): Promise<{ code: number | null; stderr: string }> {
  const outcome = await Promise.race([
    run.exited.then((r) => ({ kind: 'exited' as const, ...r })),
    waitForListening(run).then(
      (url) => ({ kind: 'listening' as const, url }),
      () => new Promise<never>(() => {}),
    ),
    new Promise<{ kind: 'timeout' }>((resolve) => setTimeout(() => resolve({ kind: 'timeout' }), START_TIMEOUT_MS).unref()),
  ]);
  if (outcome.kind === 'listening') throw new Error(`expected the server to refuse to start, but it listens on ${outcome.url}`);
  if (outcome.kind === 'timeout') throw new Error(`process neither exited nor listened within ${START_TIMEOUT_MS} ms`);
  return { code: outcome.code, stderr: run.stderr() };
}

function writeConfig(name: string, text: string): string {
  const path = join(tmp, name);
  writeFileSync(path, text);
  return path;
}

describe('livegen serve', () => {
  it('logs its URL, answers /healthz and exits 0 on SIGTERM', async () => {
    const run = livegen(['serve', '--port', '0', '--log-level', 'info']);
    const url = await waitForListening(run);
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const line = run
      .stdout()
      .split('\n')
      .find((l) => l.includes('livegen listening on'));
    expect(JSON.parse(line as string)).toMatchObject({ url, ws: `${url.replace('http', 'ws')}/v1/stream`, workers: 1 });

    const res = await fetch(`${url}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: 'ok', service: 'livegen' });

    run.child.kill('SIGTERM');
    expect(await run.exited).toEqual({ code: 0, signal: null });
    expect(run.stdout()).toContain('shutting down');
  });

  it('reads its system prompts and blocklist again on SIGHUP, and shows them in /status', async () => {
    const promptDir = join(tmp, 'system-prompts');
    mkdirSync(promptDir, { recursive: true });
    writeFileSync(join(promptDir, 'enhance.txt'), 'first');
    const blocklist = join(tmp, 'blocklist.txt');
    writeFileSync(blocklist, 'owl\n');
    const config = writeConfig(
      'sighup.yaml',
      `streaming:\n  prompt:\n    system_prompt_dir: ${promptDir}\n  safety:\n    enabled: true\n    blocklist_path: ${blocklist}\n`,
    );
    const run = livegen(['serve', '--port', '0', '--log-level', 'info', '--config', config]);
    const url = await waitForListening(run);
    const status = async (): Promise<{ prompts: { safety: { blocklist: { terms: number } } } }> => (await fetch(`${url}/status`)).json() as never;
    expect((await status()).prompts.safety.blocklist.terms).toBe(1);
    writeFileSync(blocklist, 'owl\nbat\nfox\n');
    run.child.kill('SIGHUP');
    await expect.poll(async () => (await status()).prompts.safety.blocklist.terms, { timeout: 10_000 }).toBe(3);
    await expect.poll(() => run.stdout(), { timeout: 10_000 }).toContain('prompts reloaded (SIGHUP)');
    expect(run.child.exitCode).toBeNull();
  });

  it('honours LIVEGEN_PORT', async () => {
    const port = await freePort();
    const run = livegen(['serve', '--log-level', 'info'], { LIVEGEN_PORT: String(port) });
    const url = await waitForListening(run);
    expect(url).toBe(`http://127.0.0.1:${port}`);
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
  });

  it('takes flags over env over the file', async () => {
    const port = await freePort();
    // The file's port and workers lose to env and flag; its other fields stay.
    const config = writeConfig('precedence.yaml', 'server:\n  port: 1\npool:\n  workers: 3\nstreaming:\n  stream_mode: legacy_jpeg\n');
    const run = livegen(['serve', '--config', config, '--workers', '2'], { LIVEGEN_PORT: String(port), LIVEGEN_LOG_LEVEL: 'info' });
    const url = await waitForListening(run);
    expect(url).toBe(`http://127.0.0.1:${port}`);
    const status = (await (await fetch(`${url}/status`)).json()) as { total_gpus: number };
    expect(status.total_gpus).toBe(2);
    const health = (await (await fetch(`${url}/health`)).json()) as { stream_mode: string };
    expect(health.stream_mode).toBe('legacy_jpeg');
  });

  it('reads the file named by LIVEGEN_CONFIG', async () => {
    const config = writeConfig('env-config.yaml', 'server:\n  port: 0\npool:\n  workers: 2\nlogging:\n  level: info\n');
    const run = livegen(['serve'], { LIVEGEN_CONFIG: config });
    const url = await waitForListening(run);
    const status = (await (await fetch(`${url}/status`)).json()) as { total_gpus: number };
    expect(status.total_gpus).toBe(2);
  });
});

describe('livegen serve: what runs and what it serves', () => {
  it('serves the player page at / (building it first when the checkout has none)', async () => {
    const run = livegen(['serve', '--port', '0', '--log-level', 'info']);
    const url = await waitForListening(run);
    const res = await fetch(`${url}/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/html');
    expect(await res.text()).toContain('app.js');
    expect((await fetch(`${url}/app.js`)).status).toBe(200);
  });

  // The rule itself is tested on made-up trees (test/package/start-rule.test.ts) and on a
  // copy of the checkout (test/package/package.test.ts); here: this checkout says what it runs.
  it('says on stderr when it runs the sources because dist/ is missing or stale, and nothing when dist/ is fresh', async () => {
    const entry = chooseEntry(ROOT, {});
    const run = livegen(['serve', '--port', '0', '--log-level', 'info']);
    await waitForListening(run);
    if (entry.notice) expect(run.stderr()).toContain(`livegen: ${entry.notice}`);
    else expect(run.stderr()).not.toContain('running the TypeScript sources');
  });

  it('runs the sources without a notice when LIVEGEN_DEV=1', async () => {
    const run = livegen(['serve', '--port', '0', '--log-level', 'info'], { LIVEGEN_DEV: '1' });
    const url = await waitForListening(run);
    expect(run.stderr()).not.toContain('running the TypeScript sources');
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
  });

  it('generates from the sources when started from another directory (its threads find the TypeScript loader)', async () => {
    const run = livegen(['serve', '--port', '0', '--log-level', 'info'], { LIVEGEN_DEV: '1' }, tmp);
    const url = await waitForListening(run);
    const client = await TestClient.init(`${url.replace(/^http/, 'ws')}/v1/stream`);
    client.send({ type: 'segment_prompt_source', prompt: 'from elsewhere' });
    await client.waitFor('ltx2_segment_complete');
    expect(client.ofType('error')).toEqual([]);
    client.close();
  });
});

describe('livegen serve refuses a bad start', () => {
  it('exits 2 naming an unknown field of the --config file', async () => {
    const config = writeConfig('unknown.yaml', 'server:\n  port: 0\nstreaming:\n  bogus: 1\n');
    const { code, stderr } = await expectExit(livegen(['serve', '--config', config]));
    expect(code).toBe(2);
    expect(stderr).toContain(`invalid config file ${config}: streaming.bogus: unknown field`);
  });

  it('exits 2 naming a missing --config file', async () => {
    const config = join(tmp, 'does-not-exist.yaml');
    const { code, stderr } = await expectExit(livegen(['serve', '--config', config, '--port', '0']));
    expect(code).toBe(2);
    expect(stderr).toContain(`cannot read config file ${config}`);
  });

  it('exits 2 naming an invalid flag value (--log-level)', async () => {
    const { code, stderr } = await expectExit(livegen(['serve', '--port', '0', '--log-level', 'loud']));
    expect(code).toBe(2);
    expect(stderr).toContain('logging.level: expected one of');
  });

  it('fails with a clear message on --port abc', async () => {
    const { code, stderr } = await expectExit(livegen(['serve', '--port', 'abc']));
    expect(code).not.toBe(0);
    expect(stderr).toContain("argument 'abc' is invalid");
    expect(stderr).toContain('--port must be an integer');
  });

  it('exits 2 naming LIVEGEN_API_KEYS, not the key, when a key from the environment is shorter than 16 characters', async () => {
    const { code, stderr } = await expectExit(livegen(['serve', '--port', '0'], { LIVEGEN_API_KEYS: 'a-long-enough-key-0001,abc' }));
    expect(code).toBe(2);
    expect(stderr).toContain('LIVEGEN_API_KEYS');
    expect(stderr).toContain('entry 2');
    expect(stderr).not.toContain('abc');
  });

  it('exits 2 naming LIVEGEN_PORT on LIVEGEN_PORT=abc', async () => {
    const { code, stderr } = await expectExit(livegen(['serve'], { LIVEGEN_PORT: 'abc' }));
    expect(code).toBe(2);
    expect(stderr).toContain('LIVEGEN_PORT');
  });

  // A NaN port would render as `got null`: the message must show what was given.
  it('names the bad LIVEGEN_PORT value in the message', async () => {
    const { stderr } = await expectExit(livegen(['serve'], { LIVEGEN_PORT: 'abc' }));
    expect(stderr).not.toContain('got null');
    expect(stderr).toMatch(/abc|LIVEGEN_PORT/);
  });

  // Number('') is 0: an empty --port must fail, not listen on a random port.
  it('refuses an empty --port', async () => {
    const { code } = await expectExit(livegen(['serve', '--port', '', '--log-level', 'info']));
    expect(code).not.toBe(0);
  });

  // The CLI merges its flag/env patch (objects for server, pool, logging, generator) over
  // the file; a file section that is not a mapping must still fail validation.
  it('exits 2 when a --config section is not a mapping', async () => {
    const config = writeConfig('scalar-section.yaml', 'server: 8000\n');
    const { code, stderr } = await expectExit(livegen(['serve', '--config', config, '--port', '0', '--log-level', 'info']));
    expect(code).toBe(2);
    expect(stderr).toContain('server: expected object');
  });

  // mergeConfigInput would turn a scalar or list into {}: the CLI must refuse it like loadConfigFile.
  it('exits 2 when the --config file is not a mapping at the top level', async () => {
    const config = writeConfig('scalar-top.yaml', 'just some text\n');
    const { code, stderr } = await expectExit(livegen(['serve', '--config', config, '--port', '0', '--log-level', 'info']));
    expect(code).toBe(2);
    expect(stderr).toContain(config);
  });
});
