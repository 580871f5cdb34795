import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { GenerationEvent, Generator, SegmentRequest } from '../../src/generation/index.js';
import { MAX_INIT_FRAME_BYTES } from '../../src/server/index.js';
import { sleep, startServer, TestClient, type TestServer } from './harness.js';

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close(0);
  server = undefined;
});

/** Frames of random pixels: incompressible, so every JPEG is large. */
class NoiseGenerator implements Generator {
  readonly modelId = 'test/noise';
  readonly audio = null;
  private readonly frames = new Map<number, Buffer[]>();

  async *generate(request: SegmentRequest, signal: AbortSignal): AsyncGenerator<GenerationEvent> {
    const size = request.width * request.height * 3;
    if (!this.frames.has(size)) this.frames.set(size, [randomBytes(size), randomBytes(size), randomBytes(size)]);
    const pool = this.frames.get(size) as Buffer[];
    for (let i = 0; i < request.numFrames; i++) {
      signal.throwIfAborted();
      yield { type: 'video', frame: pool[i % pool.length] as Buffer };
      await new Promise((resolve) => setImmediate(resolve));
    }
    yield { type: 'done' };
  }
}

async function sessionOf(s: TestServer, index = 0) {
  const session = (await s.server.inspect()).sessions[index];
  if (!session) throw new Error('no session');
  return session;
}

/** A client frame by hand (masked, as RFC 6455 requires of clients). */
function maskedTextFrame(text: string): Buffer {
  const payload = Buffer.from(text);
  const mask = randomBytes(4);
  const header = payload.length < 126 ? Buffer.from([0x81, 0x80 | payload.length]) : Buffer.from([0x81, 0x80 | 126, payload.length >> 8, payload.length & 0xff]);
  const body = Buffer.from(payload.map((b, i) => b ^ (mask[i % 4] as number)));
  return Buffer.concat([header, mask, body]);
}

/** A peer that completes the handshake and sends an init, then goes silent (never answers pings). */
async function silentPeer(url: string): Promise<Socket> {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  socket.write(
    `GET /v1/stream HTTP/1.1\r\nHost: ${hostname}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
  await new Promise<void>((resolve) => socket.once('data', () => resolve()));
  socket.write(maskedTextFrame(JSON.stringify({ type: 'session_init_v2' })));
  socket.on('data', () => undefined); // reads, but never answers a ping
  socket.on('error', () => undefined);
  return socket;
}

describe('frame size limits', () => {
  it('closes 1009 after an error frame when a frame after init exceeds the control limit', async () => {
    server = await startServer({ limits: { max_control_frame_bytes: 1024 } });
    const client = await TestClient.init(server.wsUrl);
    await client.waitFor('ltx2_stream_start');
    client.send({ type: 'segment_prompt_source', prompt: 'x'.repeat(2000) });
    const closed = await client.closed;
    expect(closed.code).toBe(1009);
    expect(client.messages.at(-1)).toMatchObject({ type: 'error', code: 'invalid_message' });
    expect(client.messages.at(-1)?.message).toMatch(/exceeds the 1024-byte limit/);
  });

  it('lets the opening init carry a large image, within its own cap', async () => {
    server = await startServer({ limits: { max_control_frame_bytes: 1024 } });
    // A real PNG header (1x1) followed by 3 MiB: the header is what the server checks.
    const png = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==', 'base64');
    const image = Buffer.concat([png, Buffer.alloc(3 * 1024 * 1024, 7)]).toString('base64');
    const client = await TestClient.init(server.wsUrl, { initial_image: { mime: 'image/png', data: image } });
    await client.waitFor('ltx2_stream_start');
    client.close();
  });

  it('closes 1009 when the opening frame exceeds the init cap', async () => {
    server = await startServer();
    const client = await TestClient.connect(server.wsUrl);
    client.sendRaw(Buffer.alloc(MAX_INIT_FRAME_BYTES + 1, 0x20).toString());
    expect((await client.closed).code).toBe(1009);
    for (let i = 0; i < 100 && (await server.sessionCount()) > 0; i++) await sleep(20);
    expect(await server.sessionCount()).toBe(0);
  });
});

describe('dead and slow peers', () => {
  it('terminates a silent dead peer after a missed heartbeat and frees its worker', async () => {
    server = await startServer({ limits: { heartbeat_interval_seconds: 0.3 }, streaming: { session_timeout_seconds: 60 } });
    const peer = await silentPeer(server.wsUrl);
    await sleep(150);
    expect(await server.sessionCount()).toBe(1);
    const waiting = await TestClient.init(server.wsUrl);
    await waiting.waitFor('queue_status');
    const ended = new Promise<void>((resolve) => peer.once('close', () => resolve()));
    await waiting.waitFor('gpu_assigned', 1, 3000);
    await ended;
    waiting.close();
  });

  it('bounds the send backlog of a client that stops reading, then closes it and frees its worker', async () => {
    const high = 256 * 1024;
    // Noise frames make large JPEGs, so the socket buffers fill in a moment.
    server = await startServer(
      {
        default_request: { sampling: { width: 640, height: 352, num_frames: 48 } },
        limits: { send_high_water_bytes: high, send_low_water_bytes: 64 * 1024, client_stall_timeout_seconds: 1 },
        streaming: { generation_segment_cap: 1000 },
      },
      { generators: [new NoiseGenerator()] },
    );
    const reader = await TestClient.init(server.wsUrl, { stream_mode: 'legacy_jpeg', loop_generation_enabled: true, curated_prompts: ['flood'] });
    await reader.waitFor('media_init');
    // Stop reading: the kernel buffers fill, then the server's own backlog.
    (reader.ws as unknown as { _socket: Socket })._socket.pause();
    const waiting = await TestClient.init(server.wsUrl);
    await waiting.waitFor('queue_status');
    let maxBacklog = 0;
    const deadline = Date.now() + 20_000;
    for (;;) {
      const { sessions } = await server.server.inspect();
      const flooded = sessions.find((s) => s.streamMode === 'legacy_jpeg');
      if (sessions.length <= 1 || !flooded || Date.now() > deadline) break;
      maxBacklog = Math.max(maxBacklog, flooded.sendBacklogBytes);
      await sleep(10);
    }
    // Over the watermark by at most one JPEG and a few control frames.
    expect(maxBacklog).toBeGreaterThan(high);
    expect(maxBacklog).toBeLessThan(high + 1024 * 1024);
    await waiting.waitFor('gpu_assigned', 1, 5000);
    waiting.close();
  });
});

describe('encoder failure', () => {
  it('fails only the session whose ffmpeg dies mid-segment', async () => {
    server = await startServer({
      pool: { workers: 2 },
      default_request: { sampling: { num_frames: 96 } },
      generator: { synthetic: { pace: 'realtime', step_ms: 0 } },
    });
    const victim = await TestClient.init(server.wsUrl);
    await victim.waitFor('ltx2_stream_start');
    const bystander = await TestClient.init(server.wsUrl);
    await bystander.waitFor('ltx2_stream_start');
    victim.send({ type: 'segment_prompt_source', prompt: 'victim' });
    bystander.send({ type: 'segment_prompt_source', prompt: 'bystander' });
    await victim.until(() => victim.received.some((r) => r.kind === 'binary'), 'victim media');
    // Sessions are registered in order: the victim's driver is the first.
    const pid = (await sessionOf(server, 0)).encoderPid;
    expect(pid).toBeDefined();
    process.kill(pid as number, 'SIGKILL');
    await victim.closed;
    // An encoder failure is the server's, not the worker's: internal_error, retryable.
    expect(victim.ofType('error')[0]).toMatchObject({ code: 'internal_error', retryable: true, message: 'media encoding failed (ffmpeg_killed)' });
    await bystander.waitFor('ltx2_segment_complete', 1, 15_000);
    expect(bystander.ofType('error')).toHaveLength(0);
    bystander.close();
  });
});

describe('shutdown', () => {
  it('ends queued sessions at once and lets a running segment finish within the grace period', async () => {
    server = await startServer({ default_request: { sampling: { num_frames: 36 } }, generator: { synthetic: { pace: 'realtime', step_ms: 0 } } });
    const running = await TestClient.init(server.wsUrl);
    await running.waitFor('ltx2_stream_start');
    const queued = await TestClient.init(server.wsUrl);
    await queued.waitFor('queue_status');
    running.send({ type: 'segment_prompt_source', prompt: 'finish me' });
    await running.waitFor('media_init');
    const closing = server.server.close(10_000);
    const readyz = await fetch(`${server.url}/readyz`);
    expect(readyz.status).toBe(503);
    expect(await readyz.json()).toMatchObject({ status: 'warming', detail: 'The server is shutting down.' });
    const queuedClosed = await queued.closed;
    expect(queuedClosed.code).toBe(1001);
    expect(queued.messages.at(-1)).toEqual({ type: 'ltx2_stream_complete', reason: 'stop_requested' });
    expect(running.ofType('ltx2_segment_complete')).toHaveLength(0);
    const runningClosed = await running.closed;
    expect(runningClosed.code).toBe(1001);
    // The finished segment, then its state (to resume elsewhere), then the notice.
    const types = running.messages.map((m) => m.type);
    expect(types.slice(-3)).toEqual(['ltx2_segment_complete', 'continuation_state_snapshot', 'ltx2_stream_complete']);
    await closing;
    server = undefined;
  });

  it('cuts a running segment when the grace period runs out', async () => {
    server = await startServer({ default_request: { sampling: { num_frames: 240 } }, generator: { synthetic: { pace: 'realtime', step_ms: 0 } } });
    const running = await TestClient.init(server.wsUrl);
    await running.waitFor('ltx2_stream_start');
    running.send({ type: 'segment_prompt_source', prompt: 'too long' });
    await running.waitFor('media_init');
    const started = performance.now();
    await server.server.close(300);
    server = undefined;
    expect(performance.now() - started).toBeLessThan(3000);
    expect((await running.closed).code).toBe(1001);
    expect(running.ofType('ltx2_segment_complete')).toHaveLength(0);
    expect(running.messages.at(-1)).toEqual({ type: 'ltx2_stream_complete', reason: 'stop_requested' });
  });

  it('exits 0 on SIGTERM with no ffmpeg or worker process left behind', async () => {
    const mark = `livegen-test-${randomBytes(6).toString('hex')}`;
    const child = spawnServer(mark);
    try {
      const url = await listeningUrl(child);
      const client = await TestClient.init(`${url.replace('http', 'ws')}/v1/stream`);
      await client.waitFor('ltx2_stream_start');
      client.send({ type: 'segment_prompt_source', prompt: 'mid-flight' });
      await client.waitFor('media_init', 1, 15_000);
      const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      child.kill('SIGTERM');
      expect(await exit).toBe(0);
      expect((await client.closed).code).toBe(1001);
      // Every descendant inherited the mark; none may survive the server.
      await sleep(200);
      const survivors = readdirSync('/proc').filter((pid) => {
        if (!/^\d+$/.test(pid)) return false;
        try {
          return readFileSync(`/proc/${pid}/environ`, 'utf8').includes(mark);
        } catch {
          return false;
        }
      });
      expect(survivors.map((pid) => execFileSync('ps', ['-o', 'args=', '-p', pid]).toString().trim())).toEqual([]);
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('exits 0 on SIGTERM while refused upgrades and half-sent requests keep their sockets open', async () => {
    const child = spawnServer(`livegen-test-${randomBytes(6).toString('hex')}`);
    const sockets: Socket[] = [];
    try {
      const { hostname, port } = new URL(await listeningUrl(child));
      const open = async (text: string): Promise<Socket> => {
        const socket = connect(Number(port), hostname);
        socket.on('error', () => undefined);
        await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
        socket.write(text);
        sockets.push(socket);
        return socket;
      };
      // Refused (404), never closed by the peer; an upgrade and a plain request, never finished.
      const refused = await open(`GET /nowhere HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
      await new Promise<void>((resolve) => refused.once('data', () => resolve()));
      await open('GET /v1/stream HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n');
      await open('GET /health HTTP/1.1\r\nHost: x\r\n');
      const started = performance.now();
      const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      child.kill('SIGTERM');
      expect(await exit).toBe(0);
      expect(performance.now() - started).toBeLessThan(10_000);
    } finally {
      for (const socket of sockets) socket.destroy();
      child.kill('SIGKILL');
    }
  });
});

/** `livegen serve` as a real process; every descendant inherits `mark` in its environment. */
function spawnServer(mark: string) {
  return spawn(process.execPath, ['bin/livegen.js', 'serve', '--port', '0', '--log-level', 'info'], {
    cwd: new URL('../..', import.meta.url).pathname,
    env: { ...process.env, LIVEGEN_TEST_MARK: mark, LIVEGEN_CONFIG: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

function listeningUrl(child: ReturnType<typeof spawnServer>): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /livegen listening on (http:\/\/[^"\s]+)/.exec(out);
      if (m?.[1]) resolve(m[1]);
    });
    child.once('exit', () => reject(new Error(`server exited early: ${out}`)));
    setTimeout(() => reject(new Error('no listening line')), 20_000);
  });
}
