import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { probeMedia, sleep, startServer, TestClient, type TestServer } from '../server/harness.js';

const FAULTY = fileURLToPath(new URL('../fixtures/workers/faulty-worker.mjs', import.meta.url));

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

/** Worker-process config around the faulty fixture (or the synthetic worker when `fault` is undefined). */
function workerConfig(fault: string | undefined, extra: Record<string, unknown> = {}, workers = 1): Record<string, unknown> {
  return {
    pool: { workers },
    generator: {
      kind: 'worker',
      worker: {
        ...(fault === undefined ? {} : { command: process.execPath, args: [FAULTY], env: { FAULT: fault } }),
        start_timeout_seconds: 20,
        progress_timeout_seconds: 5,
        cancel_timeout_ms: 300,
        restart_backoff_ms: 100,
        ...extra,
      },
    },
  };
}

async function status(base: string): Promise<Record<string, Record<string, unknown>>> {
  const res = await fetch(`${base}/status`);
  return ((await res.json()) as { gpu_status: Record<string, Record<string, unknown>> }).gpu_status;
}

async function untilStatus(base: string, predicate: (s: Record<string, Record<string, unknown>>) => boolean, what: string, timeoutMs = 20_000): Promise<Record<string, Record<string, unknown>>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await status(base);
    if (predicate(s)) return s;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(s)}`);
    await sleep(50);
  }
}

async function startedSegment(client: TestClient, prompt = 'go'): Promise<void> {
  await client.waitFor('ltx2_stream_start', 1, 20_000);
  client.send({ type: 'segment_prompt_source', prompt });
  await client.until(() => client.received.some((r) => r.kind === 'binary'), 'media flowing', 20_000);
}

describe('the synthetic generator as a worker process', () => {
  it('streams a session end to end through the stdio protocol with the configured GPU id', async () => {
    server = await startServer({ ...workerConfig(undefined), pool: { workers: 1, gpu_ids: [3] } });
    await untilStatus(server.url, (s) => s['3']?.ready === true, 'worker ready');
    const client = await TestClient.init(server.wsUrl);
    await client.waitFor('ltx2_stream_start', 1, 20_000);
    expect(client.ofType('gpu_assigned')[0]).toMatchObject({ gpu_id: 3, model_id: 'livegen/synthetic-worker' });
    client.send({ type: 'segment_prompt_source', prompt: 'one' });
    client.send({ type: 'segment_prompt_source', prompt: 'two' });
    await client.waitFor('ltx2_segment_complete', 2, 20_000);
    expect(client.ofType('step_complete').length).toBeGreaterThanOrEqual(6);
    const first = await probeMedia(Buffer.concat(client.segmentMedia(0)), 192, 112);
    const second = await probeMedia(Buffer.concat(client.segmentMedia(1)), 192, 112);
    expect(first.codecs).toEqual(['h264', 'aac']);
    expect([...first.frameIndices, ...second.frameIndices]).toEqual(Array.from({ length: 48 }, (_, i) => i));
    const s = await status(server.url);
    expect(s['3']).toMatchObject({ ready: true, process_alive: true, warmup_enabled: true, warmup_success: true, warmup_error: null, client_count: 1, available: false });
    expect(Object.keys(s['3']?.warmup_timings as object)).toEqual(expect.arrayContaining(['load_ms', 'warmup_ms']));
    client.close();
  });

  it('answers /readyz 503 warming while the worker loads, then 200 ready', async () => {
    server = await startServer(workerConfig(undefined, { env: { LIVEGEN_SYNTHETIC_LOAD_MS: '1500' } }));
    const warming = await fetch(`${server.url}/readyz`);
    expect(warming.status).toBe(503);
    expect(await warming.json()).toMatchObject({ status: 'warming', ready_gpu_workers: 0, total_gpus: 1 });
    await untilStatus(server.url, (s) => s['0']?.ready === true, 'worker ready');
    const ready = await fetch(`${server.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: 'ready', ready_gpu_workers: 1, warmup_successful_gpus: 1 });
  });

  it('queues sessions until the worker is ready instead of binding a warming worker', async () => {
    server = await startServer(workerConfig(undefined, { env: { LIVEGEN_SYNTHETIC_LOAD_MS: '800' } }));
    const client = await TestClient.init(server.wsUrl);
    await client.waitFor('queue_status');
    expect(client.ofType('gpu_assigned')).toHaveLength(0);
    await client.waitFor('gpu_assigned', 1, 20_000);
    client.close();
  });

  it('runs two sessions in parallel on two workers while a third waits queued', async () => {
    server = await startServer({ ...workerConfig('none', {}, 2), default_request: { sampling: { num_frames: 48 } } });
    await untilStatus(server.url, (s) => s['0']?.ready === true && s['1']?.ready === true, 'both ready');
    const a = await TestClient.init(server.wsUrl);
    const b = await TestClient.init(server.wsUrl);
    await a.waitFor('gpu_assigned');
    await b.waitFor('gpu_assigned');
    expect(new Set([a.ofType('gpu_assigned')[0]?.gpu_id, b.ofType('gpu_assigned')[0]?.gpu_id])).toEqual(new Set([0, 1]));
    const c = await TestClient.init(server.wsUrl);
    await c.until(() => c.ofType('queue_status').some((m) => m.position === 0 && m.queue_depth === 1), 'c queued');
    a.send({ type: 'segment_prompt_source', prompt: 'a' });
    b.send({ type: 'segment_prompt_source', prompt: 'b' });
    await a.waitFor('ltx2_segment_start');
    await b.waitFor('ltx2_segment_start');
    // Both segments are in flight at the same time.
    expect(a.ofType('ltx2_segment_complete')).toHaveLength(0);
    expect(b.ofType('ltx2_segment_complete')).toHaveLength(0);
    await a.waitFor('ltx2_segment_complete', 1, 20_000);
    await b.waitFor('ltx2_segment_complete', 1, 20_000);
    expect(c.ofType('gpu_assigned')).toHaveLength(0);
    a.close();
    await c.waitFor('gpu_assigned', 1, 5000);
    b.close();
    c.close();
  });
});

describe('worker faults', () => {
  it('fails only the session of a worker killed with SIGKILL mid-segment, then restarts and re-admits it', async () => {
    server = await startServer({ ...workerConfig('none', {}, 2), default_request: { sampling: { num_frames: 240 } } });
    await untilStatus(server.url, (s) => s['0']?.ready === true && s['1']?.ready === true, 'both ready');
    const victim = await TestClient.init(server.wsUrl);
    const bystander = await TestClient.init(server.wsUrl);
    await startedSegment(victim);
    await startedSegment(bystander);
    const victimGpu = String(victim.ofType('gpu_assigned')[0]?.gpu_id);
    const pid = (await status(server.url))[victimGpu]?.pid as number;
    process.kill(pid, 'SIGKILL');
    const closed = await victim.closed;
    expect(closed.code).toBe(1011);
    expect(victim.ofType('error')[0]).toMatchObject({ code: 'worker_failed', retryable: true });
    expect(victim.messages.at(-1)).toEqual({ type: 'ltx2_stream_complete', reason: 'error' });
    // The other session keeps streaming.
    const before = bystander.received.length;
    await sleep(300);
    expect(bystander.received.length).toBeGreaterThan(before);
    expect(bystander.ws.readyState).toBe(bystander.ws.OPEN);
    const s = await untilStatus(server.url, (st) => st[victimGpu]?.ready === true && st[victimGpu]?.pid !== pid, 'restarted');
    expect(s[victimGpu]?.restarts).toBe(1);
    const next = await TestClient.init(server.wsUrl);
    await next.waitFor('gpu_assigned', 1, 10_000);
    expect(String(next.ofType('gpu_assigned')[0]?.gpu_id)).toBe(victimGpu);
    next.close();
    bystander.close();
  });

  it('never admits a worker that never becomes ready, and keeps restarting it', async () => {
    server = await startServer({ ...workerConfig('never_ready', { start_timeout_seconds: 0.5 }), streaming: { queue_timeout_seconds: 1.5 } });
    const client = await TestClient.init(server.wsUrl);
    const closed = await client.closed;
    expect(client.ofType('gpu_assigned')).toHaveLength(0);
    expect(client.messages.at(-1)).toMatchObject({ type: 'error', code: 'gpu_unavailable', retryable: true });
    expect(closed.code).toBe(1013);
    const readyz = await fetch(`${server.url}/readyz`);
    expect(readyz.status).toBe(503);
    const s = await untilStatus(server.url, (st) => (st['0']?.restarts as number) >= 1, 'a restart');
    expect(s['0']).toMatchObject({ ready: false, available: false });
    expect(String(s['0']?.warmup_error)).toMatch(/not ready within 500 ms/);
  });

  it.each([
    ['writes garbage on its pipe', 'garbage', /protocol error/],
    ['writes a frame of the wrong length', 'bad_length', /protocol error.*expected/],
    ['exits mid-segment', 'crash_mid_job', /exited with code 3/],
  ])('treats a worker that %s as a worker failure, never a server crash', async (_name, fault, pattern) => {
    server = await startServer(workerConfig(fault));
    await untilStatus(server.url, (s) => s['0']?.ready === true, 'worker ready');
    const client = await TestClient.init(server.wsUrl);
    await client.waitFor('ltx2_stream_start');
    client.send({ type: 'segment_prompt_source', prompt: 'x' });
    await client.closed;
    const error = client.ofType('error')[0];
    expect(error).toMatchObject({ code: 'worker_failed', retryable: true });
    expect(error?.message).toMatch(pattern);
    // Still serving: health answers and the worker comes back.
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
    await untilStatus(server.url, (s) => s['0']?.ready === true && (s['0']?.restarts as number) >= 1, 'restarted');
  });

  it('fails the session of a worker that hangs mid-segment after the progress timeout', async () => {
    server = await startServer(workerConfig('hang_mid_job', { progress_timeout_seconds: 0.5 }));
    await untilStatus(server.url, (s) => s['0']?.ready === true, 'worker ready');
    const client = await TestClient.init(server.wsUrl);
    await client.waitFor('ltx2_stream_start');
    client.send({ type: 'segment_prompt_source', prompt: 'x' });
    await client.closed;
    expect(client.ofType('error')[0]?.message).toMatch(/no progress for 500 ms/);
    await untilStatus(server.url, (s) => s['0']?.ready === true && (s['0']?.restarts as number) >= 1, 'restarted');
  });

  it('reports a failed warmup in /status and keeps the worker out of the pool', async () => {
    server = await startServer(workerConfig('warmup_fail', { restart_backoff_ms: 5000 }));
    const s = await untilStatus(server.url, (st) => st['0']?.warmup_error !== null, 'warmup error');
    expect(s['0']).toMatchObject({ ready: false, warmup_enabled: true, warmup_success: false, available: false });
    expect(String(s['0']?.warmup_error)).toMatch(/warmup failed: CUDA out of memory/);
    const readyz = await fetch(`${server.url}/readyz`);
    expect(readyz.status).toBe(503);
    expect(await readyz.json()).toMatchObject({ status: 'warming', warmup_failed_gpus: 1 });
  });

  it('frees the worker for a waiting client within a second when a client leaves mid-segment (cancel honoured)', async () => {
    server = await startServer({ ...workerConfig('none'), default_request: { sampling: { num_frames: 240 } } });
    await untilStatus(server.url, (s) => s['0']?.ready === true, 'worker ready');
    const a = await TestClient.init(server.wsUrl);
    await startedSegment(a);
    const b = await TestClient.init(server.wsUrl);
    await b.waitFor('queue_status');
    const left = performance.now();
    a.close();
    await b.waitFor('gpu_assigned', 1, 1000);
    expect(performance.now() - left).toBeLessThan(1000);
    expect((await status(server.url))['0']?.restarts).toBe(0);
    b.close();
  });

  it('kills and restarts a worker that ignores cancel, and the waiting client still gets it within a second', async () => {
    server = await startServer({ ...workerConfig('ignore_cancel'), default_request: { sampling: { num_frames: 240 } } });
    await untilStatus(server.url, (s) => s['0']?.ready === true, 'worker ready');
    const a = await TestClient.init(server.wsUrl);
    await startedSegment(a);
    const oldPid = (await status(server.url))['0']?.pid;
    const b = await TestClient.init(server.wsUrl);
    await b.waitFor('queue_status');
    const left = performance.now();
    a.close();
    await b.waitFor('gpu_assigned', 1, 1000);
    expect(performance.now() - left).toBeLessThan(1000);
    const s = await status(server.url);
    expect(s['0']?.restarts).toBe(1);
    expect(s['0']?.pid).not.toBe(oldPid);
    b.close();
  });
});
