import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { probeMedia, TestClient, type Received } from '../server/harness.js';
import { startRedis, type TestRedis } from '../support/redis-server.js';
import { removeConfigs, startProcess, waitUntil, type ClusterProcess } from './processes.js';

/**
 * A real cluster on loopback: a private redis-server, three replicas (`livegen serve`
 * with a cluster section, one synthetic worker each, segments of 1 s in real time) and
 * two routers (`livegen router`), every one a process of its own.
 */
const WIDTH = 192;
const HEIGHT = 112;
const FRAMES = 24;
/** Segments per story: room for a rolling restart of three replicas (each move costs a segment). */
const CAP = 10;

let redis: TestRedis;
const replicas = new Map<string, ClusterProcess>();
let routerA: ClusterProcess;
let routerB: ClusterProcess;

function baseConfig(id: string): Record<string, unknown> {
  return {
    default_request: { sampling: { width: WIDTH, height: HEIGHT, fps: 24, num_frames: FRAMES, num_inference_steps: 2 } },
    streaming: { reaper_interval_ms: 100, max_sessions: 16, queue_depth_update_ms: 0, preset: 'default', generation_segment_cap: CAP },
    generator: { synthetic: { pace: 'realtime', step_ms: 20 } },
    media: { fragment_duration_ms: 100 },
    logging: { level: 'warn' },
    server: { shutdown_grace_seconds: 10 },
    cluster: { redis_url: redis.url, id, namespace: 'ct', heartbeat_ms: 200, presence_ttl_ms: 1000 },
  };
}

async function startReplica(id: string, patch: Record<string, unknown> = {}): Promise<ClusterProcess> {
  const base = baseConfig(id);
  const proc = await startProcess(id, 'serve', { ...base, pool: { workers: 1 }, ...patch, streaming: { ...(base.streaming as object), ...((patch.streaming as object | undefined) ?? {}) } });
  replicas.set(id, proc);
  return proc;
}

interface RouterStatus {
  queue_size: number;
  replicas: { id: string; available: number; routed_here: number; draining: boolean; heartbeat_age_ms: number }[];
}

async function status(router: ClusterProcess): Promise<RouterStatus> {
  return (await (await fetch(`${router.url}/status`)).json()) as RouterStatus;
}

/** Waits until the router sees `n` replicas with a free worker. */
async function freeReplicas(router: ClusterProcess, n: number): Promise<void> {
  await waitUntil(async () => ((await status(router)).replicas.filter((r) => r.available > 0 && !r.draining).length >= n ? true : undefined), `${n} free replicas`, 20_000);
}

/** The binary frames of segment `idx` received after message number `after` (a migration re-sends a segment). */
function mediaOf(received: Received[], idx: number, after = 0): Buffer {
  const out: Buffer[] = [];
  let inside = false;
  for (const r of received.slice(after)) {
    if (r.kind === 'json') {
      if (r.message.type === 'media_init' && r.message.segment_idx === idx) inside = true;
      else if (r.message.type === 'media_segment_complete' && r.message.segment_idx === idx) inside = false;
    } else if (inside) out.push(r.data);
  }
  return Buffer.concat(out);
}

async function indicesOf(media: Buffer): Promise<(number | null)[]> {
  return (await probeMedia(media, WIDTH, HEIGHT)).frameIndices;
}

beforeAll(async () => {
  redis = await startRedis();
  await Promise.all(['r1', 'r2', 'r3'].map((id) => startReplica(id)));
  [routerA, routerB] = await Promise.all([
    startProcess('router-a', 'router', { ...baseConfig('router-a'), streaming: { max_queue: 8, queue_timeout_seconds: 30, queue_depth_update_ms: 0 } }),
    startProcess('router-b', 'router', { ...baseConfig('router-b'), streaming: { max_queue: 8, queue_timeout_seconds: 30, queue_depth_update_ms: 0 } }),
  ]);
  await freeReplicas(routerA, 3);
}, 90_000);

afterAll(async () => {
  await Promise.all([...replicas.values(), routerA, routerB].filter(Boolean).map((p) => p.stop('SIGKILL')));
  await redis?.stop();
  await removeConfigs();
});

describe('a livegen cluster: two routers, three replicas, one Redis', { timeout: 90_000 }, () => {
  it('places sessions on the least loaded replicas, queues the rest with global positions across both routers', async () => {
    const streaming = await Promise.all([
      TestClient.init(routerA.wsUrl, { auto_extension_enabled: true }),
      TestClient.init(routerB.wsUrl, { auto_extension_enabled: true }),
      TestClient.init(routerA.wsUrl, { auto_extension_enabled: true }),
    ]);
    for (const c of streaming) await c.waitFor('gpu_assigned');
    const s = await waitUntil(async () => {
      const st = await status(routerA);
      return st.replicas.every((r) => r.available === 0) ? st : undefined;
    }, 'every replica busy');
    expect(s.replicas.map((r) => r.id).sort()).toEqual(['r1', 'r2', 'r3']);

    const w1 = await TestClient.init(routerB.wsUrl, {});
    await w1.until(() => w1.ofType('queue_status').some((q) => q.position === 0), 'w1 first in the queue');
    const w2 = await TestClient.init(routerA.wsUrl, {});
    await w2.until(() => w2.ofType('queue_status').some((q) => q.position === 1 && q.queue_depth === 2), 'w2 second of two');
    await w1.until(() => w1.ofType('queue_status').some((q) => q.position === 0 && q.queue_depth === 2), 'w1 told the depth grew');
    expect((await status(routerB)).queue_size).toBe(2);

    // One streaming client leaves: the head of the global queue (on the other router) gets its replica.
    streaming[1]?.close();
    await w1.waitFor('gpu_assigned');
    await w2.until(() => w2.ofType('queue_status').some((q) => q.position === 0 && q.queue_depth === 1), 'w2 moves to the front');
    expect(w2.ofType('gpu_assigned')).toHaveLength(0);
    for (const c of [streaming[0], streaming[2], w1, w2]) c?.close();
    await freeReplicas(routerA, 3);
  });

  it('routes by preset and refuses a preset no replica serves with preset_mismatch', async () => {
    const special = await startReplica('r-special', { streaming: { preset: 'special' } });
    try {
      await freeReplicas(routerA, 4);
      // Three replicas serve `default`, one serves `special`: a `special` session can only go there.
      const c = await TestClient.init(routerA.wsUrl, { preset: 'special' });
      await c.waitFor('gpu_assigned');
      const routed = await waitUntil(async () => (await status(routerA)).replicas.find((r) => r.id === 'r-special' && r.routed_here === 1), 'routed to r-special');
      expect(routed.id).toBe('r-special');
      c.close();
      const bad = await TestClient.init(routerB.wsUrl, { preset: 'nobody-serves-this' });
      const error = await bad.waitFor('error');
      expect(error.code).toBe('preset_mismatch');
      expect((await bad.closed).code).toBe(1003);
    } finally {
      await special.stop('SIGTERM');
      replicas.delete('r-special');
    }
  });

  it('moves a session off a replica killed mid-segment: the same socket goes on with session_migrated and continuous frames', async () => {
    const client = await TestClient.init(routerA.wsUrl, { auto_extension_enabled: true });
    client.send({ type: 'segment_prompt_source', prompt: 'a lighthouse in a storm' });
    await client.waitFor('ltx2_segment_complete');
    // Kill the replica while segment 1 streams.
    await client.until(() => client.ofType('media_init').some((m) => m.segment_idx === 1), 'segment 1 streaming');
    const from = await waitUntil(async () => (await status(routerA)).replicas.find((r) => r.routed_here === 1)?.id, 'the replica serving it');
    await replicas.get(from)?.stop('SIGKILL');
    const migrated = await client.waitFor('session_migrated', 1, 20_000);
    expect(migrated).toMatchObject({ from_replica: from, segment_idx: 1, reason: 'replica_lost' });
    expect(migrated.to_replica).not.toBe(from);
    expect(typeof migrated.resume_token).toBe('string');
    const at = client.received.findIndex((r) => r.kind === 'json' && r.message.type === 'session_migrated');
    // Segment 1 again, from the stored state, then on.
    await client.until(() => client.ofType('ltx2_segment_complete').some((m) => m.segment_idx === 2), 'segment 2 done after the move', 20_000);
    expect(await indicesOf(mediaOf(client.received, 0))).toEqual(Array.from({ length: FRAMES }, (_, i) => i));
    expect(await indicesOf(mediaOf(client.received, 1, at))).toEqual(Array.from({ length: FRAMES }, (_, i) => FRAMES + i));
    expect(await indicesOf(mediaOf(client.received, 2, at))).toEqual(Array.from({ length: FRAMES }, (_, i) => 2 * FRAMES + i));
    expect(client.ofType('error')).toEqual([]);
    expect(client.ofType('ltx2_stream_start')).toHaveLength(1);
    client.close();
    await startReplica(from);
    await freeReplicas(routerA, 3);
  });

  it('drains a replica on SIGTERM: its session finishes the running segment, moves on, and the replica exits 0', async () => {
    const client = await TestClient.init(routerB.wsUrl, { auto_extension_enabled: true });
    client.send({ type: 'segment_prompt_source', prompt: 'a slow river' });
    await client.until(() => client.ofType('media_init').length >= 1, 'streaming');
    const from = await waitUntil(async () => (await status(routerB)).replicas.find((r) => r.routed_here === 1)?.id, 'the replica serving it');
    const proc = replicas.get(from) as ClusterProcess;
    const exit = proc.stop('SIGTERM');
    const migrated = await client.waitFor('session_migrated', 1, 20_000);
    expect(migrated.reason).toBe('replica_draining');
    expect(await exit).toBe(0);
    const at = client.received.findIndex((r) => r.kind === 'json' && r.message.type === 'session_migrated');
    const next = migrated.segment_idx;
    await client.until(() => client.ofType('ltx2_segment_complete').some((m) => m.segment_idx === next), 'the next segment on the new replica', 20_000);
    expect(await indicesOf(mediaOf(client.received, next, at))).toEqual(Array.from({ length: FRAMES }, (_, i) => next * FRAMES + i));
    expect(client.ofType('ltx2_stream_complete')).toEqual([]);
    client.close();
    await startReplica(from);
    await freeReplicas(routerA, 3);
  });

  it('survives a rolling restart of every replica: the session moves three times and its segments follow on', async () => {
    // Segments run only when asked, so the story's length does not depend on how long restarts take.
    const client = await TestClient.init(routerA.wsUrl, {});
    client.send({ type: 'segment_prompt_source', prompt: 'a train through hills' });
    await client.waitFor('ltx2_segment_complete');
    const visited: string[] = [];
    for (let round = 1; round <= 3; round++) {
      client.send({ type: 'segment_prompt_source', prompt: `the train, part ${round}` });
      await client.until(() => client.ofType('media_init').some((m) => m.segment_idx === round), `segment ${round} streaming`);
      const from = await waitUntil(async () => (await status(routerA)).replicas.find((r) => r.routed_here === 1)?.id, 'the replica serving it');
      visited.push(from);
      // Drain: the running segment finishes there, then the session moves.
      expect(await replicas.get(from)?.stop('SIGTERM')).toBe(0);
      await client.waitFor('session_migrated', round, 20_000);
      await startReplica(from);
    }
    await client.until(() => client.ofType('ltx2_segment_complete').some((m) => m.segment_idx === 3), 'segment 3 complete', 20_000);
    client.send({ type: 'segment_prompt_source', prompt: 'the train arrives' });
    await client.until(() => client.ofType('ltx2_segment_complete').some((m) => m.segment_idx === 4), 'a segment after the last move', 20_000);
    const at = client.received.findLastIndex((r) => r.kind === 'json' && r.message.type === 'session_migrated');
    expect(new Set(visited).size).toBeGreaterThanOrEqual(2);
    expect(client.ofType('session_migrated').map((m) => m.reason)).toEqual(['replica_draining', 'replica_draining', 'replica_draining']);
    // Every segment completed once, in order, with nothing lost or repeated.
    expect(client.ofType('ltx2_segment_complete').map((m) => m.segment_idx)).toEqual([0, 1, 2, 3, 4]);
    expect(await indicesOf(mediaOf(client.received, 4, at))).toEqual(Array.from({ length: FRAMES }, (_, i) => 4 * FRAMES + i));
    expect(client.ofType('error').map((e) => `${e.code}: ${e.message}`)).toEqual([]);
    expect(client.ofType('ltx2_stream_complete')).toEqual([]);
    client.close();
    await freeReplicas(routerA, 3);
  });

  it('resumes by token on the other router', async () => {
    const first = await TestClient.init(routerA.wsUrl, {});
    const assigned = await first.waitFor('gpu_assigned');
    first.send({ type: 'segment_prompt_source', prompt: 'a city at night' });
    await first.waitFor('ltx2_segment_complete');
    first.close();
    await first.closed;
    const second = await TestClient.init(routerB.wsUrl, { resume_token: assigned.resume_token });
    await second.waitFor('gpu_assigned');
    second.send({ type: 'segment_prompt_source', prompt: 'the city at dawn' });
    await second.waitFor('ltx2_segment_complete');
    expect(await indicesOf(mediaOf(second.received, 0))).toEqual(Array.from({ length: FRAMES }, (_, i) => FRAMES + i));
    second.close();
    await freeReplicas(routerA, 3);
  });

  it('drops the waiters of a router killed with kill -9: no ghost stays ahead in the queue', async () => {
    const busy = await Promise.all([0, 1, 2].map(() => TestClient.init(routerA.wsUrl, { auto_extension_enabled: true })));
    for (const c of busy) await c.waitFor('gpu_assigned');
    const ghost = await TestClient.init(routerB.wsUrl, {});
    await ghost.until(() => ghost.ofType('queue_status').some((q) => q.position === 0), 'ghost first');
    const waiter = await TestClient.init(routerA.wsUrl, {});
    await waiter.until(() => waiter.ofType('queue_status').some((q) => q.position === 1), 'waiter second');
    await routerB.stop('SIGKILL');
    await waiter.until(() => waiter.ofType('queue_status').some((q) => q.position === 0 && q.queue_depth === 1), 'waiter at the front alone', 10_000);
    busy[0]?.close();
    await waiter.waitFor('gpu_assigned');
    for (const c of [...busy, waiter]) c.close();
    routerB = await startProcess('router-b', 'router', { ...baseConfig('router-b'), streaming: { max_queue: 8, queue_timeout_seconds: 30 } });
    await freeReplicas(routerA, 3);
  });

  it('keeps the protocol rules through a router: bad opening frames, bad frames later, snapshot without a state, the segment cap', async () => {
    const notJson = await TestClient.connect(routerA.wsUrl);
    notJson.sendRaw('{not json');
    expect((await notJson.waitFor('error')).code).toBe('invalid_message');
    expect((await notJson.closed).code).toBe(1003);

    const binary = await TestClient.connect(routerB.wsUrl);
    binary.sendRaw(Buffer.from([1, 2, 3]), true);
    expect((await binary.waitFor('error')).code).toBe('invalid_message');
    expect((await binary.closed).code).toBe(1003);

    const wrongFirst = await TestClient.connect(routerA.wsUrl);
    wrongFirst.send({ type: 'snapshot_state' });
    expect((await wrongFirst.waitFor('error')).code).toBe('invalid_message');
    expect((await wrongFirst.closed).code).toBe(1003);

    const client = await TestClient.init(routerB.wsUrl, { auto_extension_enabled: true });
    await client.waitFor('gpu_assigned');
    // Before any segment there is no state: internal_error, and the connection stays.
    client.send({ type: 'snapshot_state' });
    expect((await client.waitFor('error')).code).toBe('internal_error');
    client.send({ type: 'segment_prompt_source' });
    const invalid = await client.waitFor('error', 2);
    expect(invalid).toMatchObject({ code: 'invalid_message', retryable: true });
    client.send({ type: 'segment_prompt_source', prompt: 'waves on rocks' });
    // The cap ends the stream with segment_cap and close 1000, through the router.
    const complete = await client.waitFor('ltx2_stream_complete', 1, 40_000);
    expect(complete.reason).toBe('segment_cap');
    expect((await client.closed).code).toBe(1000);
    expect(client.ofType('ltx2_segment_complete').map((m) => m.segment_idx)).toEqual(Array.from({ length: CAP }, (_, i) => i));
    await freeReplicas(routerA, 3);
  });

  it('checks API keys at the router and counts sessions per key over every router', async () => {
    const key = 'cluster-test-key-0123456789';
    const auth = { api_keys: [key], max_sessions_per_key: 1 };
    const [a, b] = await Promise.all([
      startProcess('router-auth-a', 'router', { ...baseConfig('router-auth-a'), auth }),
      startProcess('router-auth-b', 'router', { ...baseConfig('router-auth-b'), auth }),
    ]);
    try {
      await expect(TestClient.connect(a.wsUrl)).rejects.toThrow(/401/);
      const first = await TestClient.init(`${a.wsUrl}?token=${key}`, {});
      await first.until(() => first.ofType('gpu_assigned').length > 0, 'gpu_assigned', 15_000).catch((err: unknown) => {
        throw new Error(`${String(err)}: ${JSON.stringify(first.ofType('error'))}`);
      });
      // The same key on the other router: at its limit of one, cluster-wide.
      const second = await TestClient.connect(`${b.wsUrl}?token=${key}`);
      expect((await second.waitFor('error')).code).toBe('session_rejected');
      expect((await second.closed).code).toBe(1008);
      first.close();
      await first.closed;
      const third = await waitUntil(async () => {
        const c = await TestClient.init(`${b.wsUrl}?token=${key}`, {});
        try {
          await c.waitFor('gpu_assigned', 1, 3_000);
          return c;
        } catch {
          c.close();
          return undefined;
        }
      }, 'the key free again on the other router');
      third.close();
    } finally {
      await Promise.all([a.stop('SIGKILL'), b.stop('SIGKILL')]);
      await freeReplicas(routerA, 3);
    }
  });

  it('keeps streaming while Redis is down, and admits again once it is back', async () => {
    const client = await TestClient.init(routerA.wsUrl, { auto_extension_enabled: true });
    client.send({ type: 'segment_prompt_source', prompt: 'rain on a window' });
    await client.waitFor('ltx2_segment_complete');
    await redis.kill();
    const before = client.ofType('ltx2_segment_complete').length;
    await client.until(() => client.ofType('ltx2_segment_complete').length >= before + 2, 'two more segments with Redis down', 20_000);
    await redis.start();
    // Replicas announce themselves again; the emptied queue takes new sessions.
    await freeReplicas(routerA, 2);
    const after = await TestClient.init(routerB.wsUrl, {});
    await after.waitFor('gpu_assigned', 1, 20_000);
    expect(client.ofType('error').map((e) => `${e.code}: ${e.message}`)).toEqual([]);
    client.close();
    after.close();
  });
});
