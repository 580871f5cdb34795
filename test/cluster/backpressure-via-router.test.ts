import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readFrameIndex, writeFrameIndex, type GenerationEvent, type Generator, type SegmentRequest } from '../../src/generation/index.js';
import { TestClient } from '../server/harness.js';
import { startRedis, type TestRedis } from '../support/redis-server.js';
import { startInProcessCluster, type InProcessCluster } from './in-process.js';
import { waitUntil } from './processes.js';

/**
 * Backpressure end to end, client → router → replica, on real sockets: a client that
 * stops reading must hold its replica's media back (the replica's send backlog passes
 * its high watermark, so its sends wait) while the router keeps no more than its own
 * watermark of media, and the stream must go on intact once the client reads again, or
 * end 1013 after the stall timeout if it never does.
 *
 * The synthetic generator's frames compress to almost nothing; these are random noise
 * (JPEG cannot shrink them, ~100 KB each at 640x352), so a few seconds of video fill
 * every socket buffer on the way. Each frame carries its index in the frame-index strip,
 * so the order of what arrives can be checked from the pixels.
 */
const WIDTH = 640;
const HEIGHT = 352;
const FRAMES = 48;
const HIGH = 512 * 1024;
const LOW = 128 * 1024;
/** Over a watermark by at most the frame that crossed it (one JPEG) and a few control frames. */
const SLACK = 1024 * 1024;

/** Random-noise frames, numbered across segments in the frame-index strip. */
class IndexedNoiseGenerator implements Generator {
  readonly modelId = 'test/indexed-noise';
  readonly audio = null;
  /** Frames made so far: the index of the next one. */
  made = 0;
  private noise: Buffer[] = [];

  async *generate(request: SegmentRequest, signal: AbortSignal): AsyncGenerator<GenerationEvent> {
    const size = request.width * request.height * 3;
    if (this.noise[0]?.length !== size) this.noise = [randomBytes(size), randomBytes(size), randomBytes(size)];
    for (let i = 0; i < request.numFrames; i++) {
      signal.throwIfAborted();
      const frame = Buffer.from(this.noise[this.made % this.noise.length] as Buffer);
      writeFrameIndex(frame, request.width, request.height, this.made);
      this.made += 1;
      yield { type: 'video', frame };
      await nextTurn();
    }
    yield { type: 'done' };
  }
}

/** The frame indices drawn in a run of JPEGs, decoded by ffmpeg one frame at a time (never all of them in memory). */
function frameIndicesOf(images: Buffer[]): Promise<(number | null)[]> {
  return new Promise((resolve, reject) => {
    const ffmpeg = spawn('ffmpeg', ['-v', 'error', '-f', 'mjpeg', '-i', 'pipe:0', '-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1']);
    const frameBytes = WIDTH * HEIGHT * 3;
    const indices: (number | null)[] = [];
    let pending = Buffer.alloc(0);
    let errors = '';
    ffmpeg.stdout.on('data', (data: Buffer) => {
      pending = Buffer.concat([pending, data]);
      while (pending.length >= frameBytes) {
        indices.push(readFrameIndex(pending.subarray(0, frameBytes), WIDTH, HEIGHT));
        pending = pending.subarray(frameBytes);
      }
    });
    ffmpeg.stderr.on('data', (data: Buffer) => (errors += data.toString('utf8')));
    ffmpeg.once('error', reject);
    ffmpeg.once('close', (code) => (code === 0 ? resolve(indices) : reject(new Error(`ffmpeg exited ${code}: ${errors}`))));
    ffmpeg.stdin.end(Buffer.concat(images));
  });
}

/** What bounds memory, seen from outside: the router's metrics and the replica's view of the session. */
interface Figures {
  /** Bytes queued on the router's client sockets, not yet in the kernel (its media held in memory). */
  routerBacklog: number;
  heldUpstreams: number;
  /** Bytes the router has passed to the client socket (read from the replica). */
  proxiedDown: number;
  /** The replica's send backlog for its one session (its sends wait above HIGH). */
  replicaBacklog: number;
  replicaSessions: number;
  framesMade: number;
  rssBytes: number;
}

async function measure(cluster: InProcessCluster, generator: IndexedNoiseGenerator): Promise<Figures> {
  const [metrics, replica] = await Promise.all([cluster.routerMetrics(), (cluster.replicas[0] as InProcessCluster['replicas'][0]).inspect()]);
  return {
    routerBacklog: metrics.get('livegen_router_client_backlog_bytes') ?? NaN,
    heldUpstreams: metrics.get('livegen_router_held_upstreams') ?? NaN,
    proxiedDown: metrics.get('livegen_router_proxied_bytes_total{direction="down"}') ?? 0,
    replicaBacklog: replica.sessions[0]?.sendBacklogBytes ?? 0,
    replicaSessions: replica.sessions.length,
    framesMade: generator.made,
    rssBytes: process.memoryUsage().rss,
  };
}

/** The largest of each figure over every sample so far. */
function highest(samples: Figures[]): Figures {
  const keys = Object.keys(samples[0] as Figures) as (keyof Figures)[];
  return Object.fromEntries(keys.map((k) => [k, Math.max(...samples.map((s) => s[k]))])) as unknown as Figures;
}

const MiB = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(2)} MiB`;

function socketOf(client: TestClient): Socket {
  return (client.ws as unknown as { _socket: Socket })._socket;
}

/** A client streaming JPEG noise in a loop that has stopped reading its socket before the first frame. */
async function pausedReader(cluster: InProcessCluster): Promise<TestClient> {
  const client = await TestClient.init(cluster.wsUrl, { stream_mode: 'legacy_jpeg', curated_prompts: ['noise'] });
  await client.waitFor('ltx2_stream_start');
  socketOf(client).pause();
  // Sending still works: segments start now, back to back, while nothing is read.
  client.send({ type: 'loop_generation_updated', enabled: true });
  return client;
}

let redis: TestRedis;
let cluster: InProcessCluster | undefined;
beforeAll(async () => {
  redis = await startRedis();
});
afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});
afterAll(async () => {
  await redis?.stop();
});

/**
 * Watermarks small next to the media, so the router's and the replica's backlogs are
 * clearly bounded by them. Heartbeats off: a client that reads nothing answers no ping
 * either, and would be dropped by the heartbeat rule, which is not what is tested here.
 */
function config(stallSeconds: number, cap: number): Record<string, unknown> {
  return {
    default_request: { sampling: { width: WIDTH, height: HEIGHT, num_frames: FRAMES } },
    limits: { send_high_water_bytes: HIGH, send_low_water_bytes: LOW, client_stall_timeout_seconds: stallSeconds, heartbeat_interval_seconds: 0 },
    streaming: { generation_segment_cap: cap },
  };
}

describe('backpressure through a router', { timeout: 60_000 }, () => {
  it('holds the replica back while the client does not read, keeps the router within its watermark, then delivers everything in order', async () => {
    // A story far longer than every socket buffer on the way can take (~45 MB of JPEG).
    const CAP = 10;
    const generator = new IndexedNoiseGenerator();
    cluster = await startInProcessCluster(redis.url, { patch: config(60, CAP), generators: () => [generator] });
    const running = cluster;
    const client = await pausedReader(running);

    // Held: the router stopped reading the replica, and the replica's own backlog passed its watermark (its sends wait).
    const samples: Figures[] = [];
    const held = await waitUntil(async () => {
      const f = await measure(running, generator);
      samples.push(f);
      return f.heldUpstreams === 1 && f.replicaBacklog > HIGH ? f : undefined;
    }, 'the replica to be held back', 30_000);
    // More looks while the client still reads nothing: it stays that way.
    for (let i = 0; i < 20; i++) samples.push(await measure(running, generator));
    const peak = highest(samples);
    expect(client.received.filter((r) => r.kind === 'binary')).toHaveLength(0);
    // Held means above the low watermark (it would read again at it), and never far above the high one.
    expect(held.routerBacklog).toBeGreaterThan(LOW);
    expect(peak.routerBacklog).toBeLessThan(HIGH + SLACK);
    expect(peak.replicaBacklog).toBeLessThan(HIGH + SLACK);
    // The generator waits on the replica's sends: most of the story is not even made yet.
    expect(peak.framesMade).toBeLessThan((CAP * FRAMES) / 2);

    // Reading again: the rest of the story arrives, whole and in order, up to the cap.
    socketOf(client).resume();
    expect((await client.closed).code).toBe(1000);
    expect(client.messages.at(-1)).toEqual({ type: 'ltx2_stream_complete', reason: 'segment_cap' });
    expect(client.ofType('ltx2_segment_complete').map((m) => m.segment_idx)).toEqual(Array.from({ length: CAP }, (_, i) => i));
    for (const complete of client.ofType('media_segment_complete')) {
      const media = client.segmentMedia(complete.segment_idx);
      expect(media).toHaveLength(complete.chunks);
      expect(media.reduce((n, b) => n + b.length, 0)).toBe(complete.bytes);
    }
    const images = client.received.flatMap((r) => (r.kind === 'binary' ? [r.data] : []));
    const total = images.reduce((n, b) => n + b.length, 0);
    expect(await frameIndicesOf(images)).toEqual(Array.from({ length: CAP * FRAMES }, (_, i) => i));
    console.log(
      `backpressure via router (held): media ${MiB(total)} in all; while the client read nothing the router passed ${MiB(peak.proxiedDown)} ` +
        `(${MiB(held.proxiedDown)} when the replica was held; into kernel buffers) and held at most ${MiB(peak.routerBacklog)}, the replica's backlog ` +
        `peaked at ${MiB(peak.replicaBacklog)} and ${peak.framesMade} of ${CAP * FRAMES} frames were generated; test process RSS peak ${MiB(peak.rssBytes)}`,
    );
  });

  it('closes a client that never reads again 1013 after the stall timeout, and frees its replica', async () => {
    const generator = new IndexedNoiseGenerator();
    // Told the moment the router gives up (its log line), to look at what the client was sent.
    let gaveUp = false;
    const watched: { client?: TestClient } = {};
    const routerLogger = pino(
      { level: 'info' },
      {
        write(line: string) {
          if (!line.includes('client is not reading fast enough')) return;
          gaveUp = true;
          if (watched.client) socketOf(watched.client).resume();
        },
      },
    );
    cluster = await startInProcessCluster(redis.url, { patch: config(1, 1000), generators: () => [generator], routerLogger });
    const running = cluster;
    const reader = await pausedReader(running);
    watched.client = reader;

    const samples: Figures[] = [];
    await waitUntil(async () => {
      samples.push(await measure(running, generator));
      return gaveUp ? true : undefined;
    }, 'the router to give up on the client', 30_000);
    const peak = highest(samples);
    expect(peak.routerBacklog).toBeLessThan(HIGH + SLACK);
    expect(peak.replicaBacklog).toBeLessThan(HIGH + SLACK);

    // What it was sent: media in order, with nothing missing, then the notice and close 1013.
    const closed = await reader.closed;
    expect(closed.code).toBe(1013);
    expect(reader.messages.at(-1)).toEqual({ type: 'error', code: 'internal_error', message: 'client is not reading fast enough: closing', retryable: true });
    const images = reader.received.flatMap((r) => (r.kind === 'binary' ? [r.data] : []));
    expect(images.length).toBeGreaterThan(0);
    expect(await frameIndicesOf(images)).toEqual(Array.from({ length: images.length }, (_, i) => i));

    // The replica's session ended and its worker is free; the router holds nothing of it.
    await waitUntil(async () => {
      const replica = await (running.replicas[0] as InProcessCluster['replicas'][0]).inspect();
      return replica.sessions.length === 0 && replica.workers.available === 1 ? true : undefined;
    }, 'the replica to free its worker');
    const after = await measure(running, generator);
    expect(after.routerBacklog).toBe(0);
    expect(after.heldUpstreams).toBe(0);
    const metrics = await running.routerMetrics();
    expect(metrics.get('livegen_router_sessions')).toBe(0);
    expect(metrics.get('livegen_router_errors_total{code="slow_client"}')).toBe(1);
    console.log(
      `backpressure via router (never reads): given up after the 1 s stall timeout; meanwhile the router passed ${MiB(peak.proxiedDown)}, ` +
        `held at most ${MiB(peak.routerBacklog)}, the replica's backlog peaked at ${MiB(peak.replicaBacklog)}, ${peak.framesMade} frames generated; ` +
        `the client got ${images.length} frames (${MiB(images.reduce((n, b) => n + b.length, 0))}) in order, then 1013`,
    );
  });
});
