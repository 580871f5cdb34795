import { performance } from 'node:perf_hooks';
import type { WebSocket } from 'ws';
import type { ContinuationState, SegmentRequest } from '../generation/types.js';
import type { SegmentEncoder } from '../media/index.js';
import type { WorkerSlot } from '../pool/index.js';
import {
  CloseCode,
  ErrorCode,
  MAX_INITIAL_IMAGE_BYTES,
  SessionInitV2Schema,
  StreamCompleteReason,
  buildServerMessage,
  errorMessage,
  parseClientMessage,
  snapshotMessage,
  type ClientMessage,
  type PromptSource,
  type SegmentPromptSource,
  type SessionInitV2,
} from '../protocol/index.js';
import { Session, SessionRejected, SessionState } from '../session/index.js';
import { AdmissionTimeout, QueueFull } from './admission.js';
import { ClientConnection } from './connection.js';
import type { ServerContext } from './context.js';
import { InitImageFile } from './init-image.js';
import { runSegment } from './segment-runner.js';
import { SessionEventLog } from './session-log.js';

/** The opening frame may carry a 32 MiB image as base64 (4/3 larger) plus the other fields. */
export const MAX_INIT_FRAME_BYTES = Math.ceil((MAX_INITIAL_IMAGE_BYTES * 4) / 3) + 1024 * 1024;

/** A segment the session will run: what to generate and why. */
interface SegmentJob {
  prompt: string;
  source: PromptSource;
  negativePrompt?: string;
  seed?: number;
  steps?: number;
  guidanceScale?: number;
  receivedAt: number;
}

/** How a session ended, decided once by `end()`. */
type Ending =
  | { kind: 'segment_cap' }
  | { kind: 'timeout' }
  | { kind: 'left' }
  | { kind: 'rejected'; code: ErrorCode; message: string; close: number }
  | { kind: 'queue_timeout'; message: string }
  | { kind: 'failed'; code: ErrorCode; message: string; retryable: boolean }
  | { kind: 'too_large'; message: string }
  | { kind: 'slow_client' }
  | { kind: 'shutdown' };

class SessionEnded extends Error {
  override readonly name = 'SessionEnded';
}

/**
 * The story of one connection's session, top to bottom:
 *
 *   register → wait for `session_init_v2` → apply it → admit (queue or bind) →
 *   `gpu_assigned`, `active`, `ltx2_stream_start` → serve segments until the cap,
 *   a timeout, the client leaving or a failure → clean up, always.
 *
 * Control frames (toggles, `snapshot_state`) are answered as they arrive, even while a
 * segment runs; segment requests wait in a bounded per-session queue.
 */
export class SessionDriver {
  readonly session: Session;
  private readonly connection: ClientConnection;
  /** Aborted when the session ends for any reason; every wait races it. */
  private readonly lifetime = new AbortController();
  private ending: Ending | undefined;
  private initReceived = false;
  private resolveInit: ((message: SessionInitV2) => void) | undefined;
  private readonly pending: SegmentJob[] = [];
  private wake: (() => void) | undefined;
  private segmentRunning = false;
  private segmentAbort: AbortController | undefined;
  private slot: WorkerSlot | undefined;
  private nextEncoder: SegmentEncoder | undefined;
  private runningEncoder: SegmentEncoder | undefined;
  private initImage: InitImageFile | undefined;
  private eventLog: SessionEventLog | undefined;
  private lastPrompt: string | undefined;
  private loopCursor = 0;
  private ptsBaseMs = 0;
  /** Settles when the running segment (if any) has finished, for a graceful shutdown. */
  private currentSegment: Promise<void> | undefined;
  private stopping = false;
  /** Settles once the init's image and continuation state are stored (or the session ended). */
  private initApplied: Promise<void> = Promise.resolve();
  private readonly finished: Promise<void>;

  private constructor(
    private readonly ctx: ServerContext,
    ws: WebSocket,
    session: Session,
    private readonly keyId: string | undefined,
  ) {
    this.session = session;
    this.connection = new ClientConnection(ws, ctx.connectionOptions);
    this.connection.onStall = () => this.end({ kind: 'slow_client' });
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      // A bug in handling one frame ends this session, never the process.
      try {
        this.onFrame(data, isBinary);
      } catch (err) {
        ctx.logger.error({ session: session.id, err }, 'frame handling failed');
        this.end({ kind: 'failed', code: ErrorCode.INTERNAL_ERROR, message: 'internal error', retryable: true });
      }
    });
    ws.on('close', () => this.end({ kind: 'left' }));
    ws.on('error', (err) => ctx.logger.warn({ session: session.id, err }, 'socket error'));
    this.finished = this.run();
  }

  /**
   * Registers a session for a new connection, or rejects it (`session_rejected`, close 1013)
   * when the server holds its maximum. Returns the driver, whose `done` settles at the end.
   */
  static open(ctx: ServerContext, ws: WebSocket, keyId: string | undefined = undefined): SessionDriver | undefined {
    const refuse = (message: string, close: number, reason: string): undefined => {
      // A reset while the refusal goes out must not become an unhandled 'error' event.
      ws.on('error', () => undefined);
      const connection = new ClientConnection(ws, ctx.connectionOptions);
      connection.send(errorMessage(ErrorCode.SESSION_REJECTED, message, true));
      connection.close(close, reason);
      ctx.metrics.sessionRejected();
      return undefined;
    };
    if (!ctx.access.openSession(keyId)) {
      return refuse('this API key holds its maximum of concurrent sessions', CloseCode.POLICY_VIOLATION, 'session limit for this key');
    }
    let session: Session;
    try {
      session = ctx.manager.create();
    } catch (err) {
      ctx.access.closeSession(keyId);
      if (!(err instanceof SessionRejected)) throw err;
      return refuse(`server is full: ${err.message}`, CloseCode.TRY_AGAIN_LATER, 'server full');
    }
    const driver = new SessionDriver(ctx, ws, session, keyId);
    ctx.drivers.set(session.id, driver);
    return driver;
  }

  get done(): Promise<void> {
    return this.finished;
  }

  /** Bytes queued to this client but not yet written to its socket (for metrics and tests). */
  get sendBacklogBytes(): number {
    return this.connection.backlog;
  }

  /** Process id of the ffmpeg encoding the running segment, if any (operations and tests). */
  get encoderPid(): number | undefined {
    return this.runningEncoder?.pid;
  }

  // ---------------------------------------------------------------- the story

  private async run(): Promise<void> {
    this.ctx.metrics.sessionOpened();
    try {
      const init = await this.receiveInit();
      this.initApplied = this.applyInit(init);
      await this.initApplied;
      const slot = await this.admit();
      this.announceActive(slot);
      await this.serveSegments();
    } catch (err) {
      if (!(err instanceof SessionEnded) && !this.lifetime.signal.aborted) {
        this.ctx.logger.error({ session: this.session.id, err }, 'session failed');
        this.end({ kind: 'failed', code: ErrorCode.INTERNAL_ERROR, message: 'internal error', retryable: true });
      }
    } finally {
      await this.cleanup();
    }
  }

  /** 1. The first frame must be a valid `session_init_v2`; anything else rejects the session. */
  private receiveInit(): Promise<SessionInitV2> {
    return this.untilEnded(
      new Promise<SessionInitV2>((resolve) => {
        this.resolveInit = resolve;
      }),
    );
  }

  /** 2. The initial image and any continuation state to resume (flags were set on arrival). */
  private async applyInit(init: SessionInitV2): Promise<void> {
    const s = this.session;
    if (init.initial_image) {
      this.initImage = await InitImageFile.write(init.initial_image, this.ctx.tempDir);
      if (this.lifetime.signal.aborted) throw new SessionEnded();
    }
    if (init.continuation_state) {
      const state: ContinuationState = { kind: init.continuation_state.kind, payload: init.continuation_state.payload };
      s.continuationState = state;
      await this.ctx.store.put(s.id, state);
      if (this.lifetime.signal.aborted) throw new SessionEnded();
    }
  }

  /** 3. Bind a worker now, or wait in the FIFO queue with live positions. */
  private async admit(): Promise<WorkerSlot> {
    const timeoutMs = this.ctx.config.streaming.queue_timeout_seconds * 1000;
    let queued = false;
    const waiter = {
      sessionId: this.session.id,
      onQueuePosition: (position: number, depth: number) =>
        this.connection.send(buildServerMessage('queue_status', { position, queue_depth: depth })),
    };
    const waitStarted = performance.now();
    try {
      const slot = await this.ctx.admission.admit(waiter, this.lifetime.signal, timeoutMs, () => {
        queued = true;
        this.session.transition(SessionState.QUEUED);
        this.log('queued', {});
      });
      if (!queued) this.connection.send(buildServerMessage('queue_status', { position: 0, queue_depth: 0 }));
      this.ctx.metrics.queueWait(performance.now() - waitStarted);
      this.slot = slot;
      this.session.gpuId = slot.id;
      this.session.transition(SessionState.GPU_BINDING);
      // Ended while the grant was in flight: give the worker straight back.
      if (this.lifetime.signal.aborted) throw new SessionEnded();
      return slot;
    } catch (err) {
      if (err instanceof QueueFull) {
        this.end({ kind: 'rejected', code: ErrorCode.SESSION_REJECTED, message: err.message, close: CloseCode.TRY_AGAIN_LATER });
      } else if (err instanceof AdmissionTimeout) {
        this.end({ kind: 'queue_timeout', message: err.message });
      } else if (!this.lifetime.signal.aborted) {
        throw err; // a bug, not an ending: run() reports it as internal_error
      }
      throw new SessionEnded();
    }
  }

  /** 4. Tell the client it is live. */
  private announceActive(slot: WorkerSlot): void {
    const { sampling } = this.ctx.config.default_request;
    this.connection.send(
      buildServerMessage('gpu_assigned', {
        gpu_id: slot.id,
        session_timeout: this.ctx.config.streaming.session_timeout_seconds,
        model_id: slot.generator.modelId,
      }),
    );
    this.session.transition(SessionState.ACTIVE);
    this.connection.send(
      buildServerMessage('ltx2_stream_start', {
        preset: this.session.preset,
        width: sampling.width,
        height: sampling.height,
        fps: sampling.fps,
        num_frames: sampling.num_frames,
      }),
    );
    this.log('active', { gpu_id: slot.id });
  }

  /** 5. Run segments one at a time until the session ends. */
  private async serveSegments(): Promise<void> {
    while (!this.lifetime.signal.aborted) {
      if (this.stopping) {
        // Shutting down: no new segment starts; shutdown() ends the session.
        await this.untilEnded(new Promise<void>(() => undefined));
        return;
      }
      if (this.session.segmentCapReached(this.ctx.manager.segmentCap)) {
        this.end({ kind: 'segment_cap' });
        return;
      }
      const job = this.session.generationPaused ? undefined : await this.nextJob();
      if (this.lifetime.signal.aborted) return;
      if (!job) {
        await this.untilEnded(new Promise<void>((resolve) => (this.wake = resolve)));
        continue;
      }
      this.currentSegment = this.runJob(job);
      await this.currentSegment;
      this.currentSegment = undefined;
    }
  }

  // ------------------------------------------------------------ segment work

  /** Client requests first; then loop generation; then auto-extension. */
  private async nextJob(): Promise<SegmentJob | undefined> {
    const requested = this.pending.shift();
    if (requested) return requested;
    const s = this.session;
    if (s.loopGenerationEnabled && s.curatedPrompts.length > 0) {
      const prompt = s.curatedPrompts[this.loopCursor % s.curatedPrompts.length] as string;
      this.loopCursor += 1;
      return { prompt, source: 'curated', receivedAt: performance.now() };
    }
    if (s.autoExtensionEnabled && this.lastPrompt !== undefined) {
      const prompt = await this.ctx.extender.next({
        lastPrompt: this.lastPrompt,
        curatedPrompts: s.curatedPrompts,
        segmentIdx: s.segmentIdx,
        signal: this.lifetime.signal,
      });
      // A request or a pause that arrived while the extender thought wins.
      if (this.pending.length > 0 || s.generationPaused) return this.pending.shift();
      return { prompt, source: 'auto_extension', receivedAt: performance.now() };
    }
    return undefined;
  }

  private async runJob(job: SegmentJob): Promise<void> {
    const slot = this.slot;
    if (!slot) throw new Error('no worker bound');
    const s = this.session;
    const { sampling } = this.ctx.config.default_request;
    const segmentIdx = s.segmentIdx;
    const steps = job.steps ?? sampling.num_inference_steps;
    const request: SegmentRequest = {
      prompt: job.prompt,
      negativePrompt: job.negativePrompt ?? (sampling.negative_prompt || undefined),
      seed: job.seed ?? sampling.seed,
      numInferenceSteps: steps,
      guidanceScale: job.guidanceScale ?? sampling.guidance_scale,
      width: sampling.width,
      height: sampling.height,
      fps: sampling.fps,
      numFrames: sampling.num_frames,
      initImagePath: this.initImage?.path,
      continuationState: s.singleClipMode ? undefined : s.continuationState,
    };
    const encoder = this.takeEncoder();
    this.runningEncoder = encoder;
    encoder.setPtsBase(this.ptsBaseMs);
    const abort = new AbortController();
    this.segmentAbort = abort;
    this.segmentRunning = true;
    this.lastPrompt = job.prompt;
    s.transition(SessionState.ACTIVE);
    this.connection.send(
      buildServerMessage('ltx2_segment_start', { segment_idx: segmentIdx, prompt: job.prompt, total_steps: steps, source: job.source }),
    );
    this.log('segment_start', { segment_idx: segmentIdx, prompt: job.prompt, source: job.source });
    const segmentStarted = performance.now();
    let firstMediaAt: number | undefined;
    try {
      const outcome = await runSegment(
        slot.generator,
        request,
        encoder,
        {
          onStep: (step, totalSteps, stepMs, elapsedMs) =>
            this.connection.send(
              buildServerMessage('step_complete', {
                segment_idx: segmentIdx,
                step,
                total_steps: totalSteps,
                stage: 'denoise',
                timings: { step_ms: round(stepMs), elapsed_ms: round(elapsedMs) },
              }),
            ),
          onMediaStart: (streamId, mime) => {
            firstMediaAt = performance.now();
            this.connection.send(
              buildServerMessage('media_init', { segment_idx: segmentIdx, mime, stream_id: streamId, mode: s.streamMode }),
            );
          },
          sendBinary: (data) => this.connection.sendBinary(data),
          onProgress: () => s.touch(),
        },
        abort.signal,
      );
      if (outcome.chunks === 0 && outcome.bytes === 0) throw new Error('segment produced no media');
      this.connection.send(
        buildServerMessage('media_segment_complete', {
          segment_idx: segmentIdx,
          stream_id: outcome.streamId,
          chunks: outcome.chunks,
          bytes: outcome.bytes,
          duration_ms: round(outcome.durationMs),
          pts_base_ms: round(this.ptsBaseMs),
        }),
      );
      if (outcome.continuationState) {
        s.continuationState = outcome.continuationState;
        await this.ctx.store.put(s.id, outcome.continuationState);
      }
      this.ptsBaseMs += outcome.durationMs;
      s.segmentIdx += 1;
      s.transition(SessionState.ACTIVE);
      // The next segment's ffmpeg starts now, while the client decides; not past the cap.
      if (!s.segmentCapReached(this.ctx.manager.segmentCap)) this.prepareEncoder();
      const e2eMs = performance.now() - job.receivedAt;
      this.connection.send(
        buildServerMessage('ltx2_segment_complete', {
          segment_idx: segmentIdx,
          generation_time_ms: round(outcome.generationTimeMs),
          e2e_latency_ms: round(e2eMs),
        }),
      );
      this.ctx.metrics.segmentCompleted({
        generationMs: outcome.generationTimeMs,
        e2eMs,
        firstMediaMs: firstMediaAt === undefined ? undefined : firstMediaAt - segmentStarted,
        firstFragmentMs: outcome.firstFragmentMs,
        bytes: outcome.bytes,
        frames: outcome.frames,
      });
      this.log('segment_complete', {
        segment_idx: segmentIdx,
        generation_time_ms: round(outcome.generationTimeMs),
        chunks: outcome.chunks,
        bytes: outcome.bytes,
        duration_ms: round(outcome.durationMs),
      });
      if (s.singleClipMode) {
        this.connection.send(buildServerMessage('ltx2_stream_complete', { reason: StreamCompleteReason.STOP_REQUESTED }));
      }
    } catch (err) {
      if (this.lifetime.signal.aborted) return; // the session ended under the segment; end() said why
      this.ctx.logger.warn({ session: s.id, err }, 'segment failed');
      this.end({ kind: 'failed', code: ErrorCode.WORKER_FAILED, message: `generation failed: ${describeError(err)}`, retryable: true });
    } finally {
      this.segmentRunning = false;
      this.segmentAbort = undefined;
      this.runningEncoder = undefined;
    }
  }

  /**
   * Starts the next segment's encoder now: ffmpeg takes tens of ms to start. The first
   * segment's starts when the segment does, in parallel with the denoising steps.
   */
  private prepareEncoder(): void {
    if (this.nextEncoder || this.lifetime.signal.aborted) return;
    this.nextEncoder = this.ctx.createEncoder(this.session.streamMode, this.slot?.generator.audio ?? null);
  }

  private takeEncoder(): SegmentEncoder {
    this.prepareEncoder();
    const encoder = this.nextEncoder;
    this.nextEncoder = undefined;
    if (!encoder) throw new SessionEnded();
    return encoder;
  }

  // ------------------------------------------------------------ client frames

  private onFrame(data: Buffer, isBinary: boolean): void {
    if (this.lifetime.signal.aborted) return;
    this.session.touch();
    // Only the opening session_init_v2 may be large (it can carry the initial image).
    const limit = this.initReceived ? this.ctx.config.limits.max_control_frame_bytes : MAX_INIT_FRAME_BYTES;
    if (data.length > limit) {
      this.end({ kind: 'too_large', message: `frame of ${data.length} bytes exceeds the ${limit}-byte limit` });
      return;
    }
    const parsed = parseClientMessage(data, { binary: isBinary });
    if (!this.initReceived) {
      this.initReceived = true;
      if (!parsed.ok || parsed.message.type !== 'session_init_v2') {
        const message = parsed.ok ? `first frame must be session_init_v2, got ${parsed.message.type}` : parsed.error.message;
        this.end({ kind: 'rejected', code: ErrorCode.INVALID_MESSAGE, message, close: CloseCode.UNSUPPORTED_DATA });
        return;
      }
      const presetError = this.checkInit(parsed.message);
      if (presetError) {
        this.end(presetError);
        return;
      }
      // Applied now, not when run() resumes: ws may deliver the next frames (a toggle
      // right behind the init) in this same tick, and they must act on the init's state.
      this.applyInitFields(parsed.message);
      this.resolveInit?.(parsed.message);
      return;
    }
    if (!parsed.ok) {
      this.ctx.metrics.error(ErrorCode.INVALID_MESSAGE);
      this.connection.send(errorMessage(ErrorCode.INVALID_MESSAGE, parsed.error.message, true));
      this.log('invalid_message', { message: parsed.error.message });
      return;
    }
    this.onControl(parsed.message);
  }

  private applyInitFields(init: SessionInitV2): void {
    const s = this.session;
    s.clientId = init.client_id ?? undefined;
    s.preset = init.preset ?? undefined;
    s.presetLabel = init.preset_label ?? undefined;
    s.curatedPrompts = [...init.curated_prompts];
    s.enhancementEnabled = init.enhancement_enabled;
    s.autoExtensionEnabled = init.auto_extension_enabled;
    s.loopGenerationEnabled = init.loop_generation_enabled;
    s.singleClipMode = init.single_clip_mode;
    s.streamMode = init.stream_mode;
    s.metadata = { ...extraInitFields(init) };
    if (this.ctx.config.logging.session_log_dir) {
      try {
        this.eventLog = new SessionEventLog(this.ctx.config.logging.session_log_dir, s.id, s.clientId);
      } catch (err) {
        // The event log is best effort: a full or read-only disk must not cost the session.
        this.ctx.logger.warn({ session: s.id, err }, 'cannot open the session event log');
      }
    }
    this.log('init', {
      client_id: s.clientId,
      preset: s.preset,
      stream_mode: s.streamMode,
      curated_prompts: s.curatedPrompts.length,
      has_initial_image: Boolean(init.initial_image),
      has_continuation_state: Boolean(init.continuation_state),
    });
  }

  /** Checks of the init that the schema cannot make: server preset, a resumable continuation state. */
  private checkInit(init: SessionInitV2): Ending | undefined {
    const preset = this.ctx.config.streaming.preset;
    if (preset && init.preset && init.preset !== preset) {
      return {
        kind: 'rejected',
        code: ErrorCode.PRESET_MISMATCH,
        message: `preset ${JSON.stringify(init.preset)} is not served here (server preset ${JSON.stringify(preset)})`,
        close: CloseCode.UNSUPPORTED_DATA,
      };
    }
    const problem = init.continuation_state ? this.ctx.checkContinuation(init.continuation_state) : undefined;
    if (problem) return { kind: 'rejected', code: ErrorCode.INVALID_MESSAGE, message: problem, close: CloseCode.UNSUPPORTED_DATA };
    return undefined;
  }

  private onControl(message: ClientMessage): void {
    const s = this.session;
    switch (message.type) {
      case 'session_init_v2':
        this.connection.send(errorMessage(ErrorCode.INVALID_MESSAGE, 'type: session already initialised', true));
        return;
      case 'segment_prompt_source':
        this.enqueueRequest(message);
        return;
      case 'seed_prompts_updated':
        s.curatedPrompts = [...message.seed_prompts];
        this.loopCursor = 0;
        break;
      case 'enhancement_updated':
        s.enhancementEnabled = message.enabled;
        break;
      case 'auto_extension_updated':
        s.autoExtensionEnabled = message.enabled;
        break;
      case 'loop_generation_updated':
        s.loopGenerationEnabled = message.enabled;
        break;
      case 'generation_paused_updated':
        s.generationPaused = message.paused;
        break;
      case 'snapshot_state':
        this.answerSnapshot().catch((err: unknown) => {
          this.ctx.logger.error({ session: s.id, err }, 'snapshot failed');
          this.connection.send(errorMessage(ErrorCode.INTERNAL_ERROR, 'snapshot failed', true));
        });
        return;
    }
    this.log(message.type, { ...message, type: undefined });
    this.wake?.();
  }

  private enqueueRequest(message: SegmentPromptSource): void {
    const limit = this.ctx.config.streaming.max_pending_requests;
    if (this.pending.length >= limit) {
      this.connection.send(
        errorMessage(
          ErrorCode.GPU_UNAVAILABLE,
          `segment request queue is full (${limit} waiting); retry after ltx2_segment_complete`,
          true,
        ),
      );
      return;
    }
    this.pending.push({
      prompt: message.prompt,
      source: message.source,
      negativePrompt: message.negative_prompt ?? undefined,
      seed: message.seed ?? undefined,
      steps: message.num_inference_steps ?? undefined,
      guidanceScale: message.guidance_scale ?? undefined,
      receivedAt: performance.now(),
    });
    this.wake?.();
  }

  private async answerSnapshot(): Promise<void> {
    // A snapshot right behind the init must see the state that init carried.
    await this.initApplied.catch(() => undefined);
    const state = await this.ctx.store.get(this.session.id);
    if (state) this.connection.send(snapshotMessage(state));
    else this.connection.send(errorMessage(ErrorCode.INTERNAL_ERROR, 'no continuation state yet: generate a segment first'));
  }

  // ------------------------------------------------------------------ ending

  /** Called by the server's reaper when the session idled past the timeout. */
  timeOut(): void {
    // A segment in flight is activity even if the generator is between reports.
    if (this.segmentRunning) {
      this.session.touch();
      return;
    }
    this.end({ kind: 'timeout' });
  }

  /**
   * Server shutdown: no new segment starts; a running one may finish within `graceMs`;
   * then `ltx2_stream_complete` (`stop_requested`) and close 1001.
   */
  async shutdown(graceMs: number): Promise<void> {
    this.stopping = true;
    const running = this.currentSegment;
    if (running && graceMs > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([running, new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)))]);
      clearTimeout(timer);
    }
    this.end({ kind: 'shutdown' });
    await this.finished;
  }

  /**
   * Ends the session exactly once: the notice or error frame, the terminal state, then the
   * close frame. Aborting the lifetime wakes every wait in the story so cleanup runs.
   */
  private end(ending: Ending): void {
    if (this.ending) return;
    this.ending = ending;
    const s = this.session;
    const c = this.connection;
    switch (ending.kind) {
      case 'segment_cap':
        c.send(buildServerMessage('ltx2_stream_complete', { reason: StreamCompleteReason.SEGMENT_CAP }));
        this.moveTo(SessionState.COMPLETE);
        c.close(CloseCode.NORMAL, 'segment cap reached');
        break;
      case 'timeout':
        c.send(buildServerMessage('session_timeout', { timeout_seconds: this.ctx.manager.sessionTimeoutSeconds }));
        // The table has no initializing → timeout edge: a client that never sent its init is rejected.
        this.moveTo(s.state === SessionState.INITIALIZING ? SessionState.REJECTED : SessionState.TIMEOUT);
        c.close(CloseCode.NORMAL, 'session timeout');
        break;
      case 'queue_timeout':
        c.send(errorMessage(ErrorCode.GPU_UNAVAILABLE, ending.message, true));
        this.moveTo(SessionState.TIMEOUT);
        c.close(CloseCode.TRY_AGAIN_LATER, 'no worker available');
        break;
      case 'rejected':
        c.send(errorMessage(ending.code, ending.message, ending.code === ErrorCode.SESSION_REJECTED));
        this.moveTo(SessionState.REJECTED);
        c.close(ending.close, ending.code);
        break;
      case 'failed':
        c.send(errorMessage(ending.code, ending.message, ending.retryable));
        c.send(buildServerMessage('ltx2_stream_complete', { reason: StreamCompleteReason.ERROR }));
        this.moveTo(SessionState.ERROR);
        c.close(CloseCode.INTERNAL_ERROR, ending.code);
        break;
      case 'shutdown':
        c.send(buildServerMessage('ltx2_stream_complete', { reason: StreamCompleteReason.STOP_REQUESTED }));
        if (s.isActive()) this.moveTo(SessionState.COMPLETE);
        c.close(CloseCode.GOING_AWAY, 'server shutting down');
        break;
      case 'too_large':
        c.send(errorMessage(ErrorCode.INVALID_MESSAGE, ending.message));
        this.moveTo(s.state === SessionState.INITIALIZING ? SessionState.REJECTED : SessionState.ERROR);
        c.close(CloseCode.MESSAGE_TOO_BIG, 'frame too large');
        break;
      case 'slow_client':
        // It is not reading, so the notice may never arrive; the TCP connection goes soon after.
        c.send(errorMessage(ErrorCode.INTERNAL_ERROR, 'client is not reading fast enough: closing', true));
        this.moveTo(SessionState.ERROR);
        c.closeAndTerminate(CloseCode.TRY_AGAIN_LATER, 'client too slow', 1000);
        break;
      case 'left':
        // Only an active session can complete; one that leaves earlier just goes away.
        if (s.isActive()) this.moveTo(SessionState.COMPLETE);
        break;
    }
    const wireCode = WIRE_CODE_OF_ENDING[ending.kind] ?? ('code' in ending ? ending.code : undefined);
    if (wireCode) this.ctx.metrics.error(wireCode);
    this.log('end', { reason: ending.kind, state: s.state });
    this.segmentAbort?.abort(new SessionEnded(ending.kind));
    this.lifetime.abort(new SessionEnded(ending.kind));
    this.resolveInit = undefined;
    this.wake?.();
  }

  private moveTo(state: SessionState): void {
    if (this.session.state === state) return;
    try {
      this.session.transition(state);
    } catch (err) {
      this.ctx.logger.warn({ session: this.session.id, err }, 'no legal edge for the session end');
    }
  }

  /** 6. Always: worker released, encoders stopped, stores dropped, temp files removed, entry closed. */
  private async cleanup(): Promise<void> {
    if (!this.ending) this.end({ kind: 'left' });
    void this.nextEncoder?.abort();
    this.nextEncoder = undefined;
    if (this.slot) {
      this.ctx.pool.release(this.slot);
      this.slot = undefined;
    }
    const s = this.session;
    await Promise.allSettled([this.ctx.store.delete(s.id), this.initImage?.remove()]);
    this.initImage = undefined;
    this.ctx.manager.close(s.id);
    this.ctx.drivers.delete(s.id);
    this.ctx.access.closeSession(this.keyId);
    this.ctx.metrics.sessionClosed(s.state);
    this.ctx.logger.info({ session: s.id, state: s.state, reason: this.ending?.kind, segments: s.segmentIdx }, 'session ended');
    await this.eventLog?.close();
  }

  // ------------------------------------------------------------------ helpers

  /** Resolves with `promise`, or rejects with `SessionEnded` as soon as the session ends. */
  private untilEnded<T>(promise: Promise<T>): Promise<T> {
    const signal = this.lifetime.signal;
    if (signal.aborted) return Promise.reject(new SessionEnded());
    return new Promise<T>((resolve, reject) => {
      const onAbort = (): void => reject(new SessionEnded());
      signal.addEventListener('abort', onAbort, { once: true });
      promise.then(
        (value) => {
          signal.removeEventListener('abort', onAbort);
          resolve(value);
        },
        (err: unknown) => {
          signal.removeEventListener('abort', onAbort);
          reject(err);
        },
      );
    });
  }

  private log(event: string, payload: Record<string, unknown>): void {
    this.eventLog?.write(event, payload);
  }
}

/** What each ending sends on the wire, as counted by `livegen_errors_total{code}` (normal ends count nothing). */
const WIRE_CODE_OF_ENDING: Partial<Record<Ending['kind'], string>> = {
  timeout: 'session_timeout',
  queue_timeout: ErrorCode.GPU_UNAVAILABLE,
  too_large: ErrorCode.INVALID_MESSAGE,
  slow_client: 'slow_client',
};

const KNOWN_INIT_FIELDS = new Set(Object.keys(SessionInitV2Schema.shape));

/** Unknown init fields are kept (PROTOCOL.md) as the session's metadata. */
function extraInitFields(init: SessionInitV2): Record<string, unknown> {
  return Object.fromEntries(Object.entries(init).filter(([key]) => !KNOWN_INIT_FIELDS.has(key)));
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}

function describeError(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
