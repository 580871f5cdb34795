import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { pino } from 'pino';
import WebSocket from 'ws';
import { readFrameIndex } from '../../src/generation/index.js';
import type { ServerMessage } from '../../src/protocol/index.js';
import { createLivegenServer, mergeConfigInput, parseConfig, type LivegenServer, type ServerOverrides } from '../../src/server/index.js';

const run = promisify(execFile);

/** A small, fast default so tests run in well under a second per segment. */
export const TEST_CONFIG = {
  server: { host: '127.0.0.1', port: 0 },
  default_request: { sampling: { width: 192, height: 112, fps: 24, num_frames: 24, num_inference_steps: 3 } },
  streaming: { reaper_interval_ms: 50, max_sessions: 16 },
  generator: { synthetic: { pace: 'fast', step_ms: 0 } },
  media: { fragment_duration_ms: 100 },
  logging: { level: 'silent' },
};

export interface TestServer {
  server: LivegenServer;
  url: string;
  wsUrl: string;
  /** Sessions the server holds now (pending inits included). */
  sessionCount(): Promise<number>;
  /** Stops the server; running segments get `graceMs` (default 0: tests do not wait). */
  close(graceMs?: number): Promise<void>;
}

export async function startServer(patch: Record<string, unknown> = {}, overrides: ServerOverrides = {}): Promise<TestServer> {
  const config = parseConfig(mergeConfigInput(TEST_CONFIG, patch));
  const server = createLivegenServer(config, { logger: pino({ level: 'silent' }), ...overrides });
  const url = await server.listen();
  return {
    server,
    url,
    wsUrl: `${url.replace(/^http/, 'ws')}/v1/stream`,
    sessionCount: async () => (await server.inspect()).sessions.length,
    close: (graceMs = 0) => server.close(graceMs),
  };
}

export type Received = { kind: 'json'; message: ServerMessage & Record<string, unknown>; at: number } | { kind: 'binary'; data: Buffer; at: number };

/** A raw protocol client that records everything it receives, in order. */
export class TestClient {
  readonly received: Received[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  private waiters: (() => void)[] = [];

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      const at = performance.now();
      if (isBinary) this.received.push({ kind: 'binary', data: Buffer.from(data), at });
      else this.received.push({ kind: 'json', message: JSON.parse(data.toString('utf8')), at });
      this.notify();
    });
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        resolve({ code, reason: reason.toString() });
        this.notify();
      });
    });
  }

  static connect(wsUrl: string): Promise<TestClient> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(wsUrl, { perMessageDeflate: false });
      const client = new TestClient(ws);
      ws.once('open', () => resolve(client));
      ws.once('error', reject);
    });
  }

  /** Connects and sends a `session_init_v2` with `fields`. */
  static async init(wsUrl: string, fields: Record<string, unknown> = {}): Promise<TestClient> {
    const client = await TestClient.connect(wsUrl);
    client.send({ type: 'session_init_v2', ...fields });
    return client;
  }

  send(message: Record<string, unknown>): void {
    this.ws.send(JSON.stringify(message));
  }

  sendRaw(data: string | Buffer, binary = false): void {
    this.ws.send(data, { binary });
  }

  get messages(): (ServerMessage & Record<string, unknown>)[] {
    return this.received.flatMap((r) => (r.kind === 'json' ? [r.message] : []));
  }

  ofType<T extends ServerMessage['type']>(type: T): (Extract<ServerMessage, { type: T }> & Record<string, unknown>)[] {
    return this.messages.filter((m) => m.type === type) as (Extract<ServerMessage, { type: T }> & Record<string, unknown>)[];
  }

  /** Waits until `count` messages of `type` have arrived; returns the last of them. */
  async waitFor<T extends ServerMessage['type']>(type: T, count = 1, timeoutMs = 15_000): Promise<Extract<ServerMessage, { type: T }> & Record<string, unknown>> {
    await this.until(() => this.ofType(type).length >= count, `${count} x ${type}`, timeoutMs);
    return this.ofType(type)[count - 1] as Extract<ServerMessage, { type: T }> & Record<string, unknown>;
  }

  async until(predicate: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate()) {
      if (this.ws.readyState === WebSocket.CLOSED && !predicate()) {
        throw new Error(`connection closed while waiting for ${what}; got ${this.summary()}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}; got ${this.summary()}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 250));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  summary(): string {
    return this.received.map((r) => (r.kind === 'json' ? r.message.type : 'binary')).join(',');
  }

  /** Binary frames of one segment, between its `media_init` and its `media_segment_complete`. */
  segmentMedia(segmentIdx: number): Buffer[] {
    const out: Buffer[] = [];
    let inside = false;
    for (const r of this.received) {
      if (r.kind === 'json') {
        if (r.message.type === 'media_init' && r.message.segment_idx === segmentIdx) inside = true;
        else if (r.message.type === 'media_segment_complete' && r.message.segment_idx === segmentIdx) inside = false;
      } else if (inside) {
        out.push(r.data);
      }
    }
    return out;
  }

  close(): void {
    this.ws.close();
  }

  private notify(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}

export interface ProbedMedia {
  codecs: string[];
  videoFrames: number;
  durationS: number;
  startTimeS: number;
  hasAudio: boolean;
  frameIndices: (number | null)[];
}

/** Decodes a segment's media with ffprobe/ffmpeg and reads every frame's index strip. */
export async function probeMedia(data: Buffer, width: number, height: number): Promise<ProbedMedia> {
  const dir = await mkdtemp(join(tmpdir(), 'livegen-test-'));
  try {
    const file = join(dir, 'segment.mp4');
    await writeFile(file, data);
    const { stdout } = await run('ffprobe', ['-v', 'error', '-count_frames', '-show_streams', '-show_format', '-of', 'json', file]);
    const probe = JSON.parse(stdout) as {
      streams: { codec_type: string; codec_name: string; nb_read_frames?: string }[];
      format: { duration?: string; start_time?: string };
    };
    const video = probe.streams.find((s) => s.codec_type === 'video');
    const raw = join(dir, 'frames.rgb');
    // passthrough: one raw frame per coded frame (cfr output would duplicate to fill audio time).
    await run('ffmpeg', ['-v', 'error', '-i', file, '-fps_mode', 'passthrough', '-f', 'rawvideo', '-pix_fmt', 'rgb24', raw]);
    const pixels = await readFile(raw);
    const frameBytes = width * height * 3;
    const frameIndices: (number | null)[] = [];
    for (let off = 0; off + frameBytes <= pixels.length; off += frameBytes) {
      frameIndices.push(readFrameIndex(pixels.subarray(off, off + frameBytes), width, height));
    }
    return {
      codecs: probe.streams.map((s) => s.codec_name),
      videoFrames: Number(video?.nb_read_frames ?? 0),
      durationS: Number(probe.format.duration ?? 0),
      startTimeS: Number(probe.format.start_time ?? 0),
      hasAudio: probe.streams.some((s) => s.codec_type === 'audio'),
      frameIndices,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
