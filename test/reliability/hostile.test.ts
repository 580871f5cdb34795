/**
 * Hostile clients, each over a real socket: the server stays bounded in memory, never
 * stalls for one client, never lets a client lock others out, and answers every abuse
 * with a clear error. Counts and sizes are small so each case runs in a few seconds; the
 * `hostile` benchmark runs the same abuse at scale and reports memory and stalls.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeSyntheticContinuation } from '../../src/generation/synthetic-continuation.js';
import { startServer, TestClient, type TestServer } from '../server/harness.js';
import { connectQuiet, expectHealthy, httpGet, TINY_PNG_BASE64, waitUntil } from './helpers.js';
import { clientFrame, frameHeader, Opcode, RawWsClient } from './raw-ws.js';

let server: TestServer | undefined;
const cleanups: (() => void)[] = [];
afterEach(async () => {
  await server?.close();
  server = undefined;
  for (const cleanup of cleanups.splice(0)) cleanup();
});

const MiB = 1024 * 1024;

function portOf(s: TestServer): number {
  return Number(new URL(s.url).port);
}

/** A valid synthetic continuation state carrying `padBytes` of extra payload. */
function bigState(padBytes: number): Record<string, unknown> {
  const state = encodeSyntheticContinuation({
    nextFrameIndex: 24,
    fps: 24,
    sampleRate: 48000,
    audioPhase: 0,
    audioOriginFrame: 0,
    audioOriginSample: 0,
    motionSeed: 1,
    prompt: 'a long story',
  });
  return { kind: state.kind, payload: { ...state.payload, pad: 'x'.repeat(padBytes) } };
}

/** Samples the largest send backlog any session had, until stopped. */
function watchBacklog(s: TestServer): { stop(): number } {
  let max = 0;
  let running = true;
  void (async () => {
    while (running) {
      const snapshot = await s.server.inspect();
      for (const session of snapshot.sessions) max = Math.max(max, session.sendBacklogBytes);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  })();
  return {
    stop: () => {
      running = false;
      return max;
    },
  };
}

describe('replies a client never reads', () => {
  it('stops reading a client whose snapshot replies pile up, and closes it at the hard ceiling or the stall timeout', async () => {
    const limits = {
      max_continuation_state_bytes: MiB,
      send_high_water_bytes: MiB,
      send_low_water_bytes: 256 * 1024,
      send_hard_limit_bytes: 4 * MiB,
      client_stall_timeout_seconds: 1,
      heartbeat_interval_seconds: 0,
    };
    server = await startServer({ limits });
    const state = bigState(900 * 1024);
    const raw = await RawWsClient.handshake(portOf(server));
    // Never read again after the handshake: the kernel buffers fill, then the server's backlog.
    raw.socket.pause();
    raw.sendText(JSON.stringify({ type: 'session_init_v2', continuation_state: state }));
    const watch = watchBacklog(server);
    // 2,000 requests of 26 bytes would ask for ~3.6 GB of replies.
    for (let i = 0; i < 2000; i++) raw.write(clientFrame(Opcode.TEXT, '{"type":"snapshot_state"}'));
    await waitUntil(async () => (await server?.sessionCount()) === 0, 'the hostile session to be closed', 15_000);
    const maxBacklog = watch.stop();
    // Bounded by the ceiling plus the one reply that crossed it (the state twice, JSON-encoded).
    expect(maxBacklog).toBeLessThanOrEqual(limits.send_hard_limit_bytes + 2 * MiB + 64 * 1024);
    await expectHealthy(server.url);
    raw.reset();
  });

  it('bounds a flood of invalid frames from a client that never reads, and serves others meanwhile', async () => {
    const limits = { send_high_water_bytes: 256 * 1024, send_low_water_bytes: 64 * 1024, send_hard_limit_bytes: 20 * MiB, client_stall_timeout_seconds: 1, heartbeat_interval_seconds: 0 };
    server = await startServer({ limits, pool: { workers: 2 } });
    const bystander = await TestClient.init(server.wsUrl);
    await bystander.waitFor('gpu_assigned');
    const raw = await RawWsClient.handshake(portOf(server));
    raw.socket.pause();
    raw.sendText(JSON.stringify({ type: 'session_init_v2' }));
    const watch = watchBacklog(server);
    const frame = clientFrame(Opcode.TEXT, '{}');
    const burst = Buffer.concat(Array.from({ length: 20_000 }, () => frame));
    for (let i = 0; i < 10; i++) raw.write(burst); // 200,000 frames, each worth an error reply
    bystander.send({ type: 'segment_prompt_source', prompt: 'meanwhile' });
    await bystander.waitFor('ltx2_segment_complete');
    await new Promise((resolve) => setTimeout(resolve, 500));
    // The kernel's socket buffers take the first replies; past them, reading stops at the
    // high watermark: what the server holds stays within it plus what was already parsed.
    expect(watch.stop()).toBeLessThan(limits.send_high_water_bytes + 2 * MiB);
    await expectHealthy(server.url);
    raw.reset();
    await waitUntil(async () => (await server?.sessionCount()) === 1, 'the flooding session to end with its connection');
    bystander.close();
  });

  it('answers pings through the same budget: a ping flood from a non-reader stays bounded and is closed', async () => {
    // The kernel's socket buffers may take all the pongs; the heartbeat still finds a client that reads nothing.
    server = await startServer({ limits: { send_high_water_bytes: 64 * 1024, send_low_water_bytes: 16 * 1024, client_stall_timeout_seconds: 1, heartbeat_interval_seconds: 0.5 } });
    const raw = await RawWsClient.handshake(portOf(server));
    raw.socket.pause();
    raw.sendText(JSON.stringify({ type: 'session_init_v2' }));
    const watch = watchBacklog(server);
    const ping = clientFrame(Opcode.PING, Buffer.alloc(125, 1));
    const burst = Buffer.concat(Array.from({ length: 10_000 }, () => ping));
    for (let i = 0; i < 20; i++) raw.write(burst);
    await waitUntil(async () => (await server?.sessionCount()) === 0, 'the pinging session to be closed', 15_000);
    expect(watch.stop()).toBeLessThan(2 * MiB);
    raw.reset();
  });
});

describe('frames larger than allowed', () => {
  it('refuses a frame after init as soon as its header announces too many bytes, with an error first', async () => {
    server = await startServer({ limits: { max_control_frame_bytes: 64 * 1024 } });
    const raw = await RawWsClient.handshake(portOf(server));
    raw.sendText(JSON.stringify({ type: 'session_init_v2' }));
    await raw.until(() => raw.messages.some((m) => m.type === 'ltx2_stream_start'), 'the session to start');
    // The header of a 40 MiB frame and 10 bytes of it: nothing more is ever sent.
    const { header } = frameHeader(Opcode.TEXT, 40 * MiB);
    raw.write(header);
    raw.write(Buffer.alloc(10, 0x20));
    await raw.until(() => raw.closeCode !== undefined, 'the close frame', 5000);
    expect(raw.closeCode).toBe(1009);
    expect(raw.messages.at(-1)).toEqual({ type: 'error', code: 'invalid_message', message: 'frame exceeds the 65536-byte limit', retryable: false });
    raw.reset();
  });
});

describe('expensive opening frames', () => {
  it('refuses an opening frame of millions of tiny values by counting, not by validating each one', async () => {
    server = await startServer();
    const raw = await RawWsClient.handshake(portOf(server));
    raw.write(clientFrame(Opcode.TEXT, `{"type":"session_init_v2","curated_prompts":[${'1,'.repeat(2_000_000)}1]}`));
    await raw.until(() => raw.closeCode !== undefined, 'the close frame', 10_000);
    expect(raw.closeCode).toBe(1003);
    expect(raw.messages).toEqual([{ type: 'error', code: 'invalid_message', message: 'frame holds more than 100000 JSON values', retryable: false }]);
    raw.reset();
  });

  it('refuses a huge opening frame of another type for its type, without validating its body', async () => {
    server = await startServer();
    const raw = await RawWsClient.handshake(portOf(server));
    const prompts = Array.from({ length: 50_000 }, () => 7);
    raw.write(clientFrame(Opcode.TEXT, JSON.stringify({ type: 'seed_prompts_updated', seed_prompts: prompts })));
    await raw.until(() => raw.closeCode !== undefined, 'the close frame', 10_000);
    expect(raw.messages).toEqual([{ type: 'error', code: 'invalid_message', message: 'first frame must be session_init_v2, got seed_prompts_updated', retryable: false }]);
    raw.reset();
  });

  it('refuses an initial image whose bytes are not what its mime says', async () => {
    server = await startServer();
    const jpeg = Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 16, ...Buffer.from('JFIF\0'), 1, 1, 0, 0, 1, 0, 1, 0, 0]).toString('base64');
    const client = await TestClient.init(server.wsUrl, { initial_image: { mime: 'image/png', data: jpeg } });
    expect((await client.closed).code).toBe(1003);
    expect(client.messages[0]).toMatchObject({ type: 'error', code: 'invalid_message', message: 'initial_image.data: not a PNG image (declared image/png, found JPEG)' });
  });

  it('keeps serving while a large opening frame is parsed, and keeps none of it once applied', async () => {
    server = await startServer({ pool: { workers: 2 } });
    const bystander = await TestClient.init(server.wsUrl, { loop_generation_enabled: true, curated_prompts: ['bystander'] });
    await bystander.waitFor('ltx2_segment_complete');
    const png = Buffer.concat([Buffer.from(TINY_PNG_BASE64, 'base64'), Buffer.alloc(12 * MiB, 3)]).toString('base64');
    const uploader = await TestClient.init(server.wsUrl, { initial_image: { mime: 'image/png', data: png } });
    await uploader.waitFor('gpu_assigned', 1, 20_000);
    const snapshot = await server.server.inspect();
    expect(snapshot.tempBytes).toBe(12 * MiB + Buffer.from(TINY_PNG_BASE64, 'base64').length);
    expect(snapshot.initBytesInFlight).toBe(0);
    expect(bystander.ofType('error')).toEqual([]);
    uploader.close();
    bystander.close();
  });

  it('refuses an opening frame that would pass the init byte budget, with a retryable session_rejected', async () => {
    server = await startServer({ limits: { init_bytes_in_flight: 2 * MiB } });
    const port = portOf(server);
    // Two uploads in flight, never finished: the second passes the budget.
    const first = await RawWsClient.handshake(port);
    const second = await RawWsClient.handshake(port);
    const { header } = frameHeader(Opcode.TEXT, 20 * MiB);
    first.write(header);
    first.write(Buffer.alloc(1.5 * MiB, 0x20));
    await waitUntil(async () => (await server?.server.inspect())?.initBytesInFlight !== undefined && ((await server?.server.inspect())?.initBytesInFlight ?? 0) >= MiB, 'the first upload to count');
    second.write(header);
    second.write(Buffer.alloc(1.5 * MiB, 0x20));
    await second.until(() => second.closeCode !== undefined, 'the refusal', 5000);
    expect(second.closeCode).toBe(1013);
    expect(second.messages[0]).toMatchObject({ type: 'error', code: 'session_rejected', retryable: true });
    first.reset();
    second.reset();
    await waitUntil(async () => (await server?.server.inspect())?.initBytesInFlight === 0, 'the budget to be free again');
  });
});

describe('clients that hold a place without using it', () => {
  it('lets connections that never send their init hold a place only until the init deadline', async () => {
    server = await startServer({ limits: { max_pending_inits: 3, init_timeout_seconds: 0.5 } });
    const silent = await Promise.all([0, 1, 2].map(() => connectQuiet(server!.wsUrl)));
    const refused = await connectQuiet(server.wsUrl);
    expect((await refused.closed).code).toBe(1013);
    for (const client of silent) {
      expect((await client.closed).code).toBe(1000);
      expect(client.messages).toEqual([{ type: 'session_timeout', timeout_seconds: 0.5 }]);
    }
    const late = await TestClient.init(server.wsUrl);
    await late.waitFor('gpu_assigned');
    late.close();
  });

  it('does not count invalid frames or snapshot requests as activity: the idle timeout still ends the session', async () => {
    server = await startServer({ streaming: { session_timeout_seconds: 0.6 } });
    const client = await TestClient.init(server.wsUrl);
    await client.waitFor('gpu_assigned');
    const noise = setInterval(() => {
      if (client.ws.readyState !== client.ws.OPEN) return;
      client.sendRaw('{not json');
      client.send({ type: 'snapshot_state' });
    }, 100);
    try {
      expect((await client.closed).code).toBe(1000);
      expect(client.ofType('session_timeout')).toEqual([{ type: 'session_timeout', timeout_seconds: 0.6 }]);
    } finally {
      clearInterval(noise);
    }
  });

  it('frees the worker of a client that stops reading mid-stream, within the heartbeat', async () => {
    server = await startServer({ limits: { heartbeat_interval_seconds: 0.3 }, generator: { synthetic: { pace: 'realtime' } } });
    const raw = await RawWsClient.handshake(portOf(server));
    raw.sendText(JSON.stringify({ type: 'session_init_v2', loop_generation_enabled: true, curated_prompts: ['never watched'] }));
    await raw.until(() => raw.frames.some((f) => f.opcode === Opcode.BINARY), 'media');
    raw.socket.pause(); // stops reading: pings go unanswered
    const waiting = await TestClient.init(server.wsUrl);
    await waiting.waitFor('queue_status');
    await waiting.waitFor('gpu_assigned', 1, 5000);
    waiting.close();
    raw.reset();
  });

  it('is not fooled by a non-reader that sends pongs of its own: only a pong echoing the ping counts', async () => {
    server = await startServer({ limits: { heartbeat_interval_seconds: 0.3 } });
    const raw = await RawWsClient.handshake(portOf(server));
    raw.sendText(JSON.stringify({ type: 'session_init_v2' }));
    await raw.until(() => raw.messages.some((m) => m.type === 'gpu_assigned'), 'the session to start');
    raw.socket.pause();
    const pongs = setInterval(() => raw.write(clientFrame(Opcode.PONG, Buffer.alloc(0))), 50);
    try {
      await waitUntil(async () => (await server?.sessionCount()) === 0, 'the silent reader to be terminated', 5000);
    } finally {
      clearInterval(pongs);
      raw.reset();
    }
  });

  it('closes HTTP requests and upgrades whose headers never finish', async () => {
    server = await startServer({ limits: { http_headers_timeout_seconds: 0.5 } });
    const port = portOf(server);
    const half = async (text: string): Promise<number> => {
      const socket = connect(port, '127.0.0.1');
      socket.on('error', () => undefined);
      socket.resume(); // read (and drop) the 408, so the server's close is seen
      await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
      socket.write(text);
      const started = performance.now();
      await new Promise<void>((resolve) => socket.once('close', () => resolve()));
      return performance.now() - started;
    };
    const [http, upgrade] = await Promise.all([half('GET /health HTTP/1.1\r\nHost: x\r\n'), half('GET /v1/stream HTTP/1.1\r\nUpgrade: websocket\r\n')]);
    expect(http).toBeLessThan(5000);
    expect(upgrade).toBeLessThan(5000);
    await expectHealthy(server.url);
  });

  it('survives hundreds of connections that connect and reset past the limits, and forgets them all', async () => {
    server = await startServer({ limits: { max_pending_inits: 8 }, streaming: { max_sessions: 4 } });
    const port = portOf(server);
    for (let round = 0; round < 5; round++) {
      const clients = await Promise.all(Array.from({ length: 40 }, () => RawWsClient.handshake(port)));
      for (const c of clients) {
        c.sendText(JSON.stringify({ type: 'session_init_v2' }));
        c.reset();
      }
    }
    await waitUntil(async () => {
      const s = await server!.server.inspect();
      return s.sessions.length === 0 && s.upgradeSockets === 0 && s.initBytesInFlight === 0 && s.queueDepth === 0;
    }, 'every reset connection to be forgotten');
    const after = await TestClient.init(server.wsUrl);
    await after.waitFor('gpu_assigned');
    after.close();
  });
});

describe('a stalled event loop', () => {
  it('does not terminate live peers whose pongs arrived during the stall', async () => {
    server = await startServer({ limits: { heartbeat_interval_seconds: 0.2 } });
    const client = await TestClient.init(server.wsUrl);
    await client.waitFor('gpu_assigned');
    // Server and client share this process: block both for five heartbeat intervals.
    const until = Date.now() + 1000;
    while (Date.now() < until) {
      // busy
    }
    await new Promise((resolve) => setTimeout(resolve, 600));
    expect(client.ws.readyState).toBe(client.ws.OPEN);
    client.close();
  });
});

describe('disk', () => {
  it('bounds a session log that one client tries to grow', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'livegen-log-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    server = await startServer({ logging: { session_log_dir: dir, session_log_max_bytes: 32 * 1024 } });
    const client = await TestClient.init(server.wsUrl, { client_id: 'grower' });
    await client.waitFor('gpu_assigned');
    // 600 KB per frame: under the control-frame limit, far over what one log line may hold.
    const prompts = Array.from({ length: 200 }, (_, i) => `prompt ${i} ${'y'.repeat(3000)}`);
    for (let i = 0; i < 200; i++) client.send({ type: 'seed_prompts_updated', seed_prompts: prompts });
    client.send({ type: 'snapshot_state' });
    await client.waitFor('error'); // nothing stored yet: the answer shows every frame before it was handled
    client.close();
    await client.closed;
    await waitUntil(async () => (await server?.sessionCount()) === 0, 'the session to end');
    const [file] = readdirSync(dir);
    const path = join(dir, file as string);
    await waitUntil(() => readFileSync(path, 'utf8').includes('log_truncated'), 'the truncation line');
    expect(statSync(path).size).toBeLessThan(32 * 1024 + 1024);
    const lines = readFileSync(path, 'utf8').trim().split('\n');
    expect(JSON.parse(lines.at(-1) as string)).toMatchObject({ event: 'log_truncated', payload: { max_bytes: 32 * 1024 } });
  });

  const root = process.getuid?.() === 0;
  it.skipIf(!root)('gives a clear retryable error and leaves no partial file when the temp filesystem is full', async () => {
    const mount = mkdtempSync(join(tmpdir(), 'livegen-full-'));
    cleanups.push(() => rmSync(mount, { recursive: true, force: true }));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mount]);
    cleanups.unshift(() => execFileSync('umount', ['-l', mount]));
    mkdirSync(join(mount, 'tmp'));
    server = await startServer({}, { tempDir: join(mount, 'tmp') });
    const png = Buffer.concat([Buffer.from(TINY_PNG_BASE64, 'base64'), Buffer.alloc(2 * MiB, 1)]).toString('base64');
    const client = await TestClient.init(server.wsUrl, { initial_image: { mime: 'image/png', data: png } });
    const closed = await client.closed;
    expect(client.messages[0]).toEqual({
      type: 'error',
      code: 'internal_error',
      message: "cannot store the initial image: the server's temp space is full; retry later",
      retryable: true,
    });
    expect(closed.code).toBe(1011);
    const runDir = (await server.server.inspect()).tempDir;
    expect(readdirSync(runDir)).toEqual(['pid']);
    const next = await TestClient.init(server.wsUrl);
    await next.waitFor('gpu_assigned');
    next.close();
  });
});

describe('the state a client needs to go on', () => {
  it('sends the last state before the close at the segment cap, and a new session resumes from it', async () => {
    server = await startServer({ streaming: { generation_segment_cap: 1 } });
    const client = await TestClient.init(server.wsUrl);
    await client.waitFor('gpu_assigned');
    client.send({ type: 'segment_prompt_source', prompt: 'one' });
    expect((await client.closed).code).toBe(1000);
    const types = client.messages.map((m) => m.type);
    expect(types.slice(-2)).toEqual(['continuation_state_snapshot', 'ltx2_stream_complete']);
    const state = client.ofType('continuation_state_snapshot')[0]?.state;
    const resumed = await TestClient.init(server.wsUrl, { continuation_state: state });
    await resumed.waitFor('gpu_assigned');
    resumed.close();
  });

  it('sends the last good state before a retryable worker_failed', async () => {
    let calls = 0;
    const failing = {
      modelId: 'test/fails-second',
      audio: null,
      async *generate(request: { width: number; height: number; numFrames: number }) {
        calls += 1;
        if (calls === 2) throw new Error('the GPU fell over');
        for (let i = 0; i < request.numFrames; i++) yield { type: 'video' as const, frame: Buffer.alloc(request.width * request.height * 3, 100) };
        yield { type: 'done' as const, continuationState: { kind: 'test.v1', payload: { segment: calls } } };
      },
    };
    server = await startServer({}, { generators: [failing] });
    const client = await TestClient.init(server.wsUrl);
    await client.waitFor('gpu_assigned');
    client.send({ type: 'segment_prompt_source', prompt: 'good' });
    await client.waitFor('ltx2_segment_complete');
    client.send({ type: 'segment_prompt_source', prompt: 'bad' });
    await client.closed;
    const tail = client.messages.slice(-3);
    expect(tail.map((m) => m.type)).toEqual(['continuation_state_snapshot', 'error', 'ltx2_stream_complete']);
    expect(tail[0]).toMatchObject({ state: { kind: 'test.v1', payload: { segment: 1 } } });
    expect(tail[1]).toMatchObject({ code: 'worker_failed', retryable: true });
  });
});

describe('HTTP probes during abuse', () => {
  it('answers /health while a client floods it with invalid frames', async () => {
    server = await startServer();
    const raw = await RawWsClient.handshake(portOf(server));
    raw.socket.pause();
    raw.sendText(JSON.stringify({ type: 'session_init_v2' }));
    const frame = clientFrame(Opcode.TEXT, '{');
    raw.write(Buffer.concat(Array.from({ length: 50_000 }, () => frame)));
    const { status } = await httpGet(server.url, '/health');
    expect(status).toBe(200);
    raw.reset();
  });
});
