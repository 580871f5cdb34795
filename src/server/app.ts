import { STATUS_CODES, createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
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
import { AccessControl, type AccessRefusal } from './access.js';
import { MAX_INIT_FRAME_BYTES, SessionDriver } from './session-driver.js';
import { serveStatic } from './static-files.js';
import { UpgradeSockets, refuseUpgrade, remoteAddress } from './upgrade.js';

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
/** Routes that `auth.protect_status` puts behind the API key; health routes stay open. */
const PROTECTED_ROUTES = new Set(['/status', '/metrics']);

function refuseHttp(res: ServerResponse, refusal: AccessRefusal): void {
  if (refusal.status === 401) res.setHeader('www-authenticate', 'Bearer');
  sendJson(res, refusal.status, { error: STATUS_CODES[refusal.status]?.toLowerCase().replaceAll(' ', '_'), message: refusal.reason });
}

export interface LivegenServer {
  readonly context: ServerContext;
  /** Starts listening; resolves with the base URL (`http://host:port`). */
  listen(): Promise<string>;
  readonly url: string;
  /**
   * Graceful stop: refuses new connections, `/readyz` turns 503, waiting sessions end at
   * once and running segments get `graceMs` (default `server.shutdown_grace_seconds`) to
   * finish; every session gets `ltx2_stream_complete` (`stop_requested`) and close 1001;
   * then workers and the listener are stopped.
   */
  close(graceMs?: number): Promise<void>;
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
function buildProcessWorkers(config: ServeConfig, logger: Logger, onWorkerRestart: (workerId: number) => void): PoolWorker[] {
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
        onEvent: (event) => {
          if (event.kind === 'failed') logger.warn({ worker: event.workerId, detail: event.detail }, 'worker failed');
          else logger.info({ worker: event.workerId, kind: event.kind, delay_ms: event.delayMs }, `worker ${event.kind}`);
          if (event.kind === 'restarting') onWorkerRestart(event.workerId);
        },
      },
    );
  });
}

/** Composes the layers into a server: HTTP routes, the WebSocket endpoint, the reaper. */
export function createLivegenServer(config: ServeConfig, overrides: ServerOverrides = {}): LivegenServer {
  const logger = overrides.logger ?? pino({ level: config.logging.level, name: 'livegen' });
  // The gauges read the parts below at scrape time, after they exist.
  const metrics = new ServerMetrics({
    sessionsByState: () => {
      const counts: Record<string, number> = {};
      for (const s of manager.all()) counts[s.state] = (counts[s.state] ?? 0) + 1;
      return counts;
    },
    queueDepth: () => admission.queueDepth,
    workers: () => ({ total: pool.total, available: pool.available }),
  });
  const workers =
    overrides.workers ??
    (overrides.generators
      ? overrides.generators.map((generator, id) => new InProcessWorker(id, generator))
      : config.generator.kind === 'worker'
        ? buildProcessWorkers(config, logger, (id) => metrics.workerRestarted(id))
        : buildInProcessWorkers(config));
  const pool = new WorkerPool(workers);
  const manager = new SessionManager({
    segmentCap: config.streaming.generation_segment_cap,
    sessionTimeoutSeconds: config.streaming.session_timeout_seconds,
    maxSessions: config.streaming.max_sessions,
  });
  const admission = new Admission(pool, config.streaming.max_queue, config.streaming.queue_depth_update_ms);
  const drivers = new Map<string, SessionDriver>();

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
    connectionOptions: {
      highWaterBytes: config.limits.send_high_water_bytes,
      lowWaterBytes: config.limits.send_low_water_bytes,
      stallTimeoutMs: config.limits.client_stall_timeout_seconds * 1000,
      onBacklogChange: (bytes, frames) => metrics.sendBacklogChanged(bytes, frames),
    },
    access: new AccessControl(config, (process.env.LIVEGEN_API_KEYS ?? '').split(',').map((k) => k.trim()).filter(Boolean)),
    tempDir: overrides.tempDir ?? tmpdir(),
    // Asked when an init arrives: a worker process declares its kind once it is ready.
    checkContinuation: (state) => {
      const kind = workers.map((w) => w.generator.continuationKind).find((k) => k !== undefined);
      if (kind !== undefined && state.kind !== kind) {
        return `continuation_state.kind: expected ${JSON.stringify(kind)}, got ${JSON.stringify(state.kind)}`;
      }
      const problem = workers.find((w) => w.generator.checkContinuation)?.generator.checkContinuation?.(state);
      return problem === undefined ? undefined : `continuation_state.${problem}`;
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
    if (PROTECTED_ROUTES.has(path)) {
      const decision = context.access.checkStatusRoute(req);
      if (!decision.ok) {
        refuseHttp(res, decision.refusal);
        return;
      }
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

  // ws closes 1009 itself past maxPayload; frames between the control limit and this are
  // refused by the driver with an error frame first.
  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_INIT_FRAME_BYTES, perMessageDeflate: false });
  const upgrading = new UpgradeSockets();
  http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    upgrading.adopt(socket, (err) => logger.debug({ err, ip: remoteAddress(socket) }, 'upgrade socket error'));
    const path = (req.url ?? '/').split('?')[0];
    if (path !== STREAM_PATH) return refuseUpgrade(socket, 404, `no WebSocket endpoint at ${path}`);
    if (shuttingDown) return refuseUpgrade(socket, 503, 'server is shutting down');
    const decision = context.access.checkUpgrade(req);
    if (!decision.ok) {
      logger.info({ status: decision.refusal.status, reason: decision.refusal.reason, ip: remoteAddress(socket) }, 'upgrade refused');
      const headers: Record<string, string> = decision.refusal.status === 401 ? { 'WWW-Authenticate': 'Bearer' } : {};
      return refuseUpgrade(socket, decision.refusal.status, decision.refusal.reason, headers);
    }
    wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
      upgrading.release(socket);
      alive.set(ws, true);
      ws.on('pong', () => alive.set(ws, true));
      SessionDriver.open(context, ws, decision.keyId);
    });
  });

  // Heartbeats: a peer that did not answer the last ping is dead (no FIN ever came);
  // terminating it ends its session and frees its worker.
  const alive = new WeakMap<WebSocket, boolean>();
  const heartbeatMs = config.limits.heartbeat_interval_seconds * 1000;
  const heartbeat =
    heartbeatMs > 0
      ? setInterval(() => {
          for (const ws of wss.clients) {
            if (!alive.get(ws)) {
              ws.terminate();
              continue;
            }
            alive.set(ws, false);
            ws.ping();
          }
        }, heartbeatMs)
      : undefined;
  heartbeat?.unref();

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
    async close(graceMs = config.server.shutdown_grace_seconds * 1000) {
      shuttingDown = true;
      clearInterval(reaper);
      clearInterval(heartbeat);
      await Promise.allSettled([...drivers.values()].map((driver) => driver.shutdown(graceMs)));
      for (const client of wss.clients) client.terminate();
      upgrading.destroyAll();
      wss.close();
      await pool.stop(config.generator.worker.shutdown_grace_ms);
      const closed = new Promise<void>((resolve) => http.close(() => resolve()));
      http.closeAllConnections();
      await closed;
    },
  };
}
