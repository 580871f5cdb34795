/**
 * 9. Side by side with FastVideo's own streaming server (its mock generator), same probe,
 * same machine: start-up time, idle RSS, the WebSocket handshake, and the
 * `snapshot_state` round trip of a session that holds the only worker.
 *
 * FastVideo is not part of this repository. `LIVEGEN_BENCH_FASTVIDEO` names the command
 * that starts its mock server, with `{port}` where the port goes, e.g.
 *
 *   LIVEGEN_BENCH_FASTVIDEO='env PYTHONPATH=/path/to/FastVideo python -m fastvideo.entrypoints.streaming.mock_server --port {port}'
 *
 * Without it the benchmark reports that it was skipped. livegen runs as users run it:
 * `node bin/livegen.js serve` (compiled `dist/` once built). Both servers start on a free
 * loopback port; "listening" is the first successful `GET /healthz`, which both serve.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { freePort, stopChild } from './lib/child.js';
import { BenchClient, sleep, snapshotRoundTrips } from './lib/client.js';
import { syntheticContinuation } from './lib/continuation.js';
import { info, type Benchmark, type Figure } from './lib/report.js';
import { ratio, round, summarize, tailOf, type Summary, type Tail } from './lib/stats.js';
import { descendants, handshake, vmRssKiB } from './startup.js';

const BIN = fileURLToPath(new URL('../bin/livegen.js', import.meta.url));

interface Target {
  name: 'livegen' | 'fastvideo';
  command: string[];
  /** The state the probe session starts from (each server checks its own kind). */
  state: { kind: string; payload: Record<string, unknown> };
}

interface Measured {
  name: string;
  startMs: number;
  rssMiB: number;
  handshakeMs: Summary;
  snapshotMs: Tail;
}

async function waitForHealth(url: string, child: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`server exited with code ${child.exitCode} before it answered`);
    try {
      const res = await fetch(`${url}/healthz`);
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    await sleep(5);
  }
  throw new Error(`no answer at ${url}/healthz within ${timeoutMs} ms`);
}

async function measure(target: Target, handshakes: number, pings: number, log: (line: string) => void): Promise<Measured> {
  const port = await freePort();
  const [command, ...args] = target.command.map((part) => part.replaceAll('{port}', String(port)));
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('LIVEGEN_')));
  const t0 = performance.now();
  const child = spawn(command as string, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString('utf8')).slice(-4000)));
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitForHealth(url, child, 120_000).catch((err: unknown) => {
      throw new Error(`${target.name}: ${(err as Error).message}; stderr: ${stderr}`);
    });
    const startMs = performance.now() - t0;
    await sleep(2000);
    const pid = child.pid as number;
    // The whole tree: a launcher (`env`, a shell) and the server under it.
    const rssKiB = [pid, ...descendants(pid)].reduce((sum, p) => sum + vmRssKiB(p), 0);

    const wsUrl = `ws://127.0.0.1:${port}/v1/stream`;
    for (let i = 0; i < 10; i++) await handshake(wsUrl);
    const handshakeSamples: number[] = [];
    for (let i = 0; i < handshakes; i++) handshakeSamples.push(await handshake(wsUrl));

    const probe = await BenchClient.connect(wsUrl);
    try {
      const assigned = probe.next('gpu_assigned', 30_000);
      probe.send({ type: 'session_init_v2', client_id: 'bench-compare', continuation_state: target.state });
      await assigned;
      await snapshotRoundTrips(probe, 20); // warm-up
      const roundTrips = await snapshotRoundTrips(probe, pings);
      const m: Measured = {
        name: target.name,
        startMs: round(startMs),
        rssMiB: round(rssKiB / 1024),
        handshakeMs: summarize(handshakeSamples),
        snapshotMs: tailOf(roundTrips),
      };
      log(
        `  ${m.name}: listening after ${m.startMs} ms, idle RSS ${m.rssMiB} MiB; handshake p50 ${round(m.handshakeMs.p50)} / p99 ${round(m.handshakeMs.p99)} ms; ` +
          `snapshot p50 ${m.snapshotMs.p50} / p99 ${m.snapshotMs.p99} / p99.9 ${m.snapshotMs.p999} ms`,
      );
      return m;
    } finally {
      probe.terminate();
    }
  } finally {
    await stopChild(child);
  }
}

export const fastvideo: Benchmark = {
  name: 'fastvideo',
  title: "side by side with FastVideo's streaming server (mock generator): start-up, idle RSS, handshake, snapshot round trip",
  async run({ quick, log }) {
    const command = process.env.LIVEGEN_BENCH_FASTVIDEO;
    if (!command) {
      log('  skipped: set LIVEGEN_BENCH_FASTVIDEO to the command that starts FastVideo\'s mock server ({port} for the port)');
      return { figures: [info('skipped (LIVEGEN_BENCH_FASTVIDEO not set)', Number.NaN, '')], details: {} };
    }
    const handshakes = quick ? 30 : 200;
    const pings = quick ? 200 : 2000;
    const rounds = quick ? 1 : 3;
    const targets: Target[] = [
      { name: 'livegen', command: [process.execPath, BIN, 'serve', '--port', '{port}', '--log-level', 'warn'], state: syntheticContinuation() },
      {
        name: 'fastvideo',
        // `exec`: the server replaces the shell, so the signal that stops it reaches it.
        command: ['sh', '-c', `exec ${command}`],
        state: { kind: 'ltx2.v1', payload: { schema_version: 1, segment_index: 0, source_prompt: 'bench' } },
      },
    ];
    // Alternate the two servers, so drift in the machine's load falls on both.
    const runs: Record<string, Measured[]> = { livegen: [], fastvideo: [] };
    for (let r = 0; r < rounds; r++) {
      for (const target of targets) runs[target.name]?.push(await measure(target, handshakes, pings, log));
    }
    const median = (values: number[]): number => {
      const sorted = [...values].sort((a, b) => a - b);
      return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
    };
    const pick = (name: string, f: (m: Measured) => number): number => median((runs[name] ?? []).map(f));
    const figures: Figure[] = [];
    const rows: [string, string, (m: Measured) => number][] = [
      ['start to listening', 'ms', (m) => m.startMs],
      ['idle RSS 2 s after start', 'MiB', (m) => m.rssMiB],
      ['handshake p50', 'ms', (m) => m.handshakeMs.p50],
      ['handshake p99', 'ms', (m) => m.handshakeMs.p99],
      ['snapshot round trip p50', 'ms', (m) => m.snapshotMs.p50],
      ['snapshot round trip p99', 'ms', (m) => m.snapshotMs.p99],
      ['snapshot round trip p99.9', 'ms', (m) => m.snapshotMs.p999],
    ];
    for (const [label, unit, f] of rows) {
      const ours = pick('livegen', f);
      const theirs = pick('fastvideo', f);
      figures.push(info(`${label}: livegen`, Math.round(ours * 100) / 100, unit, `median of ${rounds} starts`));
      figures.push(info(`${label}: FastVideo`, Math.round(theirs * 100) / 100, unit));
      figures.push(info(`${label}: livegen / FastVideo`, ratio(ours, theirs), 'x'));
    }
    return { figures, details: runs };
  },
};
