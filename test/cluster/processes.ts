/**
 * Real cluster processes for tests: `livegen serve` replicas and `livegen router`s started
 * through the CLI (bin/livegen.js) with a config file each, on free loopback ports.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { freePort } from '../support/net.js';

const CLI = fileURLToPath(new URL('../../bin/livegen.js', import.meta.url));

export interface ClusterProcess {
  readonly name: string;
  readonly url: string;
  readonly wsUrl: string;
  readonly child: ChildProcess;
  /** stderr and stdout so far (for failure messages). */
  output(): string;
  /** Resolves with the exit code (or signal) once the process ended. */
  readonly exited: Promise<number | string>;
  /** Sends `signal` and waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<number | string>;
}

let dir: string | undefined;

async function configDir(): Promise<string> {
  dir ??= await mkdtemp(join(tmpdir(), 'livegen-cluster-'));
  return dir;
}

export async function removeConfigs(): Promise<void> {
  if (dir) await rm(dir, { recursive: true, force: true });
  dir = undefined;
}

/** Starts `livegen <command>` with `config` (the port is chosen here) and waits for `/healthz`. */
export async function startProcess(name: string, command: 'serve' | 'router', config: Record<string, unknown>, port?: number): Promise<ClusterProcess> {
  const chosen = port ?? (await freePort());
  const file = join(await configDir(), `${name}.yaml`);
  const server = { host: '127.0.0.1', port: chosen, ...((config.server as Record<string, unknown> | undefined) ?? {}) };
  await writeFile(file, stringify({ ...config, server }));
  const child = spawn(process.execPath, [CLI, command, '--config', file], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LIVEGEN_DEV: process.env.LIVEGEN_DEV } });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out = (out + d.toString('utf8')).slice(-20_000)));
  child.stderr?.on('data', (d: Buffer) => (out = (out + d.toString('utf8')).slice(-20_000)));
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown')));
  const url = `http://127.0.0.1:${chosen}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${name} exited at start: ${out}`);
    try {
      const res = await fetch(`${url}/healthz`);
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`${name} did not start: ${out}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    name,
    url,
    wsUrl: `${url.replace(/^http/, 'ws')}/v1/stream`,
    child,
    output: () => out,
    exited,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** Polls `check` until it returns a value (not undefined), failing after `timeoutMs`. */
export async function waitUntil<T>(check: () => Promise<T | undefined> | T | undefined, what: string, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? ` (last error: ${String(last)})` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
