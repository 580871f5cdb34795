import { afterEach, describe, expect, it } from 'vitest';
import { sleep, startServer, TestClient, type TestServer } from './harness.js';

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

describe('admission queue', () => {
  it('queues sessions past the free workers FIFO with live positions, and moves them up when one leaves', async () => {
    server = await startServer();
    const a = await TestClient.init(server.wsUrl);
    await a.waitFor('gpu_assigned');
    const b = await TestClient.init(server.wsUrl);
    await b.until(() => b.ofType('queue_status').some((m) => m.position === 0 && m.queue_depth === 1), 'b queued');
    const c = await TestClient.init(server.wsUrl);
    await c.until(() => c.ofType('queue_status').some((m) => m.position === 1 && m.queue_depth === 2), 'c queued at 1');
    // b is told the depth changed; its position stays 0.
    await b.until(() => b.ofType('queue_status').some((m) => m.queue_depth === 2), 'b sees depth 2');
    expect(b.ofType('queue_status').every((m) => m.position === 0)).toBe(true);

    b.close();
    await c.until(() => c.ofType('queue_status').at(-1)?.position === 0, 'c moves up');
    expect(c.ofType('queue_status').at(-1)).toEqual({ type: 'queue_status', position: 0, queue_depth: 1 });
    expect((await server.server.inspect()).queueDepth).toBe(1);

    a.close();
    await c.waitFor('gpu_assigned');
    expect(c.ofType('gpu_assigned')[0]?.gpu_id).toBe(0);
    c.close();
  });

  it('ends a session that waits longer than the queue timeout with a retryable gpu_unavailable', async () => {
    server = await startServer({ streaming: { queue_timeout_seconds: 0.3 } });
    const a = await TestClient.init(server.wsUrl);
    await a.waitFor('gpu_assigned');
    const b = await TestClient.init(server.wsUrl);
    const closed = await b.closed;
    expect(b.messages.at(-1)).toMatchObject({ type: 'error', code: 'gpu_unavailable', retryable: true });
    expect(closed.code).toBe(1013);
    expect((await server.server.inspect()).queueDepth).toBe(0);
    a.close();
  });

  it('times out an idle queued session through the reaper', async () => {
    server = await startServer({ streaming: { session_timeout_seconds: 0.3 } });
    const a = await TestClient.init(server.wsUrl);
    await a.waitFor('gpu_assigned');
    // a keeps itself alive with control frames; b only waits.
    const keepAlive = setInterval(() => a.send({ type: 'enhancement_updated', enabled: true }), 50);
    try {
      const b = await TestClient.init(server.wsUrl);
      await b.waitFor('queue_status');
      const closed = await b.closed;
      expect(closed.code).toBe(1000);
      expect(b.messages.at(-1)).toEqual({ type: 'session_timeout', timeout_seconds: 0.3 });
      expect((await server.server.inspect()).queueDepth).toBe(0);
      expect(a.ws.readyState).toBe(a.ws.OPEN);
    } finally {
      clearInterval(keepAlive);
      a.close();
    }
  });

  it('frees the worker for a waiting session within a second when a client leaves mid-segment', async () => {
    server = await startServer({
      default_request: { sampling: { num_frames: 240 } },
      generator: { synthetic: { pace: 'realtime', step_ms: 0 } },
    });
    const a = await TestClient.init(server.wsUrl);
    await a.waitFor('ltx2_stream_start');
    a.send({ type: 'segment_prompt_source', prompt: 'long' });
    await a.until(() => a.received.some((r) => r.kind === 'binary'), 'media flowing');
    const b = await TestClient.init(server.wsUrl);
    await b.waitFor('queue_status');
    const left = performance.now();
    a.close();
    await b.waitFor('gpu_assigned', 1, 1000);
    const boundAfter = performance.now() - left;
    expect(boundAfter).toBeLessThan(1000);
    // The aborted segment never completed and its session ended complete.
    expect(a.ofType('ltx2_segment_complete')).toHaveLength(0);
    await sleep(50);
    expect(await server.sessionCount()).toBe(1);
    b.close();
  });
});
