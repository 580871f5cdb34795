import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { IncomingMessage, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import type { Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { pino, type Logger } from 'pino';
import { SyntheticGenerator, SyntheticRenderThread, ThreadedSyntheticGenerator, type SyntheticGeneratorOptions } from '../generation/index.js';
import type { Generator } from '../generation/types.js';
import { createSegmentEncoder, type SegmentEncoder } from '../media/index.js';
import { InProcessWorker, SupervisedWorker, WorkerPool, type PoolWorker, type WorkerSlot } from '../pool/index.js';
import { LocalAdmission, SessionManager, type Placement } from '../session/index.js';
import { MemoryContinuationStore, type ContinuationStore } from '../store/index.js';
import { ResumeTokens, type ClaimLock } from './resume-tokens.js';
import type { ContinuedStory } from './session-driver.js';
import { encodedSnapshot } from './snapshots.js';
import { AccessControl, parseEnvApiKeys } from './access.js';
import { createHttpFront } from './http-front.js';
import { ConfigError, type ServeConfig } from './config.js';
import { StreamEndpoint, STREAM_PATH } from './endpoint.js';
import { TempFiles } from './init-image.js';
import { ServerMetrics } from './metrics.js';
import { OpeningFrameParser, openingFrameLimits } from './opening-frame.js';
import { MAX_INIT_FRAME_BYTES, sessionPolicyFrom, type SessionPolicy } from './policy.js';
import { RepeatLastPromptExtender, type PromptExtender } from '../prompts/index.js';
import { createPromptLayer, type PromptSetupOptions } from './prompt-setup.js';
import { buildRoutes, type ServerStatus } from './routes.js';
import type { SessionHandle, SessionServices, SessionView } from './session-services.js';
import { SessionEventLog } from './session-log.js';

export { STREAM_PATH };

/** What a replica announces to its cluster on every beat (besides its id and URL). */
export interface ReplicaDescription {
  model_id: string;
  /** The preset it serves; null = any. */
  preset: string | null;
  /** Worker slots, ready ones, and ready ones free now. */
  workers: number;
  ready: number;
  available: number;
  /** Sessions it holds now, and sessions waiting in its own queue. */
  sessions: number;
  queue: number;
  /** Shutting down: takes no new sessions, moves its sessions away. */
  draining: boolean;
  version: string;
}

/**
 * A replica's part in a cluster (src/cluster/replica.ts builds it from the `cluster`
 * section): where resume states and claims live, its announcements, and the trust it
 * gives a router's continued-story headers.
 */
export interface ClusterMembership {
  readonly id: string;
  readonly resumeStore: ContinuationStore;
  readonly claims: ClaimLock;
  /** Starts announcing; `listenUrl` is where this server listens (the default advertised URL). */
  start(describe: (url: string) => ReplicaDescription, listenUrl: string): void;
  /** Workers changed: announce soon. */
  nudge(): void;
  /** Announce draining at once: routers place nothing here any more. */
  drain(): Promise<void>;
  continuedStory(req: IncomingMessage): ContinuedStory | undefined;
  close(): Promise<void>;
}

/** Parts a caller (tests, embedding) may supply instead of the config-built defaults. */
export interface ServerOverrides {
  logger?: Logger;
  store?: ContinuationStore;
  /** Where the states behind resume tokens are kept (default: in memory, apart from `store`). */
  resumeStore?: ContinuationStore;
  /** Auto-extension's prompts, instead of the configured LLM (or the last prompt again). */
  extender?: PromptExtender;
  /** Where the prompt layer reads API keys and loads its classifier (tests). */
  prompts?: Omit<PromptSetupOptions, 'observer'>;
  /** One generator per worker slot (in-process), instead of the configured ones. */
  generators?: Generator[];
  /** Pool workers, instead of the configured ones. */
  workers?: PoolWorker[];
  /** Root under which the server keeps its temp files (default: the OS temp dir). */
  tempDir?: string;
  /** Directory of the built web player served at `/` (default: web/dist of this checkout). */
  webRoot?: string;
  /** API keys from the environment, instead of `LIVEGEN_API_KEYS`. */
  envApiKeys?: string;
  /** Told of every segment encoder the server starts (operations and leak checks). */
  onEncoder?: (encoder: SegmentEncoder) => void;
  /** Membership in a cluster (from the `cluster` section; see `joinCluster`). */
  cluster?: ClusterMembership;
}

/** What operations and tests can see of a running server, without reaching into its parts. */
export interface ServerSnapshot {
  /** Sessions held, pending inits included. */
  sessions: SessionView[];
  /** Sessions whose init arrived. */
  registered: number;
  /** Connections that have not sent their init yet. */
  pendingInits: number;
  queueDepth: number;
  workers: { total: number; available: number };
  /** Bytes of opening frames being received now. */
  initBytesInFlight: number;
  /** Upgrade sockets not yet handed over, and refused ones still closing. */
  upgradeSockets: number;
  /** Bytes of initial images held in temp files. */
  tempBytes: number;
  /** The directory of this server's temp files. */
  tempDir: string;
  /** Continuation states held for running sessions. */
  storedStates: number;
  /** States kept behind resume tokens (each expires `streaming.resume_ttl_seconds` after its last write). */
  resumableStates: number;
  /** Client networks the connection rate limiter tracks (undefined when it is not in this process). */
  rateLimitKeys: number | undefined;
}

export interface LivegenServer {
  readonly policy: SessionPolicy;
  readonly logger: Logger;
  /** Starts listening; resolves with the base URL (`http://host:port`). */
  listen(): Promise<string>;
  readonly url: string;
  /** A point-in-time view of sessions, queue, workers and budgets. */
  inspect(): Promise<ServerSnapshot>;
  /** Reads the system prompt files and the safety blocklist again (SIGHUP). */
  reloadPrompts(): Promise<void>;
  /**
   * Graceful stop: refuses new connections, `/readyz` turns 503, waiting sessions end at
   * once and running segments get `graceMs` (default `server.shutdown_grace_seconds`) to
   * finish; every session gets `ltx2_stream_complete` (`stop_requested`) and close 1001;
   * then workers and the listener are stopped.
   */
  close(graceMs?: number): Promise<void>;
}

/** Run from the TypeScript sources (through tsx), or compiled into dist/ by `npm run build`. */
const FROM_SOURCES = import.meta.url.endsWith('.ts');
/** The synthetic worker program: its source, or its compiled form in dist/workers/ (scripts/build.ts). */
const SYNTHETIC_WORKER = fileURLToPath(new URL(FROM_SOURCES ? '../../workers/synthetic/main.ts' : '../workers/synthetic/main.js', import.meta.url));
let version: string | undefined;
/** This package's version (read once). */
export function packageVersion(): string {
  if (version === undefined) {
    try {
      version = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string }).version ?? 'unknown';
    } catch {
      version = 'unknown';
    }
  }
  return version;
}


function gpuIds(config: ServeConfig): number[] {
  return config.pool.gpu_ids ?? Array.from({ length: config.pool.workers }, (_, i) => i);
}

function syntheticOptions(config: ServeConfig): SyntheticGeneratorOptions {
  const { synthetic } = config.generator;
  return {
    pace: synthetic.pace,
    stepMs: synthetic.step_ms,
    audio: synthetic.audio ? { sampleRate: synthetic.audio_sample_rate, channels: 1 } : null,
    modelId: config.generator.model_id ?? 'livegen/synthetic',
  };
}

/** In-process synthetic workers; threaded ones share `renderer`, one render thread for the pool. */
function buildInProcessWorkers(config: ServeConfig, renderer: SyntheticRenderThread | undefined): PoolWorker[] {
  return gpuIds(config).map(
    (id) => new InProcessWorker(id, renderer ? new ThreadedSyntheticGenerator(renderer) : new SyntheticGenerator(syntheticOptions(config))),
  );
}

/** One supervised child process per GPU, speaking docs/worker-protocol.md. */
function buildProcessWorkers(config: ServeConfig, logger: Logger, onWorkerRestart: (workerId: number) => void): PoolWorker[] {
  const w = config.generator.worker;
  const { sampling } = config.default_request;
  const { synthetic } = config.generator;
  // Without a command, run the synthetic generator as a worker process (same code path as a model).
  const command = w.command ?? process.execPath;
  const args = w.command ? w.args : [...(FROM_SOURCES ? ['--import', 'tsx'] : []), SYNTHETIC_WORKER, ...w.args];
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
        onLog: (entry) => {
          const fields = { worker: entry.workerId, ...entry.fields };
          const level = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'].includes(entry.level) ? (entry.level as 'info') : 'info';
          logger[level](fields, `worker: ${entry.message}`);
        },
      },
    );
  });
}

/** The soft limit on open files, read from /proc (Linux); undefined elsewhere. */
function openFileLimit(): number | undefined {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    const soft = line?.split(/\s{2,}/)[1];
    return soft === undefined || soft === 'unlimited' ? undefined : Number(soft);
  } catch {
    return undefined;
  }
}


/** Composes the layers into a server: HTTP routes, the WebSocket endpoint, the reaper. */
export function createLivegenServer(config: ServeConfig, overrides: ServerOverrides = {}): LivegenServer {
  const logger = overrides.logger ?? pino({ level: config.logging.level, name: 'livegen' });
  const policy = sessionPolicyFrom(config);
  const { limits } = config;
  // Refused before anything starts: a short key in the environment is a config error.
  const access = new AccessControl(config, { apiKeys: parseEnvApiKeys(overrides.envApiKeys ?? process.env.LIVEGEN_API_KEYS) });

  const manager = new SessionManager<SessionHandle>({
    segmentCap: policy.segmentCap,
    sessionTimeoutSeconds: policy.sessionTimeoutSeconds,
    maxSessions: config.streaming.max_sessions,
    maxPending: limits.max_pending_inits,
    initTimeoutSeconds: policy.initTimeoutSeconds,
  });
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
  const inProcessSynthetic = !overrides.workers && !overrides.generators && config.generator.kind !== 'worker';
  const renderer = inProcessSynthetic && config.generator.synthetic.thread ? new SyntheticRenderThread(syntheticOptions(config)) : undefined;
  const workers =
    overrides.workers ??
    (overrides.generators
      ? overrides.generators.map((generator, id) => new InProcessWorker(id, generator))
      : config.generator.kind === 'worker'
        ? buildProcessWorkers(config, logger, (id) => metrics.workerRestarted(id))
        : buildInProcessWorkers(config, renderer));
  const pool = new WorkerPool(workers);
  const cluster = overrides.cluster;
  const placement: Placement<WorkerSlot> = {
    tryPlace: (sessionId) => {
      const slot = pool.tryAcquire(sessionId);
      if (slot) cluster?.nudge();
      return slot;
    },
    release: (slot) => pool.release(slot),
    onCapacity: (listener) => pool.onWorkerFree(listener),
  };
  if (cluster) pool.onWorkerFree(() => cluster.nudge());
  const admission = new LocalAdmission(placement, { maxQueue: config.streaming.max_queue, depthUpdateIntervalMs: config.streaming.queue_depth_update_ms });
  const store = overrides.store ?? new MemoryContinuationStore();
  // Apart from the running sessions' store, whose size returns to zero when they end.
  // In a cluster they live in Redis, so a session can move to (or resume on) another replica.
  const resumeStore = overrides.resumeStore ?? cluster?.resumeStore ?? new MemoryContinuationStore();
  const resumes = new ResumeTokens(resumeStore, {
    claims: cluster?.claims,
    ttlMs: policy.resumeTtlMs,
    maxBytes: limits.max_resume_bytes,
    sizeOf: (state) => encodedSnapshot(state).length,
  });
  const prompts = createPromptLayer(config.streaming, logger, { ...overrides.prompts, observer: metrics });
  const tempFiles = new TempFiles(overrides.tempDir ?? tmpdir(), limits.max_temp_bytes);
  const openingFrames = new OpeningFrameParser(openingFrameLimits(policy.frames));

  const services: Omit<SessionServices, 'initReceived'> = {
    policy,
    registry: manager,
    admission,
    store,
    resumes,
    extender: overrides.extender ?? prompts.extender() ?? new RepeatLastPromptExtender(),
    prompts,
    workersTotal: () => pool.total,
    workersAvailable: () => pool.available,
    openingFrames,
    tempFiles,
    metrics,
    logger,
    connection: {
      limits: {
        highWaterBytes: limits.send_high_water_bytes,
        lowWaterBytes: limits.send_low_water_bytes,
        hardLimitBytes: limits.send_hard_limit_bytes,
        stallTimeoutMs: limits.client_stall_timeout_seconds * 1000,
      },
      hooks: { onBacklogChange: (bytes, frames) => metrics.sendBacklogChanged(bytes, frames) },
    },
    createEncoder: (mode, audio) => {
      const { sampling } = policy;
      const encoder = createSegmentEncoder(mode, {
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
      overrides.onEncoder?.(encoder);
      return encoder;
    },
    // Asked when an init arrives: a worker process declares what it can resume once it is ready.
    checkContinuation: (state) => {
      const kind = workers.map((w) => w.generator.continuationKind).find((k) => k !== undefined);
      if (kind !== undefined && state.kind !== kind) {
        return `continuation_state.kind: expected ${JSON.stringify(kind)}, got ${JSON.stringify(state.kind)}`;
      }
      // A worker process can answer once it is ready (it declared its kind); in-process generators always can.
      const generators = workers.map((w) => w.generator).filter((g) => g.checkContinuation);
      const checker = generators.find((g) => g.continuationKind !== undefined) ?? generators[0];
      const problem = checker?.checkContinuation?.(state);
      return problem === undefined ? undefined : `continuation_state.${problem}`;
    },
    openEventLog: (session) => {
      const dir = config.logging.session_log_dir;
      if (!dir) return undefined;
      try {
        return new SessionEventLog(dir, session.id, session.clientId, config.logging.session_log_max_bytes);
      } catch (err) {
        // The event log is best effort: a full or read-only disk must not cost the session.
        logger.warn({ session: session.id, err }, 'cannot open the session event log');
        return undefined;
      }
    },
    releaseKey: (keyId) => {
      access.closeSession(keyId).catch((err: unknown) => logger.error({ err }, 'session counter failed'));
    },
  };

  let shuttingDown = false;
  const endpoint = new StreamEndpoint({
    services,
    access,
    logger,
    metrics,
    heartbeatMs: limits.heartbeat_interval_seconds * 1000,
    initBytesInFlight: limits.init_bytes_in_flight,
    maxFrameBytes: MAX_INIT_FRAME_BYTES,
    isShuttingDown: () => shuttingDown,
    continuedStory: cluster ? (req) => cluster.continuedStory(req) : undefined,
  });

  const status = (): ServerStatus => ({
    sessions: manager.registered,
    pendingInits: manager.pending,
    queueDepth: admission.queueDepth,
    pool,
    streamMode: config.streaming.stream_mode,
    shuttingDown,
    prompts: () => prompts.status(),
  });
  const routes = buildRoutes(status, metrics);
  const webRoot = overrides.webRoot ?? (config.server.web_root ? resolve(config.server.web_root) : fileURLToPath(new URL('../../web/dist', import.meta.url)));
  if (config.server.web_root && !existsSync(join(webRoot, 'index.html'))) {
    throw new ConfigError(`server.web_root: ${webRoot} has no index.html (expected a static site, e.g. the Dreamverse app's out/)`);
  }
  const http: Server = createHttpFront(limits, { routes, access, webRoot, logger });
  http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => endpoint.handleUpgrade(req, socket, head));

  const nofile = openFileLimit();
  // Each session may hold its socket, an encoder's pipes and a temp file; a worker process its pipes.
  const fdsNeeded = limits.max_connections + config.streaming.max_sessions * 5 + config.pool.workers * 4 + 64;
  if (nofile !== undefined && fdsNeeded > nofile) {
    logger.warn({ open_file_limit: nofile, needed: fdsNeeded }, 'the open-file limit is below what the configured limits can use; raise it (ulimit -n) or lower limits.max_connections / streaming.max_sessions');
  }

  // The reaper: FastVideo leaves reap_timed_out unwired; here it runs for every state.
  // It judges after pending I/O, so frames that arrived during a stall count as activity.
  const reaper = setInterval(
    () =>
      setImmediate(() => {
        for (const id of manager.reapTimedOut()) manager.handle(id)?.timeOut();
      }),
    config.streaming.reaper_interval_ms,
  );
  reaper.unref();

  let baseUrl = '';
  return {
    policy,
    logger,
    get url() {
      return baseUrl;
    },
    async listen() {
      // Prompts are checked from the first session on: the classifier loads before anyone connects.
      await prompts.start();
      return new Promise<string>((resolve, reject) => {
        http.once('error', reject);
        http.listen(config.server.port, config.server.host, () => {
          http.off('error', reject);
          // HTTP is up before workers warm, so probes answer (503 warming) during warmup.
          pool.start();
          const address = http.address() as AddressInfo;
          const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
          baseUrl = `http://${host}:${address.port}`;
          cluster?.start(
            () => ({
              model_id: config.generator.model_id ?? workers[0]?.generator.modelId ?? 'livegen/synthetic',
              preset: policy.preset ?? null,
              workers: pool.total,
              ready: pool.ready,
              available: shuttingDown ? 0 : pool.available,
              sessions: manager.registered,
              queue: admission.queueDepth,
              draining: shuttingDown,
              version: packageVersion(),
            }),
            baseUrl,
          );
          resolve(baseUrl);
        });
      });
    },
    reloadPrompts() {
      return prompts.reload();
    },
    async inspect() {
      return {
        sessions: manager.handles().map((driver) => driver.view()),
        registered: manager.registered,
        pendingInits: manager.pending,
        queueDepth: admission.queueDepth,
        workers: { total: pool.total, available: pool.available },
        initBytesInFlight: endpoint.initBytesInFlight,
        upgradeSockets: endpoint.upgradeSockets,
        tempBytes: tempFiles.bytes,
        tempDir: tempFiles.dir,
        storedStates: await store.size(),
        resumableStates: await resumeStore.size(),
        rateLimitKeys: access.trackedAddresses,
      };
    },
    async close(graceMs = config.server.shutdown_grace_seconds * 1000) {
      shuttingDown = true;
      clearInterval(reaper);
      // Routers stop placing here first; the sessions closing below (1001) move to other replicas.
      await cluster?.drain().catch((err: unknown) => logger.warn({ err }, 'cannot announce draining'));
      await Promise.allSettled(manager.handles().map((driver) => driver.shutdown(graceMs)));
      endpoint.close();
      admission.close();
      await pool.stop(config.generator.worker.shutdown_grace_ms);
      await renderer?.close();
      await openingFrames.close();
      await store.close();
      await resumes.close();
      await cluster?.close();
      prompts.close();
      tempFiles.dispose();
      const closed = new Promise<void>((resolve) => http.close(() => resolve()));
      http.closeAllConnections();
      await closed;
    },
  };
}
