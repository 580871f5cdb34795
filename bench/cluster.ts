/**
 * What a cluster router costs and what failover takes: a private redis-server, two
 * replicas (`livegen serve` with a cluster section, one synthetic worker each) and one
 * `livegen router`, all compiled processes on loopback. The same probes run straight at a
 * replica and through the router, alternating, so the ratios come from one run:
 *
 * - session start: connect + `session_init_v2` → `gpu_assigned` (sequential sessions);
 * - `snapshot_state` round trips in an active session;
 * - segment request → its first media frame.
 *
 * Failover: a session on the router streams, the replica serving it is killed (SIGKILL)
 * mid-segment; kill → `session_migrated` and kill → the next media frame.
 *
 * `npx tsx bench/cluster.ts [--quick]` prints the figures; `cluster` is the Benchmark for bench/run.ts.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { stringify } from 'yaml';
import { freePort, stopChild } from './lib/child.js';
import { BenchClient, sleep, snapshotRoundTrips } from './lib/client.js';
import { info, type Benchmark, type Figure } from './lib/report.js';
import { ratio, tailOf, type Tail } from './lib/stats.js';

const CLI = fileURLToPath(new URL('../bin/livegen.js', import.meta.url));

interface Proc {
  child: ChildProcess;
  url: string;
  ws: string;
}

async function startRedis(dir: string): Promise<{ child: ChildProcess; url: string }> {
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  const url = `redis://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    const ping = spawnSync('redis-cli', ['-p', String(port), 'ping'], { encoding: 'utf8' });
    if (ping.stdout?.trim() === 'PONG') return { child, url };
    await sleep(50);
  }
  child.kill('SIGKILL');
  throw new Error('redis-server did not start');
}

async function startLivegen(dir: string, name: string, command: 'serve' | 'router', config: Record<string, unknown>): Promise<Proc> {
  const port = await freePort();
  const file = join(dir, `${name}.yaml`);
  writeFileSync(file, stringify({ ...config, server: { host: '127.0.0.1', port, shutdown_grace_seconds: 5 } }));
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('LIVEGEN_')));
  const child = spawn(process.execPath, [CLI, command, '--config', file], { stdio: 'ignore', env });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 300; i++) {
    try {
      if ((await fetch(`${url}/readyz`)).ok) return { child, url, ws: `ws://127.0.0.1:${port}/v1/stream` };
    } catch {
      // not up yet
    }
    if (child.exitCode !== null) break;
    await sleep(100);
  }
  child.kill('SIGKILL');
  throw new Error(`${name} did not become ready`);
}

interface Probe {
  startMs: number[];
  snapshotMs: number[];
  firstMediaMs: number[];
}

/** One round of probes against `ws`: sessions started one after another, then one session's round trips. */
async function probe(ws: string, sessions: number, snapshots: number, out: Probe): Promise<void> {
  for (let i = 0; i < sessions; i++) {
    const t0 = performance.now();
    const c = await BenchClient.connect(ws);
    const assigned = c.next('gpu_assigned');
    c.send({ type: 'session_init_v2' });
    out.startMs.push((await assigned).at - t0);
    c.close();
    await c.closed;
  }
  const c = await BenchClient.connect(ws);
  const assigned = c.next('gpu_assigned');
  c.send({ type: 'session_init_v2' });
  await assigned;
  let firstMedia: ((at: number) => void) | undefined;
  c.onBinary = (_data, at) => {
    firstMedia?.(at);
    firstMedia = undefined;
  };
  for (let i = 0; i < 3; i++) {
    const media = new Promise<number>((resolve) => (firstMedia = resolve));
    const done = c.next('ltx2_segment_complete');
    const sent = performance.now();
    c.send({ type: 'segment_prompt_source', prompt: `probe ${i}` });
    out.firstMediaMs.push((await media) - sent);
    await done;
  }
  out.snapshotMs.push(...(await snapshotRoundTrips(c, snapshots)));
  c.close();
  await c.closed;
}

async function waitFree(router: Proc, n: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const s = (await (await fetch(`${router.url}/status`)).json()) as { replicas: { available: number }[] };
    if (s.replicas.filter((r) => r.available > 0).length >= n) return;
    await sleep(50);
  }
  throw new Error(`fewer than ${n} free replicas`);
}

export interface ClusterMeasure {
  direct: Record<'start' | 'snapshot' | 'firstMedia', Tail>;
  routed: Record<'start' | 'snapshot' | 'firstMedia', Tail>;
  failover: { toNoticeMs: Tail; toMediaMs: Tail };
}

export async function measureCluster(quick: boolean, log: (line: string) => void = console.log): Promise<ClusterMeasure> {
  const dir = mkdtempSync(join(tmpdir(), 'livegen-bench-cluster-'));
  const redis = await startRedis(dir);
  const base = (id: string) => ({
    default_request: { sampling: { width: 256, height: 144, fps: 24, num_frames: 24, num_inference_steps: 2 } },
    generator: { synthetic: { pace: 'realtime', step_ms: 10 } },
    streaming: { generation_segment_cap: 1000, queue_depth_update_ms: 0 },
    logging: { level: 'warn' },
    cluster: { redis_url: redis.url, id, namespace: 'bench', heartbeat_ms: 200, presence_ttl_ms: 1000 },
  });
  const replicas = new Map<string, Proc>();
  const procs: ChildProcess[] = [redis.child];
  try {
    for (const id of ['r1', 'r2']) {
      const p = await startLivegen(dir, id, 'serve', { ...base(id), pool: { workers: 1 } });
      replicas.set(id, p);
      procs.push(p.child);
    }
    const router = await startLivegen(dir, 'router', 'router', base('router'));
    procs.push(router.child);
    await waitFree(router, 2);

    const rounds = quick ? 1 : 3;
    const sessions = quick ? 5 : 30;
    const snapshots = quick ? 30 : 300;
    const direct: Probe = { startMs: [], snapshotMs: [], firstMediaMs: [] };
    const routed: Probe = { startMs: [], snapshotMs: [], firstMediaMs: [] };
    for (let round = 0; round < rounds; round++) {
      log(`   round ${round + 1}/${rounds}: direct, then through the router`);
      await probe((replicas.get('r1') as Proc).ws, sessions, snapshots, direct);
      await waitFree(router, 2);
      await probe(router.ws, sessions, snapshots, routed);
      await waitFree(router, 2);
    }

    const toNotice: number[] = [];
    const toMedia: number[] = [];
    for (let trial = 0; trial < (quick ? 1 : 5); trial++) {
      const c = await BenchClient.connect(router.ws);
      c.send({ type: 'session_init_v2', auto_extension_enabled: true });
      await c.next('gpu_assigned');
      c.send({ type: 'segment_prompt_source', prompt: 'failover probe' });
      await c.next('ltx2_segment_complete');
      await c.next('media_init');
      await sleep(300);
      const s = (await (await fetch(`${router.url}/status`)).json()) as { replicas: { id: string; routed_here: number }[] };
      const victim = s.replicas.find((r) => r.routed_here === 1)?.id;
      if (!victim) throw new Error('cannot tell which replica serves the session');
      const migrated = c.next('session_migrated', 30_000);
      let mediaAfter: ((at: number) => void) | undefined;
      const media = new Promise<number>((resolve) => (mediaAfter = resolve));
      const killedAt = performance.now();
      (replicas.get(victim) as Proc).child.kill('SIGKILL');
      const notice = await migrated;
      c.onBinary = (_d, at) => mediaAfter?.(at);
      toNotice.push(notice.at - killedAt);
      toMedia.push((await media) - killedAt);
      c.close();
      await c.closed;
      const back = await startLivegen(dir, victim, 'serve', { ...base(victim), pool: { workers: 1 } });
      replicas.set(victim, back);
      procs.push(back.child);
      await waitFree(router, 2);
    }
    const t = (p: Probe) => ({ start: tailOf(p.startMs), snapshot: tailOf(p.snapshotMs), firstMedia: tailOf(p.firstMediaMs) });
    return { direct: t(direct), routed: t(routed), failover: { toNoticeMs: tailOf(toNotice), toMediaMs: tailOf(toMedia) } };
  } finally {
    await Promise.all(procs.map((p) => stopChild(p)));
    rmSync(dir, { recursive: true, force: true });
  }
}

export const cluster: Benchmark = {
  name: 'cluster',
  title: 'router vs direct replica (session start, snapshot round trip, first media) and failover time',
  async run({ quick, log }) {
    if (spawnSync('redis-server', ['--version']).status !== 0) {
      return { figures: [info('skipped: redis-server not installed', Number.NaN, '')], details: {} };
    }
    const m = await measureCluster(quick, log);
    const figures: Figure[] = [];
    for (const [key, label] of [
      ['start', 'session start'],
      ['snapshot', 'snapshot round trip'],
      ['firstMedia', 'request to first media'],
    ] as const) {
      figures.push(info(`${label} p50 via router`, m.routed[key].p50, 'ms', `direct ${m.direct[key].p50} ms, ratio ${ratio(m.routed[key].p50, m.direct[key].p50)}x`));
      figures.push(info(`${label} p99 via router`, m.routed[key].p99, 'ms', `direct ${m.direct[key].p99} ms, ratio ${ratio(m.routed[key].p99, m.direct[key].p99)}x`));
    }
    figures.push(info('failover: kill -9 to session_migrated p50', m.failover.toNoticeMs.p50, 'ms', `max ${m.failover.toNoticeMs.max} ms over ${m.failover.toNoticeMs.n}`));
    figures.push(info('failover: kill -9 to next media p50', m.failover.toMediaMs.p50, 'ms', `max ${m.failover.toMediaMs.max} ms`));
    return { figures, details: { ...m } };
  },
};

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const m = await measureCluster(process.argv.includes('--quick'));
  console.log(JSON.stringify(m, null, 2));
}
