/**
 * Soak ("no leaks"): after 1,000 short sessions against one server, the manager,
 * the admission queue, the continuation store, the driver table, the rate limiter's table,
 * the temp dir, the worker pool, the process's open handles and its child processes are
 * back to their start values.
 *
 * The sessions are scripted (a seeded shuffle of lifecycles, reproducible), run 16 at a
 * time against pool.workers 2, fast pace, 64x32 frames, and every one is checked for the
 * answers its lifecycle must get, so a leak cannot hide behind a session that silently
 * went wrong. The count is LIVEGEN_SOAK_SESSIONS (default 1000); the run is bounded by
 * LIVEGEN_SOAK_DEADLINE_MS: past it no new session starts and the test fails, saying how
 * far it got.
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, TestClient, type TestServer } from '../server/harness.js';
import {
  TINY_PNG_BASE64,
  activeResources,
  checkSegmentsComplete,
  childProcesses,
  connectQuiet,
  expectHealthy,
  seededRandom,
  waitUntil,
  withTimeout,
} from './helpers.js';

const SESSIONS = Number(process.env.LIVEGEN_SOAK_SESSIONS ?? 1000);
const CONCURRENCY = Number(process.env.LIVEGEN_SOAK_CONCURRENCY ?? 16);
const SEED = Number(process.env.LIVEGEN_SOAK_SEED ?? 20261125);
/** No session starts after this; the test then fails naming how many ran. */
const DEADLINE_MS = Number(process.env.LIVEGEN_SOAK_DEADLINE_MS ?? 240_000);
/** Longest any one session may take, queue wait included. */
const SESSION_MS = 60_000;
/** How long everything may take to settle after the last session. */
const SETTLE_MS = 15_000;
/**
 * streaming.session_timeout_seconds: short, so the idle lifecycles cost little; busy ones
 * keep themselves alive with a toggle every 200 ms. Not shorter: on two loaded cores this
 * process can be descheduled for hundreds of ms, and the reaper's timer then runs before the
 * keep-alive frames waiting in the socket are read.
 */
const TIMEOUT_S = 1;

const SOAK_CONFIG = {
  pool: { workers: 2 },
  default_request: { sampling: { width: 64, height: 32, fps: 24, num_frames: 4, num_inference_steps: 1 } },
  generator: { synthetic: { pace: 'fast', step_ms: 0, } },
  streaming: {
    max_sessions: CONCURRENCY * 2,
    max_queue: CONCURRENCY * 2,
    // Two segments, so `segment-snapshot` (one segment) stays under the cap and `segment-cap` hits it.
    generation_segment_cap: 2,
    // Short, for the idle lifecycles; everyone else keeps its session alive while it waits.
    session_timeout_seconds: TIMEOUT_S,
    reaper_interval_ms: 50,
    queue_timeout_seconds: 60,
  },
  limits: {
    // On, so the per-IP bucket table is exercised (and must not grow); far above what the soak uses.
    connections_per_minute_per_ip: 10_000_000,
    // The same short deadline for connections that never send their init.
    init_timeout_seconds: TIMEOUT_S,
    max_pending_inits: CONCURRENCY * 2,
  },
};

type Lifecycle =
  | 'connect-leave'
  | 'bad-first-frame'
  | 'leave-queued'
  | 'leave-queued-image'
  | 'segment-snapshot'
  | 'segment-image-snapshot'
  | 'leave-mid-segment'
  | 'idle-timeout-before-init'
  | 'idle-timeout-active'
  | 'segment-cap';

/** Relative weights: the mix of the script. */
const MIX: Record<Lifecycle, number> = {
  // No worker needed.
  'connect-leave': 15,
  'bad-first-frame': 14,
  'leave-queued': 10,
  'leave-queued-image': 6,
  'idle-timeout-before-init': 12,
  // Hold one of the two workers, the soak's bottleneck (mean hold time measured on the 2-core
  // dev box, idle to loaded; mostly ffmpeg start-up, ~0.23 CPU-s per encoder process).
  'leave-mid-segment': 12, // 0.16-0.3 s
  'segment-snapshot': 10, // 0.35-0.7 s
  'segment-image-snapshot': 8, // 0.35-0.7 s
  'segment-cap': 8, // 0.65-1.4 s: two segments
  'idle-timeout-active': 5, // the session timeout
};

function script(count: number, seed: number): Lifecycle[] {
  const random = seededRandom(seed);
  const entries = Object.entries(MIX) as [Lifecycle, number][];
  const total = entries.reduce((n, [, w]) => n + w, 0);
  return Array.from({ length: count }, () => {
    let r = random() * total;
    for (const [lifecycle, weight] of entries) {
      r -= weight;
      if (r < 0) return lifecycle;
    }
    return entries[0]![0];
  });
}

let server: TestServer;
let tempDir: string;


/** Keeps a session from idling out while it waits for a worker (a valid toggle is activity). */
function keepAlive(client: TestClient): () => void {
  const timer = setInterval(() => {
    if (client.ws.readyState === client.ws.OPEN) client.send({ type: 'enhancement_updated', enabled: false });
  }, 200);
  return () => clearInterval(timer);
}

const stats = {
  /** ffmpeg encoder processes the server started (counted through the onEncoder hook). */
  encoders: 0,
  encoderPids: [] as number[],
  outcomes: {} as Record<string, number>,
  /** Per lifecycle: total ms from connect to close, and ms bound to a worker (live until closed). */
  totalMs: {} as Record<string, number>,
  liveMs: {} as Record<string, number>,
  tempFileSeen: 0,
  segments: 0,
};
function count(outcome: string): void {
  stats.outcomes[outcome] = (stats.outcomes[outcome] ?? 0) + 1;
}

function initFrame(index: number, image: boolean): Record<string, unknown> {
  return {
    type: 'session_init_v2',
    client_id: `soak-${index}`,
    ...(image ? { initial_image: { mime: 'image/png', name: 'tiny.png', data: TINY_PNG_BASE64 } } : {}),
  };
}

/** Waits for the session to go live (queued first, most of the time). */
async function goLive(client: TestClient): Promise<void> {
  await client.waitFor('ltx2_stream_start', 1, SESSION_MS);
}

async function runSegment(client: TestClient, nth: number): Promise<void> {
  client.send({ type: 'segment_prompt_source', prompt: `soak segment ${nth}` });
  await client.waitFor('ltx2_segment_complete', nth, SESSION_MS);
}

/** One scripted session, start to finish, with the answers its lifecycle must get. */
async function runLifecycle(index: number, lifecycle: Lifecycle): Promise<void> {
  const t0 = performance.now();
  const client = await connectQuiet(server.wsUrl);
  // Everyone but the idle lifecycles keeps its session alive while it waits (for a worker, mostly).
  const busy = !lifecycle.startsWith('idle-timeout') && lifecycle !== 'bad-first-frame' && lifecycle !== 'connect-leave';
  let stopKeepAlive = busy ? keepAlive(client) : () => undefined;
  try {
    switch (lifecycle) {
      case 'connect-leave':
        break;
      case 'bad-first-frame': {
        const variant = index % 3;
        if (variant === 0) client.sendRaw('{"type":"session_init_v2",');
        else if (variant === 1) client.sendRaw(Buffer.from([0, 1, 2, 3]), true);
        else client.send({ type: 'snapshot_state' });
        const closed = await withTimeout(client.closed, SESSION_MS, 'close 1003');
        expect(closed.code).toBe(1003);
        expect(client.messages).toEqual([expect.objectContaining({ type: 'error', code: 'invalid_message' })]);
        break;
      }
      case 'leave-queued':
      case 'leave-queued-image': {
        client.send(initFrame(index, lifecycle === 'leave-queued-image'));
        const status = await client.waitFor('queue_status', 1, SESSION_MS);
        // queue_depth 0 means it was bound at once: it then leaves an active idle session instead.
        count(status.queue_depth > 0 ? `${lifecycle}: left while queued` : `${lifecycle}: bound at once, left active`);
        break;
      }
      case 'segment-snapshot':
      case 'segment-image-snapshot': {
        client.send(initFrame(index, lifecycle === 'segment-image-snapshot'));
        await goLive(client);
        if (lifecycle === 'segment-image-snapshot' && (await readdir(tempDir)).length > 0) stats.tempFileSeen += 1;
        await runSegment(client, 1);
        client.send({ type: 'snapshot_state' });
        const snapshot = await client.waitFor('continuation_state_snapshot', 1, SESSION_MS);
        expect(snapshot.state.kind).toBe('livegen.synthetic.v1');
        const { segments, problems } = checkSegmentsComplete(client);
        expect(problems).toEqual([]);
        expect(segments).toBe(1);
        stats.segments += 1;
        break;
      }
      case 'leave-mid-segment': {
        client.send(initFrame(index, false));
        await goLive(client);
        client.send({ type: 'segment_prompt_source', prompt: 'left behind' });
        // Half leave as the segment starts generating, half once its media is flowing.
        if (index % 2 === 0) await client.waitFor('ltx2_segment_start', 1, SESSION_MS);
        else await client.until(() => client.received.some((r) => r.kind === 'binary'), 'media', SESSION_MS);
        count(client.ofType('ltx2_segment_complete').length === 0 ? 'leave-mid-segment: left mid-segment' : 'leave-mid-segment: segment had finished');
        break;
      }
      case 'idle-timeout-before-init': {
        const closed = await withTimeout(client.closed, SESSION_MS, 'session_timeout');
        expect(closed.code).toBe(1000);
        expect(client.messages).toEqual([{ type: 'session_timeout', timeout_seconds: TIMEOUT_S }]);
        break;
      }
      case 'idle-timeout-active': {
        client.send(initFrame(index, false));
        stopKeepAlive = keepAlive(client);
        await goLive(client);
        stopKeepAlive();
        const closed = await withTimeout(client.closed, SESSION_MS, 'session_timeout');
        expect(closed.code).toBe(1000);
        expect(client.messages.at(-1)).toEqual({ type: 'session_timeout', timeout_seconds: TIMEOUT_S });
        break;
      }
      case 'segment-cap': {
        client.send(initFrame(index, false));
        await goLive(client);
        client.send({ type: 'segment_prompt_source', prompt: 'one' });
        client.send({ type: 'segment_prompt_source', prompt: 'two' });
        const closed = await withTimeout(client.closed, SESSION_MS, 'close at the segment cap');
        expect(closed.code).toBe(1000);
        expect(client.ofType('ltx2_segment_complete').map((m) => m.segment_idx)).toEqual([0, 1]);
        expect(client.messages.at(-1)).toEqual({ type: 'ltx2_stream_complete', reason: 'segment_cap' });
        const { segments, problems } = checkSegmentsComplete(client);
        expect(problems).toEqual([]);
        stats.segments += segments;
        break;
      }
    }
    if (lifecycle !== 'bad-first-frame') expect(client.ofType('error')).toEqual([]);
    count(lifecycle);
  } finally {
    stopKeepAlive();
    client.close();
    // Wait for our side to see the close, so the client socket is gone before the next session.
    await withTimeout(client.closed, SESSION_MS, 'the client socket to close');
    const end = performance.now();
    const live = client.received.find((r) => r.kind === 'json' && r.message.type === 'gpu_assigned')?.at;
    stats.totalMs[lifecycle] = (stats.totalMs[lifecycle] ?? 0) + (end - t0);
    if (live !== undefined) stats.liveMs[lifecycle] = (stats.liveMs[lifecycle] ?? 0) + (end - live);
  }
}

/** What must be back to its start value after the soak. */
async function snapshotState() {
  const c = await server.server.inspect();
  return {
    sessions: c.sessions.length,
    queueDepth: c.queueDepth,
    storeEntries: c.storedStates,
    trackedAddresses: c.rateLimitKeys,
    workersAvailable: c.workers.available,
    workersTotal: c.workers.total,
    tempBytes: c.tempBytes,
    tempDirEntries: (await readdir(tempDir)).length,
    runDirEntries: (await readdir(c.tempDir)).length,
    children: (await childProcesses()).map((p) => p.comm),
  };
}

/**
 * Open handles by type. `Timeout` is compared separately: vitest's worker keeps a few timers
 * of its own (RPC and teardown timers) whose number moves on its own schedule; the server's
 * reaper and heartbeat timers are unref'd and are not counted by getActiveResourcesInfo().
 */
function handles(): { exact: Record<string, number>; timers: number } {
  const all = activeResources();
  const timers = (all.Timeout ?? 0) + (all.Immediate ?? 0);
  delete all.Timeout;
  delete all.Immediate;
  return { exact: all, timers };
}

async function settle(): Promise<void> {
  await waitUntil(
    async () => {
      const c = await server.server.inspect();
      return (
        c.sessions.length === 0 &&
        c.queueDepth === 0 &&
        c.storedStates === 0 &&
        c.workers.available === c.workers.total &&
        c.tempBytes === 0 &&
        (await readdir(c.tempDir)).length === 1 &&
        (await childProcesses()).every((p) => p.comm !== 'ffmpeg')
      );
    },
    'the server to settle',
    SETTLE_MS,
    50,
  );
}

/** True while a process with this id exists (a zombie counts: it was never reaped). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

beforeAll(async () => {
  tempDir = await mkdtemp(join(tmpdir(), 'livegen-soak-'));
  server = await startServer(SOAK_CONFIG, {
    tempDir,
    onEncoder: (encoder) => {
      stats.encoders += 1;
      if (encoder.pid !== undefined) stats.encoderPids.push(encoder.pid);
    },
  });
  await waitUntil(async () => {
    const { workers } = await server.server.inspect();
    return workers.available === workers.total;
  }, 'workers ready', SETTLE_MS);
});

afterAll(async () => {
  await server?.close();
  if (tempDir) await rm(tempDir, { recursive: true, force: true });
});

describe('soak', () => {
  it(`${SESSIONS} short sessions leave the manager, queue, stores, temp dir and open handles as they found them`, { timeout: DEADLINE_MS + 60_000 }, async () => {
    // Warm-up: one of each lifecycle, so one-time lazy resources (module state, the rate
    // limiter's bucket for 127.0.0.1) exist before the start values are taken.
    const lifecycles = Object.keys(MIX) as Lifecycle[];
    await Promise.all(lifecycles.map((l, i) => runLifecycle(-1 - i, l)));
    await settle();
    for (const table of [stats.outcomes, stats.totalMs, stats.liveMs]) for (const key of Object.keys(table)) delete table[key];
    stats.encoders = 0;
    stats.encoderPids.length = 0;
    stats.tempFileSeen = 0;
    stats.segments = 0;

    const before = await snapshotState();
    const handlesBefore = handles();
    // The temp root holds the server's run directory, and that directory only its pid file.
    expect(before).toMatchObject({ sessions: 0, queueDepth: 0, storeEntries: 0, tempBytes: 0, tempDirEntries: 1, runDirEntries: 1 });
    expect(before.children.filter((comm) => comm === 'ffmpeg')).toEqual([]);

    const plan = script(SESSIONS, SEED);
    const failures: string[] = [];
    let next = 0;
    let done = 0;
    let maxQueue = 0;
    let maxSessions = 0;
    const started = performance.now();
    const deadline = started + DEADLINE_MS;
    const sampler = setInterval(() => {
      void server.server.inspect().then((c) => {
        maxQueue = Math.max(maxQueue, c.queueDepth);
        maxSessions = Math.max(maxSessions, c.sessions.length);
      });
    }, 20);
    try {
      await Promise.all(
        Array.from({ length: CONCURRENCY }, async () => {
          while (next < plan.length && performance.now() < deadline) {
            const index = next++;
            const lifecycle = plan[index] as Lifecycle;
            try {
              await withTimeout(runLifecycle(index, lifecycle), SESSION_MS + 5000, `session ${index} (${lifecycle})`);
            } catch (err) {
              failures.push(`#${index} ${lifecycle}: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
            }
            done += 1;
          }
        }),
      );
    } finally {
      clearInterval(sampler);
    }
    const elapsedS = (performance.now() - started) / 1000;
    console.log(
      `soak: ${done}/${SESSIONS} sessions in ${elapsedS.toFixed(1)} s (${(done / elapsedS).toFixed(1)} sessions/s), ` +
        `${CONCURRENCY} at a time, ${stats.segments} segments, peak ${maxSessions} sessions / ${maxQueue} queued, ` +
        `${stats.tempFileSeen} init images seen on disk, ${stats.encoders} ffmpeg encoders started`,
    );
    const perSession = (ms: Record<string, number>) =>
      Object.fromEntries(Object.entries(ms).map(([l, total]) => [l, Math.round(total / (stats.outcomes[l] ?? 1))]));
    console.log(`soak: outcomes ${JSON.stringify(stats.outcomes)}`);
    if (failures.length > 0) console.log(`soak: ${failures.length} sessions failed:\n  ${failures.slice(0, 20).join('\n  ')}`);
    console.log(`soak: mean ms per session, connect to close ${JSON.stringify(perSession(stats.totalMs))}`);
    console.log(`soak: mean ms per session holding a worker ${JSON.stringify(perSession(stats.liveMs))}`);

    const settleStarted = performance.now();
    await settle().catch(() => undefined); // the exact comparison below says what did not settle
    // Give closed sockets and exited children one more turn to leave the handle list.
    await waitUntil(() => JSON.stringify(handles().exact) === JSON.stringify(handlesBefore.exact), 'open handles back to their start values', SETTLE_MS, 50).catch(() => undefined);
    const after = await snapshotState();
    const handlesAfter = handles();
    console.log(
      `soak: settled in ${((performance.now() - settleStarted) / 1000).toFixed(1)} s; state before ${JSON.stringify(before)} after ${JSON.stringify(after)}; ` +
        `handles before ${JSON.stringify(handlesBefore)} after ${JSON.stringify(handlesAfter)}`,
    );

    expect(failures.slice(0, 10), `${failures.length} sessions failed`).toEqual([]);
    expect(done, `only ${done} of ${SESSIONS} sessions ran within ${DEADLINE_MS} ms`).toBe(SESSIONS);
    expect(after).toEqual(before);
    expect(after.workersAvailable).toBe(after.workersTotal);
    expect(after.children.filter((comm) => comm === 'ffmpeg'), 'ffmpeg processes left behind').toEqual([]);
    // Every encoder process the server started has exited and been reaped (pids are not reused that fast).
    expect(stats.encoderPids.filter(alive), 'encoder processes still alive').toEqual([]);
    expect(handlesAfter.exact).toEqual(handlesBefore.exact);
    // vitest's own timers may come and go; the server's may not pile up.
    expect(handlesAfter.timers).toBeLessThanOrEqual(handlesBefore.timers + 2);
    expect(stats.tempFileSeen).toBeGreaterThan(0);
    await expectHealthy(server.url);
  });
});
