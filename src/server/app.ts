import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import type { Duplex } from 'node:stream';
import { pino, type Logger } from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';
import { SyntheticGenerator } from '../generation/index.js';
import type { Generator } from '../generation/types.js';
import { createSegmentEncoder } from '../media/index.js';
import { WorkerPool } from '../pool/index.js';
import { SessionManager } from '../session/index.js';
import { MemoryContinuationStore, type ContinuationStore } from '../store/index.js';
import { Admission } from './admission.js';
import type { ServeConfig } from './config.js';
import type { ServerContext } from './context.js';
import { ServerMetrics } from './metrics.js';
import { RepeatLastPromptExtender, type PromptExtender } from './prompt-extender.js';
import { buildRoutes, sendJson } from './routes.js';
import { SessionDriver } from './session-driver.js';

/** Parts a caller (tests, embedding) may supply instead of the config-built defaults. */
export interface ServerOverrides {
  logger?: Logger;
  store?: ContinuationStore;
  extender?: PromptExtender;
  /** One generator per worker slot. */
  generators?: Generator[];
  tempDir?: string;
}

export const STREAM_PATH = '/v1/stream';
/** Control frames are small; the init may carry a 32 MiB image as base64. */
const MAX_FRAME_BYTES = Math.ceil((32 * 1024 * 1024 * 4) / 3) + 1024 * 1024;

export interface LivegenServer {
  readonly context: ServerContext;
  /** Starts listening; resolves with the base URL (`http://host:port`). */
  listen(): Promise<string>;
  readonly url: string;
  /** Ends every session (1001), stops timers and closes the listener. */
  close(): Promise<void>;
}

function buildGenerators(config: ServeConfig): Generator[] {
  const { synthetic } = config.generator;
  return Array.from(
    { length: config.pool.workers },
    () =>
      new SyntheticGenerator({
        pace: synthetic.pace,
        stepMs: synthetic.step_ms,
        audio: synthetic.audio ? { sampleRate: synthetic.audio_sample_rate, channels: 1 } : null,
        modelId: config.generator.model_id ?? 'livegen/synthetic',
      }),
  );
}

/** Composes the layers into a server: HTTP routes, the WebSocket endpoint, the reaper. */
export function createLivegenServer(config: ServeConfig, overrides: ServerOverrides = {}): LivegenServer {
  const logger = overrides.logger ?? pino({ level: config.logging.level, name: 'livegen' });
  const generators = overrides.generators ?? buildGenerators(config);
  const pool = new WorkerPool(generators.map((generator, id) => ({ id, generator })));
  const manager = new SessionManager({
    segmentCap: config.streaming.generation_segment_cap,
    sessionTimeoutSeconds: config.streaming.session_timeout_seconds,
    maxSessions: config.streaming.max_sessions,
  });
  const admission = new Admission(pool, config.streaming.max_queue);
  const drivers = new Map<string, SessionDriver>();
  const metrics = new ServerMetrics({
    sessionsByState: () => {
      const counts: Record<string, number> = {};
      for (const s of manager.all()) counts[s.state] = (counts[s.state] ?? 0) + 1;
      return counts;
    },
    queueDepth: () => admission.queueDepth,
    workers: () => ({ total: pool.total, available: pool.available }),
  });
  const first = generators[0] as Generator & { continuationKind?: string };
  const context: ServerContext = {
    config,
    manager,
    admission,
    pool,
    store: overrides.store ?? new MemoryContinuationStore(),
    extender: overrides.extender ?? new RepeatLastPromptExtender(),
    logger,
    metrics,
    drivers,
    connectionOptions: { highWaterBytes: 4 * 1024 * 1024, lowWaterBytes: 1024 * 1024 },
    tempDir: overrides.tempDir ?? tmpdir(),
    continuationKind: first.continuationKind,
    createEncoder: (mode, audio) => {
      const { sampling } = config.default_request;
      return createSegmentEncoder(mode, {
        width: sampling.width,
        height: sampling.height,
        fps: sampling.fps,
        audio,
        fragmentDurationMs: config.media.fragment_duration_ms,
        x264Preset: config.media.x264_preset,
        crf: config.media.crf,
        maxBitrateKbps: config.media.max_bitrate_kbps,
        ffmpegPath: config.media.ffmpeg_path,
      });
    },
  };

  let shuttingDown = false;
  const routes = buildRoutes(context, () => shuttingDown);
  const http: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const route = routes.get(path);
    if (!route) {
      sendJson(res, 404, { error: 'not_found', message: `no route ${path}` });
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      sendJson(res, 405, { error: 'method_not_allowed', message: `${req.method} is not allowed on ${path}` });
      return;
    }
    Promise.resolve(route(req, res)).catch((err: unknown) => {
      logger.error({ err, path }, 'route failed');
      if (!res.headersSent) sendJson(res, 500, { error: 'internal_error', message: 'internal error' });
    });
  });

  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME_BYTES, perMessageDeflate: false });
  http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== STREAM_PATH || shuttingDown) {
      socket.end(`HTTP/1.1 ${shuttingDown ? '503 Service Unavailable' : '404 Not Found'}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
      SessionDriver.open(context, ws);
    });
  });

  // The reaper: FastVideo leaves reap_timed_out unwired; here it runs for every state.
  const reaper = setInterval(() => {
    for (const id of manager.reapTimedOut()) drivers.get(id)?.timeOut();
  }, config.streaming.reaper_interval_ms);
  reaper.unref();

  let baseUrl = '';
  return {
    context,
    get url() {
      return baseUrl;
    },
    listen() {
      return new Promise<string>((resolve, reject) => {
        http.once('error', reject);
        http.listen(config.server.port, config.server.host, () => {
          http.off('error', reject);
          const address = http.address() as AddressInfo;
          const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
          baseUrl = `http://${host}:${address.port}`;
          resolve(baseUrl);
        });
      });
    },
    async close() {
      shuttingDown = true;
      clearInterval(reaper);
      const ending = [...drivers.values()].map((driver) => {
        driver.shutdown();
        return driver.done;
      });
      await Promise.allSettled(ending);
      for (const client of wss.clients) client.terminate();
      wss.close();
      const closed = new Promise<void>((resolve) => http.close(() => resolve()));
      http.closeAllConnections();
      await closed;
    },
  };
}
