/**
 * The story of one client on a router, top to bottom:
 *
 *   opening frame (checked like a replica checks it) → preset served somewhere? → a place
 *   among the cluster's sessions → the global queue (live `queue_status` on this socket)
 *   → granted a replica → one upstream socket to it carrying the init → frames both ways
 *   until either side ends → on a lost or draining replica: back to the front of the
 *   queue, another replica, the same story resumed from its last stored state
 *   (`session_migrated`) → end.
 *
 * Media passes through as it came (binary frames are never parsed). Control frames from
 * the replica are read for what the router must remember to move the session: its
 * resume token, the segment running and the last completed, the media time, and the
 * client's requests and toggles not yet served.
 */
import type { IncomingMessage } from 'node:http';
import type { Logger } from 'pino';
import { WebSocket, type RawData } from 'ws';
import { buildServerMessage, CloseCode, encodeServerMessage, ErrorCode, errorMessage, parseClientMessage, type ServerMessage } from '../protocol/index.js';
import { AdmissionTimeout, QueueFull } from '../session/index.js';
import type { ClusterPlacement, ReplicaLease } from './placement.js';
import type { ClusterAdmitOptions, RedisAdmission } from './redis-admission.js';
import { servesPreset, type ReplicaRegistry } from './replicas.js';
import { ROUTER_HEADER, storyHeaders } from './story-headers.js';
import type { RouterMetrics } from './router-metrics.js';

export interface RoutedSessionServices {
  routerId: string;
  admission: RedisAdmission<ReplicaLease>;
  placement: ClusterPlacement;
  registry: ReplicaRegistry;
  /** Takes one of the cluster's session places; false when it holds `max_sessions` (waits while Redis is unreachable). */
  takeSessionPlace(signal: AbortSignal): Promise<boolean>;
  releaseSessionPlace(): void;
  metrics: RouterMetrics;
  logger: Logger;
  secret: string | undefined;
  initTimeoutMs: number;
  queueTimeoutMs: number;
  /** Client send backlog past which the replica's socket stops being read, and where it resumes. */
  highWaterBytes: number;
  lowWaterBytes: number;
  /** How long the client's backlog may stay above the high watermark before it is closed 1013. */
  stallTimeoutMs: number;
  /** Largest frame an upstream socket accepts (the replica's own limits apply before). */
  maxFrameBytes: number;
}

/** A client request the replica has not finished yet (replayed on another replica). */
interface PendingRequest {
  text: string;
  prompt: string;
  source: string;
  started: boolean;
}

type Toggle = 'enhancement_enabled' | 'auto_extension_enabled' | 'loop_generation_enabled' | 'generation_paused';

const TOGGLES: Record<string, { field: Toggle; key: 'enabled' | 'paused' }> = {
  enhancement_updated: { field: 'enhancement_enabled', key: 'enabled' },
  auto_extension_updated: { field: 'auto_extension_enabled', key: 'enabled' },
  loop_generation_updated: { field: 'loop_generation_enabled', key: 'enabled' },
  generation_paused_updated: { field: 'generation_paused', key: 'paused' },
};

/**
 * After closing a client that stopped reading, how long it gets to drain what is queued
 * for it (its close frame comes last) before the TCP connection is dropped; it gets
 * another period as long as it makes progress. The replica drops after a fixed second.
 */
const SLOW_CLIENT_DROP_MS = 1000;

/** Upstream close codes that mean "this replica is gone or leaving", not "this session ended". */
const MOVE_ON_CLOSE = new Set([1001, 1005, 1006, 1012]);

let sessionCounter = 0;

export class RoutedSession {
  readonly id: string;
  private readonly lifetime = new AbortController();
  private init: Record<string, unknown> = {};
  private upstream: WebSocket | undefined;
  private lease: ReplicaLease | undefined;
  private placeTaken = false;
  private active = false;
  private ended = false;
  /** Told its place while queued; the replica's own `queue_status` is passed on only when it differs. */
  private lastQueueStatus = '';
  private resumeToken: string | undefined;
  private completed = 0;
  private running: { idx: number; prompt: string; source: string } | undefined;
  /** The last segment that started: a fresh replica's auto-extension goes on from its prompt. */
  private lastStarted: { prompt: string; source: string } | undefined;
  private ptsBaseMs = 0;
  private readonly pending: PendingRequest[] = [];
  /** Frames that arrived while the session had no replica (sent to the next one). */
  private readonly deferred: string[] = [];
  /** A `stop_requested` end held back until the close says whether the replica is leaving. */
  private heldStop: string | undefined;
  /** The replica the session just left: not placed there again (it may still look alive for a TTL). */
  private readonly excluded = new Set<string>();
  /** Whether the client has seen `ltx2_stream_start` (from the first replica it streamed on). */
  private started = false;
  private moving: 'replica_lost' | 'replica_draining' | undefined;
  private upstreamPaused = false;
  /** Judges a client whose backlog stays high while the replica's socket is held back. */
  private stallTimer: NodeJS.Timeout | undefined;
  /**
   * Settles once the opening frame phase is over: the init arrived, was refused, never
   * came, or the client left. Until then the session counts as a pending init.
   */
  readonly opened: Promise<void>;
  private settleOpened: () => void = () => undefined;
  /**
   * Settles when the session ends, before its close frame goes: a client that sees the
   * close finds the router no longer counting it (as a replica's `/health` does not).
   */
  readonly done: Promise<void>;
  private settleDone: () => void = () => undefined;

  constructor(
    private readonly services: RoutedSessionServices,
    private readonly client: WebSocket,
    private readonly req: IncomingMessage,
  ) {
    this.id = `${services.routerId}-${(++sessionCounter).toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
    this.opened = new Promise((resolve) => (this.settleOpened = resolve));
    this.done = new Promise((resolve) => (this.settleDone = resolve));
    client.on('close', () => this.end('client left'));
    client.on('error', () => undefined);
    void this.run();
  }

  /** The replica this session streams from now (for cluster `/status`). */
  get replica(): string | undefined {
    return this.lease?.replicaId;
  }

  /** Whether the replica's socket is not being read because the client's backlog is high. */
  get holdingUpstream(): boolean {
    return this.upstreamPaused;
  }

  /** Ends the upstream socket at once (its replica vanished from the registry): the session moves. */
  dropUpstream(): void {
    this.upstream?.terminate();
  }

  // ---------------------------------------------------------------- the story

  private async run(): Promise<void> {
    try {
      const text = await this.receiveInit();
      this.settleOpened();
      if (text === undefined) return;
      if (!(await this.checkPreset())) return;
      let place: boolean;
      try {
        place = await this.services.takeSessionPlace(this.lifetime.signal);
      } catch (err) {
        if (this.ended) return;
        return this.refuse(ErrorCode.GPU_UNAVAILABLE, `the cluster is unavailable: ${(err as Error).message}`, CloseCode.TRY_AGAIN_LATER, true);
      }
      if (this.ended) {
        if (place) this.services.releaseSessionPlace();
        return;
      }
      if (!place) {
        return this.refuse(ErrorCode.SESSION_REJECTED, 'the cluster holds its maximum of sessions; retry later', CloseCode.TRY_AGAIN_LATER, true);
      }
      this.placeTaken = true;
      const lease = await this.queue(false);
      if (!lease) return;
      this.connect(lease);
    } catch (err) {
      this.services.logger.error({ session: this.id, err }, 'routed session failed');
      this.refuse(ErrorCode.INTERNAL_ERROR, 'internal error in the router', CloseCode.INTERNAL_ERROR, true);
    }
  }

  /** 1. The first frame must be a valid `session_init_v2`, as on a replica. */
  private receiveInit(): Promise<string | undefined> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.client.off('message', onMessage);
        // As on a replica (PROTOCOL.md: "no init within the timeout: the session ends
        // timeout"): the timeout notice, then close 1000; not an error frame.
        const seconds = this.services.initTimeoutMs / 1000;
        this.sendJson(buildServerMessage('session_timeout', { timeout_seconds: seconds }));
        this.services.metrics.refused('session_timeout');
        this.finish(CloseCode.NORMAL, 'session timeout');
        resolve(undefined);
      }, this.services.initTimeoutMs);
      const onMessage = (data: RawData, isBinary: boolean): void => {
        clearTimeout(timer);
        this.client.off('message', onMessage);
        const buffer = toBuffer(data);
        const parsed = parseClientMessage(buffer, { binary: isBinary });
        if (!parsed.ok || parsed.message.type !== 'session_init_v2') {
          const message = parsed.ok ? `the first frame must be session_init_v2, got ${parsed.message.type}` : parsed.error.message;
          this.refuse(ErrorCode.INVALID_MESSAGE, message, CloseCode.UNSUPPORTED_DATA, false);
          resolve(undefined);
          return;
        }
        const text = buffer.toString('utf8');
        this.init = JSON.parse(text) as Record<string, unknown>;
        this.client.on('message', (d, binary) => this.onClientFrame(d, binary));
        resolve(text);
      };
      this.client.on('message', onMessage);
      this.lifetime.signal.addEventListener('abort', () => {
        clearTimeout(timer);
        resolve(undefined);
      });
    });
  }

  /** 2. `preset_mismatch` only when replicas are known and none serves the preset. */
  private async checkPreset(): Promise<boolean> {
    const preset = typeof this.init.preset === 'string' ? this.init.preset : undefined;
    if (preset === undefined) return true;
    let replicas;
    try {
      replicas = await this.services.registry.list();
    } catch {
      return true; // Redis unavailable: the queue decides (it waits, or times out)
    }
    if (replicas.length === 0 || replicas.some((r) => servesPreset(r, preset))) return true;
    const served = [...new Set(replicas.map((r) => r.preset).filter((p) => p !== null))].join(', ');
    this.refuse(ErrorCode.PRESET_MISMATCH, `preset ${JSON.stringify(preset)} is not served by any replica (served: ${served})`, CloseCode.UNSUPPORTED_DATA, false);
    return false;
  }

  /** 3. The global queue: a replica with a free worker, or the end (full, timed out, left). */
  private async queue(front: boolean): Promise<ReplicaLease | undefined> {
    const { admission, placement, queueTimeoutMs, metrics } = this.services;
    placement.expect(this.id, { preset: typeof this.init.preset === 'string' ? this.init.preset : undefined, exclude: this.excluded });
    const started = performance.now();
    let told = false;
    const options: ClusterAdmitOptions = { signal: this.lifetime.signal, timeoutMs: queueTimeoutMs, front };
    try {
      const lease = await admission.admit(
        {
          sessionId: this.id,
          onPosition: (position, depth) => {
            told = true;
            // A session moving between replicas is already active: it hears of the move, not of places.
            if (!front) this.sendQueueStatus(position, depth);
          },
        },
        options,
      );
      if (this.ended) {
        admission.release(lease);
        return undefined;
      }
      if (!told && !front) this.sendQueueStatus(0, admission.queueDepth);
      metrics.granted(performance.now() - started, front);
      this.lease = lease;
      return lease;
    } catch (err) {
      if (this.ended) return undefined;
      if (front) {
        this.refuse(ErrorCode.WORKER_FAILED, `its replica was lost and no other could take the session: ${(err as Error).message}`, CloseCode.INTERNAL_ERROR, true);
      } else if (err instanceof QueueFull) {
        this.refuse(ErrorCode.SESSION_REJECTED, err.message, CloseCode.TRY_AGAIN_LATER, true);
      } else if (err instanceof AdmissionTimeout) {
        this.refuse(ErrorCode.GPU_UNAVAILABLE, err.message, CloseCode.TRY_AGAIN_LATER, true);
      } else {
        this.refuse(ErrorCode.GPU_UNAVAILABLE, `the cluster queue is unavailable: ${(err as Error).message}`, CloseCode.TRY_AGAIN_LATER, true);
      }
      return undefined;
    } finally {
      placement.forget(this.id);
    }
  }

  /** 4. One upstream socket to the granted replica, carrying the init (or the resumed init). */
  private connect(lease: ReplicaLease): void {
    const { secret, routerId, maxFrameBytes, metrics } = this.services;
    const url = `${lease.url.replace(/^http/, 'ws')}/v1/stream`;
    const headers: Record<string, string> = { [ROUTER_HEADER]: routerId };
    // The client's credentials go along: the replica checks the key and binds resume tokens to it.
    const auth = this.req.headers.authorization;
    if (auth) headers.authorization = auth;
    const moving = this.moving !== undefined;
    if (moving) Object.assign(headers, storyHeaders({ segmentIdx: this.completed, ptsBaseMs: this.ptsBaseMs }, secret));
    const query = (this.req.url ?? '').includes('?') ? (this.req.url ?? '').slice((this.req.url ?? '').indexOf('?')) : '';
    const upstream = new WebSocket(url + query, { headers, perMessageDeflate: false, maxPayload: maxFrameBytes, handshakeTimeout: 5000 });
    this.upstream = upstream;
    const opened = performance.now();
    let sawFrame = false;
    upstream.on('open', () => {
      metrics.hop(performance.now() - opened);
      upstream.send(moving ? JSON.stringify(this.resumedInit()) : JSON.stringify(this.init));
      // Requests sent while the session waited (or not yet finished by a lost replica) go now.
      this.replay(upstream);
      for (const text of this.deferred.splice(0)) upstream.send(text);
    });
    upstream.on('message', (data, isBinary) => {
      sawFrame = true;
      this.onUpstreamFrame(data, isBinary);
    });
    upstream.on('error', (err) => this.services.logger.debug({ session: this.id, replica: lease.replicaId, err }, 'upstream socket error'));
    upstream.on('close', (code, reason) => {
      if (this.upstream !== upstream) return;
      this.upstream = undefined;
      this.onUpstreamClose(lease, code, reason.toString('utf8'), sawFrame);
    });
  }

  /** The init for another replica: the same story, from the state its last segment stored. */
  private resumedInit(): Record<string, unknown> {
    const { continuation_state: _state, initial_image: _image, ...rest } = this.init;
    return { ...rest, resume_token: this.resumeToken };
  }

  /** Requests not yet finished go (again), an interrupted segment of the server's own choosing first. */
  private replay(upstream: WebSocket): void {
    const running = this.running;
    const first = this.pending[0];
    // An interrupted segment of the server's own choosing (auto-extension) is asked for again by its prompt.
    const serverDriven = this.init.loop_generation_enabled === true;
    if (running && !first?.started && !serverDriven) {
      upstream.send(JSON.stringify({ type: 'segment_prompt_source', prompt: running.prompt, source: running.source }));
    } else if (!running && this.pending.length === 0 && !serverDriven && this.init.auto_extension_enabled === true && this.lastStarted) {
      // Between segments with nothing asked: the new replica knows no last prompt to extend, so it is given it.
      upstream.send(JSON.stringify({ type: 'segment_prompt_source', prompt: this.lastStarted.prompt, source: 'auto_extension' }));
    }
    for (const request of this.pending) {
      request.started = false;
      upstream.send(request.text);
    }
    this.running = undefined;
  }

  // ------------------------------------------------------------- both ways

  private onClientFrame(data: RawData, isBinary: boolean): void {
    const buffer = toBuffer(data);
    if (!isBinary) this.remember(buffer);
    const upstream = this.upstream;
    if (upstream && upstream.readyState === WebSocket.OPEN && this.moving === undefined) {
      upstream.send(buffer, { binary: isBinary });
      this.services.metrics.proxied('up', buffer.length);
    } else if (!isBinary && !this.remembered(buffer)) {
      // Not replayed from what the router remembers (a snapshot request, say): sent as it came.
      this.deferred.push(buffer.toString('utf8'));
    }
  }

  /** Keeps what a move needs: toggles merged into the init, and requests until they complete. */
  private remember(buffer: Buffer): void {
    const message = parseJson(buffer);
    if (!message || typeof message.type !== 'string') return;
    const toggle = TOGGLES[message.type];
    if (toggle && typeof message[toggle.key] === 'boolean') {
      this.init[toggle.field] = message[toggle.key];
      return;
    }
    if (message.type === 'seed_prompts_updated' && Array.isArray(message.seed_prompts)) {
      this.init.curated_prompts = message.seed_prompts;
      return;
    }
    if (message.type === 'segment_prompt_source' && typeof message.prompt === 'string') {
      this.pending.push({ text: buffer.toString('utf8'), prompt: message.prompt, source: typeof message.source === 'string' ? message.source : 'user', started: false });
    }
  }

  /** Frames the replay rebuilds by itself. */
  private remembered(buffer: Buffer): boolean {
    const type = parseJson(buffer)?.type;
    return typeof type === 'string' && (type in TOGGLES || type === 'seed_prompts_updated' || type === 'segment_prompt_source');
  }

  private onUpstreamFrame(data: RawData, isBinary: boolean): void {
    const buffer = toBuffer(data);
    if (isBinary) {
      this.forward(buffer, true);
      return;
    }
    const message = parseJson(buffer) as (ServerMessage & Record<string, unknown>) | undefined;
    switch (message?.type) {
      case 'queue_status': {
        // Places come from the global queue; a replica's own queue (rare) is passed on when it says something new.
        if (this.active) return;
        const key = `${message.position}/${message.queue_depth}`;
        if (key === this.lastQueueStatus) return;
        this.lastQueueStatus = key;
        break;
      }
      case 'gpu_assigned':
        this.resumeToken = message.resume_token;
        if (this.moving !== undefined && this.lease) {
          const reason = this.moving;
          this.moving = undefined;
          this.services.metrics.migrated(reason);
          this.sendJson(
            buildServerMessage('session_migrated', {
              from_replica: [...this.excluded][0] ?? '',
              to_replica: this.lease.replicaId,
              gpu_id: message.gpu_id,
              segment_idx: this.completed,
              reason,
              ...(message.resume_token ? { resume_token: message.resume_token } : {}),
            }),
          );
          return;
        }
        this.active = true;
        break;
      case 'ltx2_stream_start':
        if (this.started) return; // the client saw it from the first replica
        this.started = true;
        break;
      case 'ltx2_segment_start': {
        this.running = { idx: message.segment_idx, prompt: message.prompt, source: message.source ?? 'user' };
        this.lastStarted = this.running;
        const next = this.pending.find((p) => !p.started);
        if (next && next.prompt === message.prompt && (message.source === undefined || next.source === message.source)) next.started = true;
        break;
      }
      case 'media_segment_complete':
        if (typeof message.pts_base_ms === 'number' && typeof message.duration_ms === 'number') this.ptsBaseMs = message.pts_base_ms + message.duration_ms;
        break;
      case 'ltx2_segment_complete':
        this.completed = message.segment_idx + 1;
        this.running = undefined;
        if (this.pending[0]?.started) this.pending.shift();
        break;
      case 'ltx2_stream_complete':
        if (message.reason === 'stop_requested' && this.init.single_clip_mode !== true) {
          this.heldStop = buffer.toString('utf8');
          return;
        }
        break;
      default:
        break;
    }
    this.forward(buffer, false);
  }

  /**
   * Backpressure end to end: past the high watermark the replica's socket is no longer
   * read, so its kernel buffers fill and the replica's own send backlog holds its media
   * back; nothing piles up here beyond the watermark and the frames already read. Reading
   * resumes at the low watermark (from the send callbacks, as the backlog drains).
   */
  private forward(buffer: Buffer, binary: boolean): void {
    const client = this.client;
    if (client.readyState !== WebSocket.OPEN) return;
    client.send(buffer, { binary }, () => this.maybeResume());
    this.services.metrics.proxied('down', buffer.length);
    if (!this.upstreamPaused && client.bufferedAmount > this.services.highWaterBytes && this.upstream) {
      this.upstreamPaused = true;
      this.upstream.pause();
      this.watchStall();
    }
  }

  private maybeResume(): void {
    if (this.upstreamPaused && this.client.bufferedAmount <= this.services.lowWaterBytes) {
      this.upstreamPaused = false;
      this.stopWatchingStall();
      this.upstream?.resume();
    }
  }

  /**
   * The router judges a client that stopped reading itself, as a replica does
   * (`limits.client_stall_timeout_seconds`): it cannot rely on the replica's judgement,
   * because the replica's error and close frame wait in the very socket the router is not
   * reading. Its backlog crosses the watermark before the replica's, so with the same
   * timeout it judges first. Still above the high watermark, or no byte drained since the
   * last look: closed 1013. Draining slowly between the watermarks: judged again later.
   * Judged after pending I/O, so writes that drained it during an event-loop stall count.
   */
  private watchStall(): void {
    const backlogThen = this.client.bufferedAmount;
    this.stallTimer = setTimeout(() => {
      setImmediate(() => {
        this.stallTimer = undefined;
        if (this.ended || !this.upstreamPaused) return;
        const backlog = this.client.bufferedAmount;
        if (backlog > this.services.highWaterBytes || backlog >= backlogThen) this.closeSlowClient();
        else this.watchStall();
      });
    }, this.services.stallTimeoutMs);
    this.stallTimer.unref();
  }

  private stopWatchingStall(): void {
    clearTimeout(this.stallTimer);
    this.stallTimer = undefined;
  }

  /**
   * The replica's slow-client ending, applied here: a retryable `internal_error`, close
   * 1013. Both go after the backlog, so a client that never reads again never sees them:
   * its TCP connection is dropped unless it drains within SLOW_CLIENT_DROP_MS.
   */
  private closeSlowClient(): void {
    if (this.ended) return;
    const client = this.client;
    this.services.logger.info({ session: this.id, backlog: client.bufferedAmount }, 'client is not reading fast enough: closing it (1013)');
    this.sendJson(errorMessage(ErrorCode.INTERNAL_ERROR, 'client is not reading fast enough: closing', true));
    this.services.metrics.refused('slow_client');
    this.finish(CloseCode.TRY_AGAIN_LATER, 'client too slow');
    let backlogThen = client.bufferedAmount;
    const drop = setInterval(() => {
      // After pending I/O, like the stall: writes done during an event-loop stall are progress.
      setImmediate(() => {
        const backlog = client.bufferedAmount;
        if (client.readyState === WebSocket.CLOSED) clearInterval(drop);
        else if (backlog === 0 || backlog >= backlogThen) {
          // All written (the close frame too, which the kernel still delivers), or stuck.
          clearInterval(drop);
          client.terminate();
        } else backlogThen = backlog;
      });
    }, SLOW_CLIENT_DROP_MS);
    drop.unref();
  }

  // ----------------------------------------------------------------- endings

  private onUpstreamClose(lease: ReplicaLease, code: number, reason: string, sawFrame: boolean): void {
    const heldBack = this.upstreamPaused;
    this.upstreamPaused = false;
    this.stopWatchingStall();
    this.services.admission.release(lease);
    this.lease = undefined;
    if (this.ended) return;
    const leaving = MOVE_ON_CLOSE.has(code) || (!sawFrame && code !== CloseCode.TRY_AGAIN_LATER);
    if (leaving && heldBack) {
      // The replica gave up while this router held its socket back for a client that does
      // not read: the client is the cause, and moving it would only repeat this elsewhere.
      this.closeSlowClient();
      return;
    }
    if (leaving && (this.resumeToken !== undefined || !this.active)) {
      this.heldStop = undefined;
      this.moveOn(lease.replicaId, code === 1001 || code === 1012 ? 'replica_draining' : 'replica_lost');
      return;
    }
    if (leaving && this.active) {
      this.refuse(ErrorCode.WORKER_FAILED, `its replica ${lease.replicaId} went away and the session kept no state to move with`, CloseCode.INTERNAL_ERROR, true);
      return;
    }
    if (this.heldStop) this.sendText(this.heldStop);
    this.finish(code, reason);
  }

  /** 5. Back to the front of the queue, then another replica picks the story up. */
  private moveOn(from: string, why: 'replica_lost' | 'replica_draining'): void {
    // Only the one just left: replicas left earlier may be back (a rolling restart).
    this.excluded.clear();
    this.excluded.add(from);
    this.services.logger.info({ session: this.id, from, why, completed: this.completed }, 'moving the session to another replica');
    // Before it was ever active there is nothing to resume: the init goes again as it was.
    if (this.active) this.moving = why;
    void this.queue(true).then((lease) => {
      if (lease) this.connect(lease);
    });
  }

  private end(why: string): void {
    if (this.ended) return;
    this.ended = true;
    this.settleOpened();
    this.settleDone();
    this.lifetime.abort(new Error(why));
    this.stopWatchingStall();
    const upstream = this.upstream;
    this.upstream = undefined;
    if (upstream) {
      // A socket held back cannot complete a close handshake (the replica's answer would
      // wait behind the media this router is not reading, and the replica reads nothing
      // while its own backlog is high): it is dropped, and the replica frees the worker now.
      if (upstream.readyState === WebSocket.OPEN && !this.upstreamPaused) upstream.close(CloseCode.NORMAL, 'client left');
      else upstream.terminate();
    }
    this.upstreamPaused = false;
    if (this.lease) this.services.admission.release(this.lease);
    this.lease = undefined;
    if (this.placeTaken) this.services.releaseSessionPlace();
    this.placeTaken = false;
  }

  private refuse(code: ErrorCode, message: string, close: number, retryable: boolean): void {
    if (this.ended) return;
    this.sendJson(errorMessage(code, message, retryable));
    this.services.metrics.refused(code);
    this.finish(close, code);
  }

  private finish(code: number, reason: string): void {
    const client = this.client;
    this.end(reason || 'closed');
    if (client.readyState === WebSocket.OPEN) client.close(validCloseCode(code), reason.slice(0, 120));
  }

  private sendQueueStatus(position: number, depth: number): void {
    this.lastQueueStatus = `${position}/${depth}`;
    this.sendJson(buildServerMessage('queue_status', { position, queue_depth: depth }));
  }

  private sendJson(message: ServerMessage): void {
    this.sendText(encodeServerMessage(message));
  }

  private sendText(text: string): void {
    // Its callback too may be the one that finds the backlog drained.
    if (this.client.readyState === WebSocket.OPEN) this.client.send(text, () => this.maybeResume());
  }
}

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

function parseJson(buffer: Buffer): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(buffer.toString('utf8'));
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** Close codes a peer may send (1005, 1006 and 1015 are reserved for reporting). */
function validCloseCode(code: number): number {
  return code === 1005 || code === 1006 || code === 1015 || code < 1000 ? CloseCode.INTERNAL_ERROR : code;
}
