import { afterEach, describe, expect, it } from 'vitest';
import { ServerMetrics } from '../../src/server/metrics.js';
import { startServer, TestClient, type TestServer } from './harness.js';
import { promSample } from '../../bench/lib/prom.js';

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});


async function scrape(s: TestServer): Promise<string> {
  const res = await fetch(`${s.url}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toContain('text/plain');
  return res.text();
}

/** Scrapes until `predicate` holds (gauges read at scrape time settle a turn after a socket event). */
async function scrapeUntil(s: TestServer, predicate: (text: string) => boolean, what: string): Promise<string> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const text = await scrape(s);
    if (predicate(text)) return text;
    if (Date.now() > deadline) throw new Error(`metrics never showed ${what}:\n${text}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('GET /metrics', () => {
  it('counts one segment in every segment histogram, with its bytes and frames', async () => {
    server = await startServer();
    const client = await TestClient.init(server.wsUrl);
    await client.waitFor('ltx2_stream_start');
    client.send({ type: 'segment_prompt_source', prompt: 'metrics' });
    await client.waitFor('ltx2_segment_complete');
    const complete = client.ofType('media_segment_complete')[0];

    const text = await scrape(server);
    expect(promSample(text, 'livegen_segment_generation_seconds_count')).toBe(1);
    expect(promSample(text, 'livegen_segment_e2e_seconds_count')).toBe(1);
    expect(promSample(text, 'livegen_segment_first_media_seconds_count')).toBe(1);
    expect(promSample(text, 'livegen_segments_completed_total')).toBe(1);
    expect(promSample(text, 'livegen_media_bytes_sent_total')).toBeGreaterThan(0);
    expect(promSample(text, 'livegen_media_bytes_sent_total')).toBe(complete?.bytes);
    expect(promSample(text, 'livegen_frames_sent_total')).toBe(24); // TEST_CONFIG num_frames
    expect(promSample(text, 'livegen_queue_wait_seconds_count')).toBe(1);
    expect(promSample(text, 'livegen_sessions_opened_total')).toBe(1);
    client.close();
  });

  it('shows sessions by state, with every state present', async () => {
    server = await startServer();
    const client = await TestClient.init(server.wsUrl);
    await client.waitFor('ltx2_stream_start');
    const text = await scrape(server);
    expect(promSample(text, 'livegen_sessions', { state: 'active' })).toBe(1);
    for (const state of ['initializing', 'queued', 'gpu_binding', 'complete', 'error', 'timeout', 'rejected']) {
      expect(promSample(text, 'livegen_sessions', { state })).toBe(0);
    }
    expect(promSample(text, 'livegen_workers', { state: 'busy' })).toBe(1);
    expect(promSample(text, 'livegen_workers', { state: 'available' })).toBe(0);

    client.close();
    const after = await scrapeUntil(server, (t) => promSample(t, 'livegen_sessions_ended_total', { state: 'complete' }) === 1, 'the ended session');
    expect(promSample(after, 'livegen_sessions', { state: 'active' })).toBe(0);
    expect(promSample(after, 'livegen_workers', { state: 'available' })).toBe(1);
  });

  it('shows the queue depth rising with a queued client and falling when it leaves', async () => {
    server = await startServer();
    const a = await TestClient.init(server.wsUrl);
    await a.waitFor('gpu_assigned');
    expect(promSample(await scrape(server), 'livegen_queue_depth')).toBe(0);

    const b = await TestClient.init(server.wsUrl);
    await b.waitFor('queue_status');
    const queued = await scrape(server);
    expect(promSample(queued, 'livegen_queue_depth')).toBe(1);
    expect(promSample(queued, 'livegen_sessions', { state: 'queued' })).toBe(1);

    b.close();
    await scrapeUntil(server, (t) => promSample(t, 'livegen_queue_depth') === 0, 'queue depth 0');
    a.close();
  });

  it('counts a bad opening frame as errors_total{code="invalid_message"}', async () => {
    server = await startServer();
    const client = await TestClient.connect(server.wsUrl);
    client.send({ type: 'snapshot_state' });
    expect((await client.closed).code).toBe(1003);
    const text = await scrapeUntil(server, (t) => promSample(t, 'livegen_sessions_ended_total', { state: 'rejected' }) === 1, 'the rejected session');
    expect(promSample(text, 'livegen_errors_total', { code: 'invalid_message' })).toBe(1);
  });

  it('counts a connection refused at max_sessions as rejected and as errors_total{code="session_rejected"}', async () => {
    server = await startServer({ streaming: { max_sessions: 1 } });
    const a = await TestClient.init(server.wsUrl);
    await a.waitFor('gpu_assigned');
    const b = await TestClient.init(server.wsUrl);
    expect((await b.closed).code).toBe(1013);
    const text = await scrape(server);
    expect(promSample(text, 'livegen_sessions_rejected_total')).toBe(1);
    expect(promSample(text, 'livegen_errors_total', { code: 'session_rejected' })).toBe(1);
    a.close();
  });

  it('reports an idle send queue as zero and process metrics under the livegen_ prefix', async () => {
    server = await startServer();
    const text = await scrape(server);
    expect(promSample(text, 'livegen_send_queue_bytes')).toBe(0);
    expect(promSample(text, 'livegen_send_queue_frames')).toBe(0);
    expect(promSample(text, 'livegen_process_resident_memory_bytes')).toBeGreaterThan(0);
  });
});

describe('ServerMetrics hooks for other layers', () => {
  const sources = { sessionsByState: () => ({}), queueDepth: () => 0, workers: () => ({ total: 2, available: 2 }) };

  it('sums send-backlog deltas from every connection into the send-queue gauges', async () => {
    const metrics = new ServerMetrics(sources);
    metrics.sendBacklogChanged(1000, 1);
    metrics.sendBacklogChanged(500, 1);
    metrics.sendBacklogChanged(-1000, -1);
    const text = await metrics.registry.metrics();
    expect(promSample(text, 'livegen_send_queue_bytes')).toBe(500);
    expect(promSample(text, 'livegen_send_queue_frames')).toBe(1);
  });

  it('counts worker restarts by worker', async () => {
    const metrics = new ServerMetrics(sources);
    metrics.workerRestarted(1);
    metrics.workerRestarted(1);
    metrics.workerRestarted(0);
    const text = await metrics.registry.metrics();
    expect(promSample(text, 'livegen_worker_restarts_total', { worker: '1' })).toBe(2);
    expect(promSample(text, 'livegen_worker_restarts_total', { worker: '0' })).toBe(1);
  });

  it('records the first-frame-to-first-fragment time when the driver knows it', async () => {
    const metrics = new ServerMetrics(sources);
    metrics.segmentCompleted({ generationMs: 1000, e2eMs: 1100, firstMediaMs: 250, firstFragmentMs: 90, bytes: 10, frames: 24 });
    metrics.segmentCompleted({ generationMs: 1000, e2eMs: 1100, firstMediaMs: 250, bytes: 10, frames: 24 });
    const text = await metrics.registry.metrics();
    expect(promSample(text, 'livegen_segment_first_fragment_seconds_count')).toBe(1);
    expect(promSample(text, 'livegen_segment_first_fragment_seconds_sum')).toBeCloseTo(0.09);
    expect(promSample(text, 'livegen_frames_sent_total')).toBe(48);
  });
});
