import type { WebSocket } from 'ws';
import { abortable } from '../async/index.js';
import type { ContinuationState } from '../core/index.js';
import type { SegmentEncoder } from '../media/index.js';
import type { WorkerSlot } from '../pool/index.js';
import {
  buildServerMessage,
  CloseCode,
  ErrorCode,
  errorMessage,
  parseClientMessage,
  type ClientMessage,
} from '../protocol/index.js';
import { AdmissionTimeout, QueueFull, SessionRejected, SessionState, type Session } from '../session/index.js';
import { ClientConnection } from './connection.js';
import { endingSpec, SessionEnded, type Ending } from './endings.js';
import type { InitImageFile } from './init-image.js';
import { refusalOf, sessionFieldsOf, type OpeningFrame } from './opening-frame.js';
import { runSegmentJob, v1SegmentEvents, type SegmentJob, type SegmentPorts } from './segment.js';
import { jobFromRequest, SegmentScheduler } from './segment-scheduler.js';
import type { ResumeClaim } from './resume-tokens.js';
import type { SessionEventLog } from './session-log.js';
import type { SessionHandle, SessionServices, SessionView } from './session-services.js';
import { encodedSnapshot, rememberSnapshot } from './snapshots.js';
import { StoreError, toWireError } from './wire-errors.js';

/** Where a session moved here from another replica picks up: its next segment index and media time. */
export interface ContinuedStory {
  segmentIdx: number;
  ptsBaseMs: number;
}

/**
 * The story of one connection's session, top to bottom:
 *
 *   register → receive and check `session_init_v2` → apply it (its state: given, or
 *   named by a resume token) → admit (queue or bind) → `gpu_assigned` (with this
 *   session's resume token), `active`, `ltx2_stream_start` → serve segments until the
 *   cap, a timeout, the client leaving or a failure → end (the table in endings.ts) →
 *   clean up.
 *
 * Control frames (toggles, `snapshot_state`) are answered as they arrive, even while a
 * segment runs; segment requests wait in the scheduler's bounded queue.
 */
export class SessionDriver implements SessionHandle {
  private readonly connection: ClientConnection;
  /** Aborted when the session ends for any reason; every wait in the story races it. */
  private readonly lifetime = new AbortController();
  private ending: Ending | undefined;
  private openingFrame: Promise<OpeningFrame> | undefined;
  private openingArrived: (() => void) | undefined;
  private readonly scheduler: SegmentScheduler;
  private slot: WorkerSlot | undefined;
  private nextEncoder: SegmentEncoder | undefined;
  private runningEncoder: SegmentEncoder | undefined;
  private runningSegment: { done: Promise<void>; abort: AbortController } | undefined;
  private stopping = false;
  private initImage: InitImageFile | undefined;
  private eventLog: SessionEventLog | undefined;
  private ptsBaseMs = 0;
  /** The token this session's states are kept under (`gpu_assigned.resume_token`). */
  private resumeToken: string | undefined;
  /** The token this session resumes from, until it is active (then the old token is gone). */
  private resumeClaim: ResumeClaim | undefined;
  private readonly finished: Promise<void>;

  private constructor(
    private readonly services: SessionServices,
    private readonly ws: WebSocket,
    readonly session: Session,
    private readonly keyId: string | undefined,
    private readonly story: ContinuedStory | undefined,
  ) {
    const { policy, connection } = services;
    this.connection = new ClientConnection(ws, connection.limits, connection.hooks);
    this.connection.onGiveUp = (why) =>
      this.end({
        kind: 'slow_client',
        message: why === 'stall' ? 'client is not reading fast enough: closing' : 'client asked for more than it reads: closing',
      });
    this.connection.onOversize = () =>
      this.end({ kind: 'too_large', message: `frame exceeds the ${this.openingFrame ? policy.frames.controlFrameBytes : policy.frames.initFrameBytes}-byte limit` });
    this.connection.onMessage((data, isBinary) => this.onFrame(data, isBinary));
    ws.on('close', () => this.end({ kind: 'left' }));
    ws.on('error', (err) => services.logger.debug({ session: session.id, err }, 'socket error'));
    this.scheduler = new SegmentScheduler(
      session,
      services.extender,
      services.prompts,
      policy.maxPendingRequests,
      () => performance.now(),
      this.lifetime.signal,
      (err) => services.logger.warn({ session: session.id, err }, 'prompt extender failed; going on with the last prompt'),
    );
    this.finished = this.run();
  }

  /**
   * Registers a session for a new connection and starts its story. Throws
   * `SessionRejected` when the server holds its maximum of connections waiting to
   * initialise; the caller refuses the connection.
   */
  static open(services: SessionServices, ws: WebSocket, keyId: string | undefined, story?: ContinuedStory): SessionDriver {
    let driver: SessionDriver | undefined;
    services.registry.create((session) => (driver = new SessionDriver(services, ws, session, keyId, story)));
    if (!driver) throw new Error('the registry did not build the session driver');
    return driver;
  }

  /** The server cannot take this session's opening frame now (the init-byte budget is spent). */
  overloaded(message: string): void {
    this.end({ kind: 'rejected', code: ErrorCode.SESSION_REJECTED, message, close: CloseCode.TRY_AGAIN_LATER });
  }

  get done(): Promise<void> {
    return this.finished;
  }

  view(): SessionView {
    const s = this.session;
    return {
      id: s.id,
      state: s.state,
      clientId: s.clientId,
      streamMode: s.streamMode,
      segmentIdx: s.segmentIdx,
      generationPaused: s.generationPaused,
      loopGenerationEnabled: s.loopGenerationEnabled,
      autoExtensionEnabled: s.autoExtensionEnabled,
      singleClipMode: s.singleClipMode,
      enhancementEnabled: s.enhancementEnabled,
      curatedPrompts: [...s.curatedPrompts],
      metadata: { ...s.metadata },
      gpuId: s.gpuId,
      sendBacklogBytes: this.connection.backlog,
      encoderPid: this.runningEncoder?.pid,
    };
  }

  // ---------------------------------------------------------------- the story

  private async run(): Promise<void> {
    this.services.metrics.sessionOpened();
    try {
      const init = await this.receiveInit();
      await this.applyInit(init);
      const slot = await this.admit();
      await this.announceActive(slot);
      await this.serveSegments(slot);
    } catch (err) {
      if (!(err instanceof SessionEnded) && !this.lifetime.signal.aborted) {
        this.services.logger.error({ session: this.session.id, err }, 'session failed');
        this.end({ kind: 'failed', error: toWireError(err) });
      }
    } finally {
      await this.cleanup();
    }
  }

  /**
   * 1. The first frame must be a valid `session_init_v2` (checked off the event loop when
   * it is large); anything else rejects the session. Frames behind it wait until it is
   * applied, so a toggle right after the init acts on the init's state.
   */
  private async receiveInit(): Promise<OpeningFrame & { ok: true }> {
    await this.untilEnded(new Promise<void>((resolve) => (this.openingArrived = resolve)));
    const parsed = await this.untilEnded(this.openingFrame as Promise<OpeningFrame>);
    if (!parsed.ok) {
      this.end({ kind: 'rejected', code: ErrorCode.INVALID_MESSAGE, message: parsed.message, close: CloseCode.UNSUPPORTED_DATA });
      throw new SessionEnded();
    }
    const refusal = refusalOf(parsed.init, this.services.policy.preset, this.services.checkContinuation);
    if (refusal) {
      this.end({ kind: 'rejected', ...refusal, close: CloseCode.UNSUPPORTED_DATA });
      throw new SessionEnded();
    }
    return parsed;
  }

  /** 2. Fields, initial image file and continuation state; from here on the session counts as registered. */
  private async applyInit({ init, image, snapshot }: OpeningFrame & { ok: true }): Promise<void> {
    const s = this.session;
    try {
      this.services.registry.confirm(s.id);
    } catch (err) {
      if (!(err instanceof SessionRejected)) throw err;
      this.end({ kind: 'rejected', code: ErrorCode.SESSION_REJECTED, message: `server is full: ${err.message}`, close: CloseCode.TRY_AGAIN_LATER });
      throw new SessionEnded();
    }
    Object.assign(s, sessionFieldsOf(init));
    s.curatedPrompts = this.allowedCurated(s.curatedPrompts, 'curated_prompts');
    // Moved here by a router: segment indices, the cap and media time go on from where they were.
    if (this.story) {
      s.segmentIdx = this.story.segmentIdx;
      this.ptsBaseMs = this.story.ptsBaseMs;
    }
    this.eventLog = this.services.openEventLog(s);
    this.log('init', {
      client_id: s.clientId,
      preset: s.preset,
      stream_mode: s.streamMode,
      curated_prompts: s.curatedPrompts.length,
      enhancement_enabled: s.enhancementEnabled,
      has_initial_image: image !== undefined,
      has_continuation_state: Boolean(init.continuation_state),
    });
    if (image) this.initImage = await this.untilEnded(this.services.tempFiles.writeImage(image.bytes, image.mime));
    // The story goes on from the state the init carries, or the one its resume token names (never both).
    let state: ContinuationState | undefined;
    if (init.continuation_state) {
      state = { kind: init.continuation_state.kind, payload: init.continuation_state.payload };
      if (snapshot) rememberSnapshot(state, snapshot);
    } else if (init.resume_token) {
      state = await this.untilEnded(this.claimResume(init.resume_token));
    }
    if (state) {
      s.continuationState = state;
      await this.untilEnded(this.storeState(state));
    }
    this.connection.resumeReading('init');
  }

  /** The state a resume token names, claimed for this session; a token that names none ends the session. */
  private async claimResume(token: string): Promise<ContinuationState> {
    const { resumes, checkContinuation } = this.services;
    const claim = resumes.enabled ? await resumes.claim(token, this.keyId) : undefined;
    const problem = claim ? checkContinuation(claim.state) : undefined;
    if (!claim || problem) {
      claim?.abandon();
      const message = !resumes.enabled
        ? 'resume_token: this server keeps no states for resuming (streaming.resume_ttl_seconds is 0)'
        : problem
          ? `resume_token: the state it names cannot be continued here: ${problem}`
          : 'resume_token is unknown, expired, in use by another session, or belongs to another API key';
      this.end({ kind: 'rejected', code: ErrorCode.INVALID_MESSAGE, message, close: CloseCode.UNSUPPORTED_DATA });
      throw new SessionEnded();
    }
    this.resumeClaim = claim;
    this.log('resume', { by: 'resume_token' });
    return claim.state;
  }

  /** 3. Bind a worker now, or wait in the FIFO queue with live positions. */
  private async admit(): Promise<WorkerSlot> {
    const waitStarted = performance.now();
    let told = false;
    try {
      const slot = await this.services.admission.admit(
        {
          sessionId: this.session.id,
          onPosition: (position, depth) => {
            told = true;
            this.connection.send(buildServerMessage('queue_status', { position, queue_depth: depth }));
          },
        },
        {
          signal: this.lifetime.signal,
          timeoutMs: this.services.policy.queueTimeoutMs,
          onQueued: () => {
            this.session.transition(SessionState.QUEUED);
            this.log('queued', {});
          },
        },
      );
      this.slot = slot;
      // Every session hears its place at least once, even one granted before its first report went out.
      if (!told) this.connection.send(buildServerMessage('queue_status', { position: 0, queue_depth: this.services.admission.queueDepth }));
      this.services.metrics.queueWait(performance.now() - waitStarted);
      this.session.gpuId = slot.id;
      this.session.transition(SessionState.GPU_BINDING);
      return slot;
    } catch (err) {
      if (err instanceof QueueFull) {
        this.end({ kind: 'rejected', code: ErrorCode.SESSION_REJECTED, message: err.message, close: CloseCode.TRY_AGAIN_LATER });
      } else if (err instanceof AdmissionTimeout) {
        this.end({ kind: 'queue_timeout', message: err.message });
      } else if (!this.lifetime.signal.aborted) {
        throw err; // not an ending: run() reports it
      }
      throw new SessionEnded();
    }
  }

  /** 4. Tell the client it is live. */
  private async announceActive(slot: WorkerSlot): Promise<void> {
    const { policy, resumes } = this.services;
    const s = this.session;
    // A single clip offers no state to continue from, so it gets no token.
    if (resumes.enabled && !s.singleClipMode) {
      this.resumeToken = resumes.issue();
      if (s.continuationState) await this.untilEnded(this.storeState(s.continuationState, true));
    }
    // Active under its own token now: the one it resumed from is used up.
    await this.untilEnded(this.resumeClaim?.settle() ?? Promise.resolve());
    this.resumeClaim = undefined;
    this.connection.send(
      buildServerMessage('gpu_assigned', {
        gpu_id: slot.id,
        session_timeout: policy.sessionTimeoutSeconds,
        model_id: slot.generator.modelId,
        ...(this.resumeToken ? { resume_token: this.resumeToken } : {}),
      }),
    );
    this.session.transition(SessionState.ACTIVE);
    const { width, height, fps, numFrames } = policy.sampling;
    this.connection.send(buildServerMessage('ltx2_stream_start', { preset: this.session.preset, width, height, fps, num_frames: numFrames }));
    this.log('active', { gpu_id: slot.id });
  }

  /** 5. Run segments one at a time until the cap, a shutdown, or the end of the session. */
  private async serveSegments(slot: WorkerSlot): Promise<void> {
    const s = this.session;
    const signal = this.lifetime.signal;
    while (!signal.aborted) {
      if (s.segmentCapReached(this.services.policy.segmentCap)) {
        this.end({ kind: 'segment_cap' });
        return;
      }
      const job = await this.untilEnded(this.scheduler.next(signal));
      if (this.stopping) break;
      await this.runSegment(slot, job);
    }
    // Shutting down: no new segment starts; shutdown() ends the session.
    await this.untilEnded(new Promise<void>(() => undefined));
  }

  private async runSegment(slot: WorkerSlot, job: SegmentJob): Promise<void> {
    const s = this.session;
    const encoder = this.takeEncoder(slot);
    const abort = new AbortController();
    let settle: () => void = () => undefined;
    this.runningSegment = { done: new Promise<void>((resolve) => (settle = resolve)), abort };
    this.runningEncoder = encoder;
    s.transition(SessionState.ACTIVE);
    try {
      await runSegmentJob(
        job,
        {
          segmentIdx: s.segmentIdx,
          ptsBaseMs: this.ptsBaseMs,
          streamMode: s.streamMode,
          sampling: this.services.policy.sampling,
          generator: slot.generator,
          encoder,
          initImagePath: this.initImage?.path,
          continuationState: s.singleClipMode ? undefined : s.continuationState,
        },
        this.segmentPorts(),
        abort.signal,
        (result) => {
          if (result.continuationState) s.continuationState = result.continuationState;
          this.ptsBaseMs += result.durationMs;
          s.segmentIdx += 1;
          s.transition(SessionState.ACTIVE);
          // The next segment's ffmpeg starts now, while the client decides; not past the cap.
          if (!s.segmentCapReached(this.services.policy.segmentCap)) this.prepareEncoder(slot);
        },
      );
      if (s.singleClipMode) this.connection.send(buildServerMessage('ltx2_stream_complete', { reason: 'stop_requested' }));
    } catch (err) {
      if (this.lifetime.signal.aborted) return; // the session ended under the segment; end() said why
      this.services.logger.warn({ session: s.id, err }, 'segment failed');
      this.end({ kind: 'failed', error: toWireError(err) });
    } finally {
      this.runningSegment = undefined;
      this.runningEncoder = undefined;
      settle();
    }
  }

  private segmentPorts(): SegmentPorts {
    const s = this.session;
    return {
      events: v1SegmentEvents((message) => this.connection.send(message)),
      sendBinary: (data) => this.connection.sendBinary(data),
      storeState: (state) => this.storeState(state),
      segmentCompleted: (figures) => this.services.metrics.segmentCompleted(figures),
      log: (event, payload) => this.log(event, payload),
      touch: () => s.touch(),
      clock: () => performance.now(),
    };
  }

  /**
   * Stores the session's state: for `snapshot_state` under the session id (unless
   * `resumableOnly`: it is there already) and, once the session has a token, under it.
   */
  private async storeState(state: ContinuationState, resumableOnly = false): Promise<void> {
    const { store, resumes } = this.services;
    const token = this.resumeToken;
    // The resume copy may live in a shared store (a cluster's Redis): stored before the
    // segment counts as complete, so a session moved or resumed goes on from it; when that
    // store is down the call fails at once and costs the token its newest state, never the stream.
    const saved = token
      ? resumes.save(token, this.keyId, state).catch((err: unknown) => this.services.logger.warn({ session: this.session.id, err }, 'cannot keep the state for resuming'))
      : undefined;
    try {
      await Promise.all([resumableOnly ? undefined : store.put(this.session.id, state), saved]);
    } catch (err) {
      throw new StoreError(`continuation store: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
  }

  /**
   * Starts the next segment's encoder now: ffmpeg takes tens of ms to start. The first
   * segment's starts when the segment does, in parallel with the denoising steps.
   */
  private prepareEncoder(slot: WorkerSlot): void {
    if (this.nextEncoder || this.lifetime.signal.aborted) return;
    this.nextEncoder = this.services.createEncoder(this.session.streamMode, slot.generator.audio);
  }

  private takeEncoder(slot: WorkerSlot): SegmentEncoder {
    this.prepareEncoder(slot);
    const encoder = this.nextEncoder;
    this.nextEncoder = undefined;
    if (!encoder) throw new SessionEnded();
    return encoder;
  }

  // ------------------------------------------------------------ client frames

  private onFrame(data: Buffer, isBinary: boolean): void {
    if (this.lifetime.signal.aborted) return;
    try {
      if (!this.openingFrame) this.onOpeningFrame(data, isBinary);
      else this.onClientFrame(data, isBinary);
    } catch (err) {
      // A bug in handling one frame ends this session, never the process.
      this.services.logger.error({ session: this.session.id, err }, 'frame handling failed');
      this.end({ kind: 'failed', error: toWireError(err) });
    }
  }

  private onOpeningFrame(data: Buffer, isBinary: boolean): void {
    const { frames } = this.services.policy;
    this.session.touch();
    this.services.initReceived(this.ws);
    // Every later frame is small: refuse a larger one at its header from now on.
    const atHeader = this.connection.limitFrames(frames.controlFrameBytes);
    if (!atHeader) this.services.logger.warn('ws receiver not reachable: oversized frames are refused after they arrive');
    // Frames behind the init wait until it is applied (toggles must act on its state).
    this.connection.pauseReading('init');
    this.openingFrame = this.services.openingFrames.parse(data, isBinary);
    this.openingArrived?.();
  }

  private onClientFrame(data: Buffer, isBinary: boolean): void {
    const limit = this.services.policy.frames.controlFrameBytes;
    if (data.length > limit) {
      this.end({ kind: 'too_large', message: `frame of ${data.length} bytes exceeds the ${limit}-byte limit` });
      return;
    }
    const parsed = parseClientMessage(data, { binary: isBinary, maxTokens: this.services.policy.frames.controlJsonTokens });
    if (!parsed.ok) {
      // An invalid frame is not activity: it neither keeps the session alive nor holds a worker.
      this.services.metrics.error(ErrorCode.INVALID_MESSAGE);
      this.connection.send(errorMessage(ErrorCode.INVALID_MESSAGE, parsed.error.message, true));
      this.log('invalid_message', { message: parsed.error.message });
      return;
    }
    this.onControl(parsed.message);
  }

  private onControl(message: ClientMessage): void {
    const s = this.session;
    // Reading the state back is not activity: only what changes or requests work keeps a session alive.
    if (message.type !== 'snapshot_state') s.touch();
    switch (message.type) {
      case 'session_init_v2':
        this.connection.send(errorMessage(ErrorCode.INVALID_MESSAGE, 'type: session already initialised', true));
        return;
      case 'segment_prompt_source': {
        const queued = this.scheduler.enqueue(jobFromRequest(message, performance.now()));
        if (queued.ok) return;
        if (queued.reason === 'blocked') {
          this.sendBlocked(`prompt: blocked by the safety filter: ${queued.verdict.reason}; the request was not queued`, message.prompt);
          this.log('prompt_blocked', { prompt: message.prompt, filter: queued.verdict.filter, reason: queued.verdict.reason });
          return;
        }
        const limit = this.services.policy.maxPendingRequests;
        this.connection.send(
          errorMessage(ErrorCode.GPU_UNAVAILABLE, `segment request queue is full (${limit} waiting); retry after ltx2_segment_complete`, true),
        );
        return;
      }
      case 'snapshot_state':
        this.answerSnapshot();
        return;
      case 'seed_prompts_updated':
        s.curatedPrompts = this.allowedCurated(message.seed_prompts, 'seed_prompts');
        this.scheduler.restartLoop();
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
    }
    this.log(message.type, { ...message, type: undefined });
    this.scheduler.notify();
  }

  /**
   * A curated list without the prompts the safety filter blocks: those are dropped with
   * one retryable error naming them, so a loop never reaches them.
   */
  private allowedCurated(prompts: readonly string[], field: string): string[] {
    const allowed: string[] = [];
    const refused: string[] = [];
    prompts.forEach((prompt, i) => {
      const verdict = this.services.prompts.check(prompt, 'curated');
      if (verdict.allowed) allowed.push(prompt);
      else refused.push(`${field}[${i}]: ${verdict.reason}`);
    });
    if (refused.length > 0) {
      this.sendBlocked(`blocked by the safety filter and left out: ${refused.join('; ')}`);
      this.log('prompt_blocked', { field, blocked: refused });
    }
    return allowed;
  }

  private sendBlocked(message: string, prompt?: string): void {
    this.services.metrics.error(ErrorCode.INVALID_MESSAGE);
    this.connection.send({ ...errorMessage(ErrorCode.INVALID_MESSAGE, message, true), reason: 'prompt_blocked', ...(prompt !== undefined ? { prompt } : {}) });
  }

  /** The session's state as the client last could see it; encoded once per state, however often it is asked for. */
  private answerSnapshot(): void {
    const state = this.session.continuationState;
    if (!state) {
      this.connection.send(errorMessage(ErrorCode.INTERNAL_ERROR, 'no continuation state yet: generate a segment first'));
      return;
    }
    this.connection.sendEncoded(encodedSnapshot(state));
  }

  // ------------------------------------------------------------------ ending

  /** Called by the server's reaper when the session idled past its timeout. */
  timeOut(): void {
    // A segment in flight is activity even if the generator is between reports.
    if (this.runningSegment) {
      this.session.touch();
      return;
    }
    const { policy } = this.services;
    const initializing = this.session.state === SessionState.INITIALIZING;
    this.end({ kind: 'timeout', timeoutSeconds: initializing ? policy.initTimeoutSeconds : policy.sessionTimeoutSeconds });
  }

  /**
   * Server shutdown: no new segment starts; a running one may finish within `graceMs`;
   * then `ltx2_stream_complete` (`stop_requested`) and close 1001.
   */
  async shutdown(graceMs: number): Promise<void> {
    this.stopping = true;
    this.scheduler.notify();
    const running = this.runningSegment?.done;
    if (running && graceMs > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([running, new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)))]);
      clearTimeout(timer);
    }
    this.end({ kind: 'shutdown' });
    await this.finished;
  }

  /**
   * Ends the session exactly once, as the endings table says: the last good continuation
   * state when the client may want to go on from it, the notice or error frames, the
   * terminal state, then the close. Aborting the lifetime wakes every wait in the story
   * so cleanup runs.
   */
  private end(ending: Ending): void {
    if (this.ending) return;
    this.ending = ending;
    const spec = endingSpec(ending);
    const s = this.session;
    const c = this.connection;
    if (spec.offersState?.(ending) && s.continuationState && !s.singleClipMode) c.sendEncoded(encodedSnapshot(s.continuationState));
    for (const frame of spec.frames(ending)) c.send(frame);
    const target = spec.state(s.state);
    if (target !== undefined && target !== s.state) {
      try {
        s.transition(target);
      } catch (err) {
        this.services.logger.warn({ session: s.id, err }, 'no legal edge for the session end');
      }
    }
    // A peer that does not answer the close frame keeps its connection only a short grace.
    const close = spec.close?.(ending);
    if (close) c.closeAndDrop(close.code, close.reason, spec.dropAfterMs ?? this.services.policy.closeGraceMs);
    const metric = spec.metric?.(ending);
    // A refused session counts as rejected too (sessions_rejected_total), not only as an error code.
    if (metric === ErrorCode.SESSION_REJECTED) this.services.metrics.sessionRejected();
    else if (metric) this.services.metrics.error(metric);
    this.log('end', { reason: ending.kind, state: s.state });
    this.runningSegment?.abort.abort(new SessionEnded(ending.kind));
    this.lifetime.abort(new SessionEnded(ending.kind));
  }

  /** 6. Always: worker released, encoders stopped, stores dropped, temp files removed, entry closed. */
  private async cleanup(): Promise<void> {
    if (!this.ending) this.end({ kind: 'left' });
    const { services } = this;
    const s = this.session;
    services.initReceived(this.ws);
    void this.nextEncoder?.abort();
    this.nextEncoder = undefined;
    if (this.slot) {
      services.admission.release(this.slot);
      this.slot = undefined;
    }
    // Ended before it was active: the token it resumed from works again.
    this.resumeClaim?.abandon();
    this.resumeClaim = undefined;
    await Promise.allSettled([services.store.delete(s.id), this.initImage?.remove()]);
    this.initImage = undefined;
    services.registry.close(s.id);
    services.releaseKey(this.keyId);
    services.metrics.sessionClosed(s.state);
    services.logger.info({ session: s.id, state: s.state, reason: this.ending?.kind, segments: s.segmentIdx }, 'session ended');
    await this.eventLog?.close();
  }

  // ------------------------------------------------------------------ helpers

  /** Resolves with `promise`, or rejects with `SessionEnded` (the lifetime's reason) as soon as the session ends. */
  private untilEnded<T>(promise: Promise<T>): Promise<T> {
    return abortable(promise, this.lifetime.signal);
  }

  private log(event: string, payload: Record<string, unknown>): void {
    this.eventLog?.write(event, payload);
  }
}
