import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { tmpdir } from 'node:os';
import type { Duplex } from 'node:stream';
import { pino, type Logger } from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';
import { SyntheticGenerator } from '../generation/index.js';
import type { Generator } from '../generation/types.js';
import { createSegmentEncoder } from '../media/index.js';
import { InProcessWorker, SupervisedWorker, WorkerPool, type PoolWorker } from '../pool/index.js';
import { SessionManager } from '../session/index.js';
import { MemoryContinuationStore, type ContinuationStore } from '../store/index.js';
import { Admission } from './admission.js';
import type { ServeConfig } from './config.js';
import type { ServerContext } from './context.js';
import { ServerMetrics } from './metrics.js';
import { RepeatLastPromptExtender, type PromptExtender } from './prompt-extender.js';
import { buildRoutes, sendJson } from './routes.js';
import { SessionDriver } from './session-driver.js';
import { serveStatic } from './static-files.js';

/** Parts a caller (tests, embedding) may supply instead of the config-built defaults. */
export interface ServerOverrides {
  logger?: Logger;
  store?: ContinuationStore;
  extender?: PromptExtender;
  /** One generator per worker slot (in-process), instead of the configured ones. */
  generators?: Generator[];
  /** Pool workers, instead of the configured ones. */
  workers?: PoolWorker[];
  tempDir?: string;
  /** Directory of the built web player served at `/` (default: web/dist of this checkout). */
  webRoot?: string;
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

const SYNTHETIC_WORKER = fileURLToPath(new URL('../../workers/synthetic/main.ts', import.meta.url));

function gpuIds(config: ServeConfig): number[] {
  return config.pool.gpu_ids ?? Array.from({ length: config.pool.workers }, (_, i) => i);
}

function buildInProcessWorkers(config: ServeConfig): PoolWorker[] {
  const { synthetic } = config.generator;
  return gpuIds(config).map(
    (id) =>
      new InProcessWorker(
        id,
        new SyntheticGenerator({
          pace: synthetic.pace,
          stepMs: synthetic.step_ms,
          audio: synthetic.audio ? { sampleRate: synthetic.audio_sample_rate, channels: 1 } : null,
          modelId: config.generator.model_id ?? 'livegen/synthetic',
        }),
      ),
  );
}

/** One supervised child process per GPU, speaking docs/worker-protocol.md. */
function buildProcessWorkers(config: ServeConfig, logger: Logger): PoolWorker[] {
  const w = config.generator.worker;
  const { sampling } = config.default_request;
  const { synthetic } = config.generator;
  // Without a command, run the synthetic generator as a worker process (same code path as a model).
  const command = w.command ?? process.execPath;
  const args = w.command ? w.args : ['--import', 'tsx', SYNTHETIC_WORKER, ...w.args];
  const baseEnv: Record<string, string> = w.command
    ? {}
    : {
        LIVEGEN_SYNTHETIC_PACE: synthetic.pace,
        LIVEGEN_SYNTHETIC_STEP_MS: String(synthetic.step_ms),
        LIVEGEN_SYNTHETIC_AUDIO: synthetic.audio ? '1' : '0',
      };
  const frameBytes = sampling.width * sampling.height * 3;
  return gpuIds(config).map((gpuId) => {
    const fill = (value: string): string => value.replaceAll('{gpu_id}', String(gpuId));
    return new SupervisedWorker(
      gpuId,
      {
        command,
        args: args.map(fill),
        env: Object.fromEntries(Object.entries({ ...baseEnv, ...w.env }).map(([k, v]) => [k, fill(v)])),
        cwd: w.cwd,
        gpuId,
        startTimeoutMs: w.start_timeout_seconds * 1000,
        warmup: w.warmup,
        warmupTimeoutMs: w.warmup_timeout_seconds * 1000,
        warmupRequest: {
          prompt: 'warmup: a calm sea at dawn',
          seed: 0,
          num_inference_steps: 1,
          guidance_scale: sampling.guidance_scale,
          width: sampling.width,
          height: sampling.height,
          fps: sampling.fps,
          num_frames: Math.min(8, sampling.num_frames),
        },
        progressTimeoutMs: w.progress_timeout_seconds * 1000,
        cancelTimeoutMs: w.cancel_timeout_ms,
        maxRecordBytes: Math.max(frameBytes, 16 * 1024 * 1024),
      },
      {
        restartBaseMs: w.restart_backoff_ms,
        restartMaxMs: w.restart_backoff_max_ms,
        onEvent: (event) =>
          event.kind === 'failed'
            ? logger.warn({ worker: event.workerId, detail: event.detail }, 'worker failed')
            : logger.info({ worker: event.workerId, kind: event.kind, delay_ms: event.delayMs }, `worker ${event.kind}`),
      },
    );
  });
}

/** Composes the layers into a server: HTTP routes, the WebSocket endpoint, the reaper. */
export function createLivegenServer(config: ServeConfig, overrides: ServerOverrides = {}): LivegenServer {
  const logger = overrides.logger ?? pino({ level: config.logging.level, name: 'livegen' });
  const workers =
    overrides.workers ??
    (overrides.generators
      ? overrides.generators.map((generator, id) => new InProcessWorker(id, generator))
      : config.generator.kind === 'worker'
        ? buildProcessWorkers(config, logger)
        : buildInProcessWorkers(config));
  const pool = new WorkerPool(workers);
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
    // Read when an init arrives: a worker process declares its kind once it is ready.
    get continuationKind() {
      const generator = workers[0]?.generator as (Generator & { continuationKind?: string }) | undefined;
      return generator?.continuationKind;
    },
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

  const webRoot = overrides.webRoot ?? fileURLToPath(new URL('../../web/dist', import.meta.url));
  let shuttingDown = false;
  const routes = buildRoutes(context, () => shuttingDown);
  const http: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const route = routes.get(path);
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      sendJson(res, 405, { error: 'method_not_allowed', message: `${req.method} is not allowed on ${path}` });
      return;
    }
    const answer = route
      ? Promise.resolve(route(req, res))
      : serveStatic(webRoot, path, res).then((served) => {
          if (!served) sendJson(res, 404, { error: 'not_found', message: `no route ${path}` });
        });
    answer.catch((err: unknown) => {
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
          // HTTP is up before workers warm, so probes answer (503 warming) during warmup.
          pool.start();
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
      await pool.stop(config.generator.worker.shutdown_grace_ms);
      const closed = new Promise<void>((resolve) => http.close(() => resolve()));
      http.closeAllConnections();
      await closed;
    },
  };
}
