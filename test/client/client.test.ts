import { afterEach, describe, expect, it, vi } from 'vitest';
import { LivegenClient, LivegenError, parseContinuationState, streamUrl } from '../../src/client/index.js';
import { probeMedia, sleep, startServer, type TestServer } from '../server/harness.js';
import { nodeOptions, record, segmentBytes, segmentsDone } from './helpers.js';

let server: TestServer | undefined;
const clients: LivegenClient[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.leave()));
  await server?.close();
  server = undefined;
});

async function connected(url: string): Promise<LivegenClient> {
  const client = await LivegenClient.connect(url, nodeOptions);
  clients.push(client);
  return client;
}

const W = 192;
const H = 112;

describe('LivegenClient against a real server', () => {
  it('delivers each segment as an ordered media stream: the init segment first, then its fragments', async () => {
    server = await startServer();
    const client = await connected(server.url);
    const rec = record(client);
    client.init();
    client.requestSegment('first');
    client.requestSegment('second');
    await segmentsDone(client, 2);

    const completes = rec.messages.filter((m) => m.type === 'media_segment_complete');
    const inits = rec.messages.filter((m) => m.type === 'media_init');
    for (const idx of [0, 1]) {
      const chunks = rec.media.filter((c) => c.segmentIdx === idx);
      const complete = completes[idx];
      const init = inits[idx];
      expect(chunks.map((c) => c.kind)).toEqual(['init', ...Array(chunks.length - 1).fill('fragment')]);
      expect(chunks.map((c) => c.index)).toEqual(chunks.map((_, i) => i));
      expect(chunks.every((c) => c.streamId === init?.stream_id && c.mime === init?.mime)).toBe(true);
      expect(chunks.length - 1).toBe(complete?.chunks);
      expect(chunks.reduce((n, c) => n + c.data.byteLength, 0)).toBe(complete?.bytes);
      expect(Buffer.from(chunks[0]!.data.subarray(4, 8)).toString('latin1')).toBe('ftyp');
    }
    // Segment 0's media all comes before segment 1's.
    expect(rec.media.map((c) => c.segmentIdx)).toEqual([...rec.media.map((c) => c.segmentIdx)].sort());
    const first = await probeMedia(segmentBytes(rec, 0), W, H);
    const second = await probeMedia(segmentBytes(rec, 1), W, H);
    expect(first.codecs).toEqual(['h264', 'aac']);
    expect(first.frameIndices).toEqual(Array.from({ length: 24 }, (_, i) => i));
    expect(second.frameIndices).toEqual(Array.from({ length: 24 }, (_, i) => 24 + i));
  });

  it('emits a typed event for every server message, in protocol order', async () => {
    server = await startServer();
    const client = await connected(server.wsUrl);
    const rec = record(client);
    const seen: string[] = [];
    client.on('queue_status', (m) => seen.push(`queue_status:${m.position}/${m.queue_depth}`));
    client.on('gpu_assigned', (m) => seen.push(`gpu_assigned:${m.gpu_id}`));
    client.on('ltx2_stream_start', (m) => seen.push(`ltx2_stream_start:${m.width}x${m.height}@${m.fps}`));
    client.on('ltx2_segment_start', (m) => seen.push(`ltx2_segment_start:${m.prompt}:${m.total_steps}`));
    client.on('step_complete', (m) => seen.push(`step_complete:${m.step}/${m.total_steps}`));
    client.on('media_init', (m) => seen.push(`media_init:${m.segment_idx}`));
    client.on('media_segment_complete', (m) => seen.push(`media_segment_complete:${m.pts_base_ms}+${m.duration_ms}`));
    client.on('ltx2_segment_complete', (m) => seen.push(`ltx2_segment_complete:${m.segment_idx}`));
    client.init({ client_id: 'sdk-test', curated_prompts: ['a', 'b'] });
    client.requestSegment('hello', { seed: 7 });
    await segmentsDone(client, 1);

    expect(seen).toEqual([
      'queue_status:0/0',
      'gpu_assigned:0',
      `ltx2_stream_start:${W}x${H}@24`,
      'ltx2_segment_start:hello:3',
      'step_complete:1/3',
      'step_complete:2/3',
      'step_complete:3/3',
      'media_init:0',
      'media_segment_complete:0+1000',
      'ltx2_segment_complete:0',
    ]);
    const order = rec.events.filter((e) => !e.startsWith('media:fragment'));
    expect(order.slice(order.indexOf('media_init'), order.indexOf('media_init') + 2)).toEqual(['media_init', 'media:init']);
    expect(client.session).toBe('active');
    expect(client.stream).toMatchObject({ width: W, height: H, fps: 24, num_frames: 24 });
    expect(rec.errors).toEqual([]);
  });

  it('reports a server error frame as a LivegenError with its code and retryable flag, and stays connected', async () => {
    server = await startServer();
    const client = await connected(server.url);
    client.init();
    await client.next('ltx2_stream_start');
    const error = client.next('error');
    client.sendRaw(JSON.stringify({ type: 'segment_prompt_source' }));
    const e = await error;
    expect(e).toBeInstanceOf(LivegenError);
    expect(e).toMatchObject({ code: 'invalid_message', retryable: true, source: 'server' });
    expect(e.message).toMatch(/prompt/);
    client.requestSegment('still here');
    await segmentsDone(client, 1);
    expect(client.phase).toBe('open');
  });

  it('ends with invalid_message and close 1003 when the first frame is not session_init_v2', async () => {
    server = await startServer();
    const client = await connected(server.url);
    const rec = record(client);
    client.sendRaw(JSON.stringify({ type: 'snapshot_state' }));
    const closed = await client.closed;
    expect(closed.code).toBe(1003);
    expect(rec.errors).toEqual([expect.objectContaining({ code: 'invalid_message', retryable: false, source: 'server' })]);
    expect(client.phase).toBe('closed');
  });

  it('checks requests before sending them: an invalid one throws invalid_request and nothing goes out', async () => {
    server = await startServer();
    const client = await connected(server.url);
    const rec = record(client);
    expect(() => client.requestSegment('too early')).toThrow(/init\(\) first/);
    client.init();
    expect(() => client.requestSegment('x', { num_inference_steps: 0 })).toThrow(
      expect.objectContaining({ code: 'invalid_request', message: expect.stringMatching(/num_inference_steps/) }),
    );
    expect(() => client.init()).toThrow(/already sent/);
    await client.next('ltx2_stream_start');
    await sleep(100);
    expect(rec.errors).toEqual([]);
  });

  it('snapshot() resolves with the continuation state after a segment and rejects with internal_error before one', async () => {
    server = await startServer();
    const client = await connected(server.url);
    client.init();
    await client.next('ltx2_stream_start');
    client.on('error', () => undefined);
    await expect(client.snapshot()).rejects.toMatchObject({ code: 'internal_error', source: 'server' });
    client.requestSegment('one');
    await segmentsDone(client, 1);
    const state = await client.snapshot();
    expect(state.kind).toBe('livegen.synthetic.v1');
    expect(state.payload).toMatchObject({ nextFrameIndex: 24, prompt: 'one' });
    expect(client.lastSnapshot).toEqual(state);
  });

  it('resume(url, lastSnapshot) starts a new session whose first segment continues the old one', async () => {
    server = await startServer();
    const first = await connected(server.url);
    first.init();
    first.requestSegment('before');
    first.requestSegment('before again');
    await segmentsDone(first, 2);
    const snapshot = await first.snapshot();
    await first.leave();

    const resumed = await LivegenClient.resume(server.url, snapshot, { client_id: 'resumer' }, nodeOptions);
    clients.push(resumed);
    const rec = record(resumed);
    resumed.requestSegment('after');
    await segmentsDone(resumed, 1);
    const media = await probeMedia(segmentBytes(rec, 0), W, H);
    expect(media.frameIndices).toEqual(Array.from({ length: 24 }, (_, i) => 48 + i));
    expect((await resumed.snapshot()).payload).toMatchObject({ nextFrameIndex: 72, prompt: 'after' });
  });

  it('defers requests while paused and runs them when resumed', async () => {
    server = await startServer();
    const client = await connected(server.url);
    const rec = record(client);
    client.init();
    client.setPaused(true);
    client.requestSegment('waits');
    await client.next('ltx2_stream_start');
    await sleep(300);
    expect(rec.events).not.toContain('ltx2_segment_start');
    client.setPaused(false);
    await segmentsDone(client, 1);
    expect(rec.messages.find((m) => m.type === 'ltx2_segment_start')).toMatchObject({ prompt: 'waits', source: 'user' });
  });

  it('loop generation cycles the curated prompts set with setSeedPrompts', async () => {
    server = await startServer();
    const client = await connected(server.url);
    const rec = record(client);
    client.init();
    // The server applies the init after reading the frames right behind it, so toggles sent
    // in the same breath are overwritten by the init's defaults; wait until it is applied.
    await client.next('ltx2_stream_start');
    client.setSeedPrompts(['red', 'blue']);
    client.setLoopGeneration(true);
    await segmentsDone(client, 3);
    client.setLoopGeneration(false);
    const starts = rec.messages.flatMap((m) => (m.type === 'ltx2_segment_start' ? [`${m.source}:${m.prompt}`] : []));
    expect(starts.slice(0, 3)).toEqual(['curated:red', 'curated:blue', 'curated:red']);
  });

  it('auto-extension continues after the last request with a derived prompt', async () => {
    server = await startServer();
    const client = await connected(server.url);
    const rec = record(client);
    client.init({ auto_extension_enabled: true });
    client.requestSegment('keep going');
    await segmentsDone(client, 2);
    client.setAutoExtension(false);
    const starts = rec.messages.flatMap((m) => (m.type === 'ltx2_segment_start' ? [m.source] : []));
    expect(starts.slice(0, 2)).toEqual(['user', 'auto_extension']);
  });

  it('leave() closes with 1000, the server ends the session, and later calls throw not_open', async () => {
    server = await startServer();
    const client = await connected(server.url);
    client.init();
    await client.next('ltx2_stream_start');
    expect(await server.sessionCount()).toBe(1);
    const info = await client.leave();
    expect(info.code).toBe(1000);
    expect(client.phase).toBe('closed');
    expect(client.session).toBe('ended');
    const running = server;
    await vi.waitFor(async () => expect(await running?.sessionCount()).toBe(0));
    expect(() => client.requestSegment('gone')).toThrow(expect.objectContaining({ code: 'not_open' }));
    await expect(client.snapshot()).rejects.toMatchObject({ code: 'not_open' });
    await expect(client.next('ltx2_segment_start')).rejects.toMatchObject({ code: 'connection_closed' });
  });

  it('tells when the segment cap closes the stream: ltx2_stream_complete then close 1000', async () => {
    server = await startServer({ streaming: { generation_segment_cap: 1 } });
    const client = await connected(server.url);
    const complete = client.next('ltx2_stream_complete');
    client.init();
    client.requestSegment('only one');
    expect((await complete).reason).toBe('segment_cap');
    expect((await client.closed).code).toBe(1000);
  });

  it('fails connect() with a retryable connection_failed when nothing listens', async () => {
    server = await startServer();
    const url = server.url;
    await server.close();
    server = undefined;
    const client = new LivegenClient(nodeOptions);
    await expect(client.connect(url)).rejects.toMatchObject({ code: 'connection_failed', retryable: true });
  });
});

describe('LivegenClient helpers', () => {
  it('needs a WebSocket implementation where the runtime has none', () => {
    vi.stubGlobal('WebSocket', undefined);
    try {
      expect(() => new LivegenClient()).toThrow(/pass \{ WebSocket \}/);
    } finally {
      vi.unstubAllGlobals();
    }
  });

  it('streamUrl turns a server or page address into the stream endpoint', () => {
    expect(streamUrl('http://127.0.0.1:8000')).toBe('ws://127.0.0.1:8000/v1/stream');
    expect(streamUrl('https://example.test/index.html?x=1#y')).toBe('wss://example.test/v1/stream');
    expect(streamUrl('ws://h:1')).toBe('ws://h:1/v1/stream');
    expect(streamUrl('ws://h:1/custom')).toBe('ws://h:1/custom');
    expect(streamUrl('http://h:1/?token=secret&x=1')).toBe('ws://h:1/v1/stream?token=secret');
    expect(streamUrl('ws://h:1', 'k e y')).toBe('ws://h:1/v1/stream?token=k+e+y');
    expect(() => streamUrl('ftp://h')).toThrow(TypeError);
  });

  it('parseContinuationState reads a saved state or a snapshot message and names what is wrong', () => {
    const state = { kind: 'k', payload: { n: 1 } };
    expect(parseContinuationState(state)).toEqual(state);
    expect(parseContinuationState({ type: 'continuation_state_snapshot', state })).toEqual(state);
    expect(() => parseContinuationState({ kind: 'k' })).toThrow(/payload/);
    expect(() => parseContinuationState('nope')).toThrow(TypeError);
  });
});
