/**
 * The story of one `/ws` connection in FastVideo's Dreamverse dialect (docs/dreamverse.md):
 *
 *   register (queue_status at once) → the init (lenient: any JSON object, or the defaults
 *   after the init wait) → admit (queue, live positions) → `gpu_assigned` → projects, one
 *   after another on the same worker: a rollout of seed prompts (rewritten first from a
 *   typed prompt), streams of segments the server chooses itself (seeds, the user's ready
 *   prompts, loop, auto-extension), ended by the cap, a rewrite, a reset or the end of the
 *   project → end → clean up.
 *
 * The same session core as `/v1/stream`: the session registry and state machine, the
 * admission queue and worker pool, the segment pipeline (its frames shaped here), the
 * prompt layer, the connection's backpressure and the endings' close codes. Frames from
 * the client are handled as they arrive; what changes the stream is queued as an action
 * for the story's loop, which applies it between segments (cancelling the running one
 * when the action says so).
 */
import type { WebSocket } from 'ws';
import { abortable, Notifier } from '../async/index.js';
import type { ContinuationState } from '../core/index.js';
import { checkInitialImage } from '../media/image-header.js';
import type { WorkerSlot } from '../pool/index.js';
import type { PromptProvenance } from '../prompts/index.js';
import { CloseCode, ErrorCode } from '../protocol/index.js';
import { AdmissionTimeout, QueueFull, SessionRejected, SessionState, type Session } from '../session/index.js';
import { ClientConnection } from './connection.js';
import { SessionEnded } from './endings.js';
import type { InitImageFile } from './init-image.js';
import { runSegmentJob, type SegmentEvents, type SegmentJob, type SegmentPorts } from './segment.js';
import type { SessionHandle, SessionServices, SessionView } from './session-services.js';
import type { SessionEventLog } from './session-log.js';
import { toWireError } from './wire-errors.js';

/** Where a Dreamverse prompt came from (its `source` on the wire). */
type DvSource = 'curated' | 'user_raw' | 'user_enhanced' | 'auto_llm';

const V1_SOURCE: Record<DvSource, SegmentJob['source']> = {
  curated: 'curated',
  user_raw: 'user',
  user_enhanced: 'enhanced',
  auto_llm: 'auto_extension',
};

/** The rollout length the Dreamverse app plans with (its prompt window). */
const ROLLOUT_PROMPTS = 6;
/** Dreamverse's limit on a decoded initial image. */
const MAX_IMAGE_BYTES = 15 * 1024 * 1024;

interface ProjectFields {
  presetId: string;
  presetLabel: string;
  seeds: string[];
  initialRolloutPrompt: string;
  enhancement: boolean;
  autoExtension: boolean;
  loop: boolean;
  singleClip: boolean;
  image: { mime: string; bytes: Buffer } | undefined;
  rewrite: RewriteSettings;
}

/** The session's choices for its rewrites (init fields, `set_rewrite_*`); unset means the server's. */
interface RewriteSettings {
  model?: string;
  temperature?: number;
  /** For rewriting the rollout window with an instruction. */
  windowSystemPrompt?: string;
  /** For turning a typed custom prompt into a rollout. */
  userSystemPrompt?: string;
}

const MAX_SYSTEM_PROMPT_CHARS = 20_000;

/** The rewrite settings a frame carries, or the first field that is wrong. */
function rewriteSettings(m: Record<string, unknown>, base: RewriteSettings): { ok: true; value: RewriteSettings } | { ok: false; error: string } {
  const out: RewriteSettings = { ...base };
  const model = m.rewrite_model ?? m.model;
  if (model !== undefined && model !== null) {
    if (typeof model !== 'string' || model.trim() === '' || model.length > 200) return { ok: false, error: 'rewrite_model: expected a model name of 1 to 200 characters' };
    out.model = model.trim();
  }
  const temperature = m.rewrite_temperature ?? m.temperature;
  if (temperature !== undefined && temperature !== null) {
    if (typeof temperature !== 'number' || !Number.isFinite(temperature) || temperature < 0 || temperature > 2) return { ok: false, error: 'rewrite_temperature: expected a number from 0 to 2' };
    out.temperature = temperature;
  }
  for (const [field, key] of [
    ['rewrite_window_system_prompt', 'windowSystemPrompt'],
    ['rewrite_user_system_prompt', 'userSystemPrompt'],
  ] as const) {
    const value = m[field];
    if (value === undefined || value === null) continue;
    if (typeof value !== 'string' || value.length > MAX_SYSTEM_PROMPT_CHARS) return { ok: false, error: `${field}: expected a string of at most ${MAX_SYSTEM_PROMPT_CHARS} characters` };
    if (value.trim() !== '') out[key] = value;
  }
  return { ok: true, value: out };
}

interface ReadyPrompt {
  prompt: string;
  source: DvSource;
  promptId: string | undefined;
  provenance?: PromptProvenance;
  /** Its place in the rollout, for a seed prompt (seeds may repeat). */
  seedIndex?: number;
}

type Action =
  | { kind: 'rollout'; prompts: string[]; reason: 'rewrite' | 'initial_rewrite' }
  | { kind: 'end_project' }
  | { kind: 'project'; fields: ProjectFields }
  | { kind: 'restart' }
  | { kind: 'reset' }
  | { kind: 'simple'; prompt: string; promptId: string | undefined }
  | { kind: 'leave' };

function str(value: unknown, fallback = ''): string {
  return typeof value === 'string' ? value : fallback;
}

function bool(value: unknown, fallback: boolean): boolean {
  return typeof value === 'boolean' ? value : fallback;
}

function strings(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string').map((v) => v.trim()).filter((v) => v !== '') : [];
}

export class DreamverseDriver implements SessionHandle {
  private readonly connection: ClientConnection;
  private readonly lifetime = new AbortController();
  private readonly changed = new Notifier();
  private readonly actions: Action[] = [];
  private readonly finished: Promise<void>;
  private initArrived: ((frame: Record<string, unknown> | undefined) => void) | undefined;
  private initSeen = false;
  private ended = false;
  private slot: WorkerSlot | undefined;
  private eventLog: SessionEventLog | undefined;
  private image: InitImageFile | undefined;

  // The project and its stream.
  private project: ProjectFields | undefined;
  private idle = false;
  private seeds: string[] = [];
  private seedCursor = 0;
  private forceFirstSeed = true;
  private streaming = false;
  private streamSegments = 0;
  private capped = false;
  private loopIteration = 0;
  private paused = false;
  private blockedNoticeSent = false;
  private lastPrompt: string | undefined;
  private readonly history: string[] = [];
  private readonly ready: ReadyPrompt[] = [];
  /** Prompts being enhanced, by id (their order is kept: they join `ready` in arrival order). */
  private readonly enhancing: { promptId: string | undefined; done: boolean; value?: ReadyPrompt; abort: AbortController }[] = [];
  private rewriting: AbortController | undefined;
  private resetPending = false;
  private running: { abort: AbortController; done: Promise<void> } | undefined;
  private stopping = false;

  private constructor(
    private readonly services: SessionServices,
    private readonly ws: WebSocket,
    readonly session: Session,
    private readonly keyId: string | undefined,
  ) {
    this.connection = new ClientConnection(ws, services.connection.limits, services.connection.hooks);
    this.connection.onGiveUp = () => this.end('slow client', { code: ErrorCode.INTERNAL_ERROR, message: 'client is not reading fast enough: closing', close: CloseCode.TRY_AGAIN_LATER });
    this.connection.onOversize = () => this.end('frame too large', { code: ErrorCode.INVALID_MESSAGE, message: 'frame too large', close: CloseCode.MESSAGE_TOO_BIG });
    this.connection.onMessage((data, isBinary) => this.onFrame(data, isBinary));
    ws.on('close', () => this.end('left'));
    ws.on('error', () => undefined);
    this.finished = this.run();
  }

  static open(services: SessionServices, ws: WebSocket, keyId: string | undefined): DreamverseDriver {
    let driver: DreamverseDriver | undefined;
    services.registry.create((session) => (driver = new DreamverseDriver(services, ws, session, keyId)));
    if (!driver) throw new Error('the registry did not build the session driver');
    return driver;
  }

  overloaded(message: string): void {
    this.end('overloaded', { code: ErrorCode.SESSION_REJECTED, message, close: CloseCode.TRY_AGAIN_LATER });
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
      generationPaused: this.paused,
      loopGenerationEnabled: this.project?.loop ?? false,
      autoExtensionEnabled: this.project?.autoExtension ?? false,
      singleClipMode: this.project?.singleClip ?? false,
      enhancementEnabled: this.project?.enhancement ?? true,
      curatedPrompts: [...this.seeds],
      metadata: { dialect: 'dreamverse', preset_id: this.project?.presetId },
      gpuId: s.gpuId,
      sendBacklogBytes: this.connection.backlog,
      encoderPid: undefined,
    };
  }

  // ---------------------------------------------------------------- the story

  private async run(): Promise<void> {
    this.services.metrics.sessionOpened();
    try {
      // Dreamverse tells the queue before it reads the init.
      const { admission } = this.services;
      const available = this.services.workersAvailable();
      this.sendQueueStatus(admission.queueDepth === 0 && available > 0 ? 0 : admission.queueDepth + 1, available);
      const init = await this.receiveInit();
      await this.applyInit(init);
      const slot = await this.admit();
      this.announce(slot);
      await this.serve(slot);
    } catch (err) {
      if (!(err instanceof SessionEnded) && !this.lifetime.signal.aborted) {
        this.services.logger.error({ session: this.session.id, err }, 'dreamverse session failed');
        const wire = toWireError(err);
        this.end('failed', { code: wire.code, message: wire.message, close: CloseCode.INTERNAL_ERROR, retryable: wire.retryable });
      }
    } finally {
      await this.cleanup();
    }
  }

  /** The first JSON object, or undefined (the defaults) when none came within the init wait. */
  private async receiveInit(): Promise<Record<string, unknown> | undefined> {
    const waitMs = this.services.policy.initTimeoutSeconds * 1000;
    let timer: NodeJS.Timeout | undefined;
    const frame = await this.untilEnded(
      new Promise<Record<string, unknown> | undefined>((resolve) => {
        this.initArrived = resolve;
        timer = setTimeout(() => resolve(undefined), waitMs);
      }),
    );
    clearTimeout(timer);
    this.initSeen = true;
    // Every later frame is small: refuse a larger one at its header from now on.
    this.connection.limitFrames(this.services.policy.frames.controlFrameBytes);
    return frame;
  }

  private async applyInit(frame: Record<string, unknown> | undefined): Promise<void> {
    try {
      this.services.registry.confirm(this.session.id);
    } catch (err) {
      if (!(err instanceof SessionRejected)) throw err;
      this.end('rejected', { code: ErrorCode.SESSION_REJECTED, message: `server is full: ${err.message}`, close: CloseCode.TRY_AGAIN_LATER });
      throw new SessionEnded();
    }
    const fields = this.projectFields(frame ?? {});
    this.session.clientId = str(frame?.client_id) || undefined;
    this.session.preset = fields.presetId || undefined;
    this.eventLog = this.services.openEventLog(this.session);
    this.log('init', { dialect: 'dreamverse', preset_id: fields.presetId, seeds: fields.seeds.length, defaults: frame === undefined });
    await this.setProject(fields);
  }

  /** The project's fields from an init or `project_init_v1`; a bad image ends the session (Dreamverse: 1003). */
  private projectFields(m: Record<string, unknown>): ProjectFields {
    const image = m.initial_image;
    let decoded: ProjectFields['image'];
    if (image && typeof image === 'object') {
      const { data_url: dataUrl, mime_type: mimeType } = image as Record<string, unknown>;
      const match = /^data:([\w/+.-]+);base64,(.*)$/s.exec(str(dataUrl));
      const mime = str(mimeType) || match?.[1] || '';
      const bytes = match ? Buffer.from(match[2] ?? '', 'base64') : Buffer.alloc(0);
      const problem = !match
        ? 'initial_image.data_url: expected a base64 data URL'
        : bytes.length > MAX_IMAGE_BYTES
          ? `initial_image: larger than ${MAX_IMAGE_BYTES} bytes`
          : checkInitialImage(bytes, mime);
      if (problem) {
        this.end('invalid image', { code: ErrorCode.INVALID_MESSAGE, message: `Invalid initial image: ${problem}`, close: CloseCode.UNSUPPORTED_DATA });
        throw new SessionEnded();
      }
      decoded = { mime, bytes };
    }
    const seeds = strings(m.curated_prompts).length > 0 ? strings(m.curated_prompts) : strings(m.segment_prompts);
    const rewrite = rewriteSettings(m, {});
    if (!rewrite.ok) this.sendError(ErrorCode.INVALID_MESSAGE, `${rewrite.error}; the server's setting is used`, true);
    return {
      presetId: str(m.preset_id),
      presetLabel: str(m.preset_label),
      seeds,
      initialRolloutPrompt: str(m.initial_rollout_prompt).trim(),
      // Dreamverse's default: enhancement on.
      enhancement: bool(m.enhancement_enabled, true),
      autoExtension: bool(m.auto_extension_enabled, false),
      loop: bool(m.loop_generation_enabled, false),
      singleClip: bool(m.single_clip_mode, false),
      image: decoded,
      rewrite: rewrite.ok ? rewrite.value : {},
    };
  }

  /** A project's seeds pass the safety filter; a blocked one is left out with an error naming it. */
  private async setProject(fields: ProjectFields): Promise<void> {
    const allowed: string[] = [];
    fields.seeds.forEach((prompt, i) => {
      const verdict = this.services.prompts.check(prompt, 'curated');
      if (verdict.allowed) allowed.push(prompt);
      else this.sendError(ErrorCode.INVALID_MESSAGE, `curated_prompts[${i}] was blocked by the safety filter: ${verdict.reason}`, true, 'prompt_blocked');
    });
    if (fields.initialRolloutPrompt) {
      const verdict = this.services.prompts.check(fields.initialRolloutPrompt, 'user');
      if (!verdict.allowed) {
        this.sendError(ErrorCode.INVALID_MESSAGE, `Prompt blocked: ${verdict.reason}`, true, 'prompt_blocked');
        fields.initialRolloutPrompt = '';
      }
    }
    fields.seeds = allowed;
    this.project = fields;
    this.idle = false;
    this.seeds = allowed;
    await this.image?.remove();
    this.image = fields.image ? await this.untilEnded(this.services.tempFiles.writeImage(fields.image.bytes, fields.image.mime)) : undefined;
  }

  private async admit(): Promise<WorkerSlot> {
    const started = performance.now();
    try {
      const slot = await this.services.admission.admit(
        { sessionId: this.session.id, onPosition: (position, depth) => this.sendQueueStatus(position + 1, 0, depth) },
        { signal: this.lifetime.signal, timeoutMs: this.services.policy.queueTimeoutMs, onQueued: () => this.session.transition(SessionState.QUEUED) },
      );
      this.slot = slot;
      this.services.metrics.queueWait(performance.now() - started);
      this.session.gpuId = slot.id;
      this.session.transition(SessionState.GPU_BINDING);
      return slot;
    } catch (err) {
      if (err instanceof QueueFull) this.end('rejected', { code: ErrorCode.SESSION_REJECTED, message: err.message, close: CloseCode.TRY_AGAIN_LATER });
      else if (err instanceof AdmissionTimeout) this.end('queue timeout', { code: ErrorCode.GPU_UNAVAILABLE, message: err.message, close: CloseCode.TRY_AGAIN_LATER, retryable: true });
      else if (!this.lifetime.signal.aborted) throw err;
      throw new SessionEnded();
    }
  }

  private announce(slot: WorkerSlot): void {
    const p = this.project as ProjectFields;
    this.sendAssigned(slot);
    this.session.transition(SessionState.ACTIVE);
    this.send({ type: 'loop_generation_updated', enabled: p.loop });
    this.send({ type: 'generation_paused_updated', paused: this.paused });
    this.log('active', { gpu_id: slot.id });
  }

  /** Projects until the session ends. */
  private sendAssigned(slot: WorkerSlot): void {
    this.send({ type: 'gpu_assigned', gpu_id: slot.id, session_timeout: this.services.policy.sessionTimeoutSeconds, model_id: slot.generator.modelId });
  }

  /**
   * The app counts `gpu_assigned.session_timeout` down by the wall clock; livegen's timeout
   * is an idle one, which starts again with every segment and every ending. Sending
   * `gpu_assigned` again at those moments (the app takes it as a fresh countdown) keeps
   * the app from showing "Session Expired" over a stream that is going on.
   */
  private restartCountdown(): void {
    if (this.slot && !this.stopping && !this.ended) this.sendAssigned(this.slot);
  }

  private async serve(slot: WorkerSlot): Promise<void> {
    await this.beginProject();
    const signal = this.lifetime.signal;
    while (!signal.aborted && !this.stopping) {
      const action = this.actions.shift();
      if (action) {
        await this.apply(action);
        continue;
      }
      if (this.idle || this.capped || this.paused || this.rewritingBeforeStart()) {
        await this.untilEnded(this.changed.wait(signal));
        continue;
      }
      const p = this.project as ProjectFields;
      if (!p.singleClip && this.streamSegments >= this.services.policy.segmentCap) {
        this.reachCap();
        continue;
      }
      const next = await this.pick();
      if (!next) {
        if (!this.blockedNoticeSent && !p.singleClip) {
          this.send({ type: 'prompt_sources_blocked', segment_idx: this.streamSegments + 1 });
          this.blockedNoticeSent = true;
        }
        await this.untilEnded(this.changed.wait(signal));
        continue;
      }
      if (this.blockedNoticeSent) {
        this.blockedNoticeSent = false;
        this.send({ type: 'prompt_sources_resumed', segment_idx: this.streamSegments + 1, source: next.source, prompt_id: next.promptId });
      }
      await this.runSegment(slot, next);
    }
    await this.untilEnded(new Promise<void>(() => undefined));
  }

  /** A project starts: rewritten first from a typed prompt, else its seeds as they are. */
  private async beginProject(): Promise<void> {
    const p = this.project as ProjectFields;
    this.resetStory();
    if (p.seeds.length === 0 && p.initialRolloutPrompt) {
      this.startRewrite(p.initialRolloutPrompt, [], 'initial_rewrite');
      return;
    }
    this.startStream();
    this.send({ type: 'seed_prompts_updated', reason: 'init', prompts: [...this.seeds], preset_id: p.presetId, preset_label: p.presetLabel });
  }

  private rewritingBeforeStart(): boolean {
    return this.rewriting !== undefined && !this.streaming;
  }

  private async apply(action: Action): Promise<void> {
    const p = this.project as ProjectFields;
    switch (action.kind) {
      case 'rollout':
        this.completeStream(action.reason === 'rewrite' ? 'rewrite' : undefined);
        this.seeds = action.prompts;
        this.resetStory();
        this.startStream();
        this.send({ type: 'seed_prompts_reset_applied', reason: action.reason, loop_iteration: this.loopIteration, seed_prompt_count: this.seeds.length, ...this.drainQueues() });
        return;
      case 'reset':
        this.resetPending = false;
        this.completeStream('reset');
        this.resetStory();
        this.startStream();
        this.send({ type: 'seed_prompts_reset_applied', reason: 'reset', loop_iteration: this.loopIteration, seed_prompt_count: this.seeds.length, ...this.drainQueues() });
        return;
      case 'restart':
        this.send({ type: 'generation_restarted', reason: 'cap_restart', segment_cap: this.services.policy.segmentCap });
        this.resetStory();
        this.startStream();
        return;
      case 'end_project': {
        this.rewriting?.abort();
        this.rewriting = undefined;
        this.completeStream('stop_requested');
        const dropped = this.drainQueues();
        this.idle = true;
        this.send({ type: 'project_idle', ...dropped });
        this.restartCountdown();
        this.log('project_idle', dropped);
        return;
      }
      case 'project':
        await this.setProject(action.fields);
        await this.beginProject();
        return;
      case 'simple':
        // A running stream ends here: the clip is a stream of its own.
        this.completeStream('stop_requested');
        p.singleClip = true;
        p.autoExtension = false;
        p.loop = false;
        this.resetStory();
        // The clip is the prompt asked for, not the rollout's first seed.
        this.forceFirstSeed = false;
        this.seedCursor = this.seeds.length;
        this.ready.push({ prompt: action.prompt, source: 'user_raw', promptId: action.promptId });
        this.changed.notify();
        return;
      case 'leave':
        this.completeStream('stop_requested');
        this.end('left', undefined, CloseCode.NORMAL);
        throw new SessionEnded();
    }
  }

  /** The next prompt, in Dreamverse's order; undefined when there is none now. */
  private async pick(): Promise<ReadyPrompt | undefined> {
    const p = this.project as ProjectFields;
    this.collectEnhanced();
    if (this.forceFirstSeed && this.seeds.length > 0) {
      this.forceFirstSeed = false;
      this.seedCursor = 1;
      return { prompt: this.seeds[0] as string, source: 'curated', promptId: undefined, seedIndex: 0 };
    }
    const user = this.ready.shift();
    if (user) return user;
    // Single clips are made on request only: after one, the session idles until the next.
    if (p.singleClip) return undefined;
    if (this.seedCursor < this.seeds.length) {
      const seedIndex = this.seedCursor;
      this.seedCursor += 1;
      return { prompt: this.seeds[seedIndex] as string, source: 'curated', promptId: undefined, seedIndex };
    }
    if (p.loop && this.seeds.length > 0 && !p.singleClip) {
      this.completeStream('loop_restart');
      this.loopIteration += 1;
      this.resetConditioning();
      this.startStream();
      this.send({ type: 'loop_restarted', loop_iteration: this.loopIteration });
      this.seedCursor = 1;
      return { prompt: this.seeds[0] as string, source: 'curated', promptId: undefined, seedIndex: 0 };
    }
    if (p.autoExtension && this.lastPrompt !== undefined && !p.singleClip) return this.autoExtend(this.lastPrompt);
    return undefined;
  }

  private async autoExtend(lastPrompt: string): Promise<ReadyPrompt> {
    const started = performance.now();
    const segmentIdx = this.streamSegments + 1;
    let value: Awaited<ReturnType<SessionServices['extender']['next']>>;
    try {
      value = await this.untilEnded(
        this.services.extender.next({ lastPrompt, curatedPrompts: this.seeds, history: [...this.history], segmentIdx, signal: this.lifetime.signal }),
      );
    } catch (err) {
      if (this.lifetime.signal.aborted) throw err;
      value = { prompt: lastPrompt, original: lastPrompt, fallbackUsed: true, error: err instanceof Error ? err.message : String(err) };
    }
    const extended = typeof value === 'string' ? { prompt: value, fallbackUsed: false } : value;
    let prompt = extended.prompt;
    let error = extended.fallbackUsed ? (extended.error ?? 'the prompt extender failed') : undefined;
    if (prompt !== lastPrompt && !this.services.prompts.check(prompt, 'auto_extension').allowed) {
      prompt = lastPrompt;
      error = 'the prompt was blocked by the safety filter';
    }
    if (error !== undefined) {
      this.send({ type: 'auto_prompt_failed', segment_idx: segmentIdx, latency_ms: Math.round(performance.now() - started), error });
    }
    const provenance: PromptProvenance | undefined = typeof value === 'string' ? undefined : { ...extended, fallbackUsed: error !== undefined, error };
    return { prompt, source: 'auto_llm', promptId: undefined, provenance };
  }

  private async runSegment(slot: WorkerSlot, next: ReadyPrompt): Promise<void> {
    const p = this.project as ProjectFields;
    // Each single clip is a stream of its own.
    if (p.singleClip && !this.streaming) this.startStream();
    const segmentIdx = this.streamSegments + 1;
    const seedIndex = next.seedIndex;
    const loopIteration = this.loopIteration;
    this.send({
      type: 'segment_prompt_source',
      segment_idx: segmentIdx,
      source: next.source,
      prompt_id: next.promptId,
      fallback_used: next.provenance?.fallbackUsed ?? false,
      seed_prompt_index: seedIndex,
      loop_iteration: loopIteration,
    });
    const abort = new AbortController();
    let settle: () => void = () => undefined;
    this.running = { abort, done: new Promise<void>((resolve) => (settle = resolve)) };
    const started = performance.now();
    let mediaDoneAt = started;
    const total = this.services.policy.segmentCap;
    const events: SegmentEvents = {
      started: (e) =>
        this.send({ type: 'ltx2_segment_start', segment_idx: segmentIdx, total_segments: total, prompt: e.prompt, source: next.source, seed_prompt_index: seedIndex, loop_iteration: loopIteration, ...e.provenance }),
      step: () => this.session.touch(),
      mediaStarted: (e) => this.send({ type: 'media_init', segment_idx: segmentIdx, mime: e.mime, stream_id: e.streamId, mode: e.mode }),
      mediaFinished: (e) => {
        mediaDoneAt = performance.now();
        // Dreamverse counts every binary frame of the segment, its init frame too.
        this.send({ type: 'media_segment_complete', segment_idx: segmentIdx, stream_id: e.streamId, chunks: e.chunks + 1, bytes: e.bytes });
      },
      completed: (e) => {
        const totalMs = Math.round(performance.now() - started);
        const worker = Math.round(e.generationTimeMs);
        // Dreamverse reports step_complete once, after the media, with its latency breakdown.
        this.send({
          type: 'step_complete',
          segment_idx: segmentIdx,
          latency_ms: { total: totalMs, worker_e2e: worker, main_user_step: Math.round(mediaDoneAt - started), overhead: Math.max(0, totalMs - worker) },
        });
        this.send({ type: 'ltx2_segment_complete', segment_idx: segmentIdx, total_segments: total });
        this.restartCountdown();
      },
    };
    const s = this.session;
    const job: SegmentJob = { prompt: next.prompt, source: V1_SOURCE[next.source], overrides: {}, receivedAt: started, provenance: next.provenance };
    const encoder = this.services.createEncoder('av_fmp4', slot.generator.audio);
    try {
      await runSegmentJob(
        job,
        {
          segmentIdx,
          ptsBaseMs: 0,
          streamMode: 'av_fmp4',
          sampling: this.services.policy.sampling,
          generator: slot.generator,
          encoder,
          // Dreamverse uses the image for the first segment of every stream.
          initImagePath: segmentIdx === 1 ? this.image?.path : undefined,
          continuationState: p.singleClip ? undefined : s.continuationState,
        },
        this.ports(events),
        AbortSignal.any([abort.signal, this.lifetime.signal]),
        (result) => {
          if (result.continuationState && !p.singleClip) s.continuationState = result.continuationState;
          this.streamSegments += 1;
          s.segmentIdx += 1;
          s.transition(SessionState.ACTIVE);
        },
      );
      this.lastPrompt = next.prompt;
      this.history.push(next.prompt);
      if (this.history.length > 64) this.history.shift();
      if (p.singleClip) this.completeStream('stop_requested');
    } catch (err) {
      void encoder.abort();
      if (this.lifetime.signal.aborted) return;
      if (abort.signal.aborted) {
        this.log('segment_cancelled', { segment_idx: segmentIdx });
        return;
      }
      this.services.logger.warn({ session: s.id, err }, 'segment failed');
      const wire = toWireError(err);
      this.end('failed', { code: wire.code, message: wire.message, close: CloseCode.INTERNAL_ERROR, retryable: wire.retryable });
      throw new SessionEnded();
    } finally {
      this.running = undefined;
      settle();
    }
  }

  private ports(events: SegmentEvents): SegmentPorts {
    return {
      events,
      sendBinary: (data) => this.connection.sendBinary(data),
      // Dreamverse has no snapshots or resume tokens: the state lives with the session.
      storeState: async (_state: ContinuationState) => undefined,
      segmentCompleted: (figures) => this.services.metrics.segmentCompleted(figures),
      log: (event, payload) => this.log(event, payload),
      touch: () => this.session.touch(),
      clock: () => performance.now(),
    };
  }

  // ------------------------------------------------------------ streams

  private startStream(): void {
    const p = this.project as ProjectFields;
    const { width, height, fps, numFrames } = this.services.policy.sampling;
    this.streaming = true;
    this.streamSegments = 0;
    this.capped = false;
    this.send({
      type: 'ltx2_stream_start',
      total_segments: this.services.policy.segmentCap,
      generation_segment_cap: this.services.policy.segmentCap,
      preset_id: p.presetId,
      stream_mode: 'av_fmp4',
      live_mode: true,
      loop_generation_enabled: p.loop,
      loop_iteration: this.loopIteration,
      width,
      height,
      fps,
      num_frames: numFrames,
    });
  }

  /** Every stream ends with `ltx2_stream_complete`, so the app keeps it as a clip. */
  private completeStream(reason: string | undefined): void {
    if (!this.streaming) return;
    this.streaming = false;
    this.send({ type: 'ltx2_stream_complete', ...(reason ? { reason } : {}) });
    this.restartCountdown();
  }

  private reachCap(): void {
    const p = this.project as ProjectFields;
    if (p.loop) {
      p.loop = false;
      this.send({ type: 'loop_generation_updated', enabled: false });
    }
    this.capped = true;
    this.completeStream('segment_cap');
    this.log('segment_cap', { segments: this.streamSegments });
  }

  private resetStory(): void {
    this.seedCursor = 0;
    this.forceFirstSeed = true;
    this.loopIteration = 0;
    this.blockedNoticeSent = false;
    this.resetConditioning();
  }

  private resetConditioning(): void {
    this.session.continuationState = undefined;
  }

  private drainQueues(): { dropped_user_raw_queue: number; dropped_user_ready_queue: number } {
    const raw = this.enhancing.filter((e) => !e.done).length;
    for (const e of this.enhancing) e.abort.abort();
    this.enhancing.length = 0;
    const readyCount = this.ready.length;
    this.ready.length = 0;
    return { dropped_user_raw_queue: raw, dropped_user_ready_queue: readyCount };
  }

  /** Enhanced prompts join the ready queue in the order they were appended. */
  private collectEnhanced(): void {
    while (this.enhancing[0]?.done) {
      const e = this.enhancing.shift();
      if (e?.value) this.ready.push(e.value);
    }
  }

  /** Stops the running segment (a rewrite or the end of the project replaces it). */
  private cancelRunning(): void {
    this.running?.abort.abort();
  }

  // ------------------------------------------------------------ prompts

  private appendPrompt(m: Record<string, unknown>): void {
    const prompt = str(m.prompt).trim();
    const promptId = str(m.prompt_id) || undefined;
    if (this.idle || !this.project) {
      this.sendError(ErrorCode.INVALID_MESSAGE, 'Start a new project before sending prompts.', true);
      return;
    }
    if (!prompt) {
      this.sendError(ErrorCode.INVALID_MESSAGE, 'Prompt is empty.', true);
      return;
    }
    if (this.refusedPrompt(prompt)) return;
    this.send({ type: 'prompt_received', prompt_id: promptId, queue_depth: this.ready.length + this.enhancing.length + 1 });
    if (!this.project.enhancement || !this.services.prompts.llmAvailable) {
      this.ready.push({ prompt, source: 'user_raw', promptId });
      this.send({ type: 'prompt_ready', prompt_id: promptId, prompt, source: 'user_raw', latency_ms: 0 });
      this.changed.notify();
      return;
    }
    this.send({ type: 'prompt_enhancing', prompt_id: promptId });
    const entry: (typeof this.enhancing)[number] = { promptId, done: false, abort: new AbortController() };
    this.enhancing.push(entry);
    const signal = AbortSignal.any([this.lifetime.signal, entry.abort.signal]);
    this.services.prompts.enhance(prompt, { history: [...this.history], signal }).then(
      (out) => {
        if (signal.aborted) return;
        const latency = Math.round(out.latencyMs ?? 0);
        const { prompt: final, enhanced, ...provenance } = out;
        if (enhanced) this.send({ type: 'prompt_ready', prompt_id: promptId, prompt: final, source: 'user_enhanced', latency_ms: latency });
        // Dreamverse drops the prompt here; it is generated as typed instead.
        else this.send({ type: 'prompt_fallback_used', prompt_id: promptId, prompt: final, source: 'user_raw', error: out.error, latency_ms: latency });
        entry.value = { prompt: final, source: enhanced ? 'user_enhanced' : 'user_raw', promptId, provenance };
        entry.done = true;
        this.changed.notify();
      },
      () => undefined,
    );
  }

  /** Rewrites the rollout; the new one starts (the running segment cancelled) when the LLM answers or falls back. */
  private startRewrite(instruction: string, window: string[], reason: 'rewrite' | 'initial_rewrite', settings?: RewriteSettings): void {
    if (this.rewriting) {
      this.sendError(ErrorCode.INVALID_MESSAGE, 'A rewrite is already running.', true);
      return;
    }
    const p = this.project as ProjectFields;
    const abort = new AbortController();
    this.rewriting = abort;
    const chosen = settings ?? p.rewrite;
    const overrides = {
      ...(chosen.model !== undefined ? { model: chosen.model } : {}),
      ...(chosen.temperature !== undefined ? { temperature: chosen.temperature } : {}),
      ...((reason === 'initial_rewrite' ? chosen.userSystemPrompt : chosen.windowSystemPrompt) !== undefined
        ? { systemPrompt: reason === 'initial_rewrite' ? chosen.userSystemPrompt : chosen.windowSystemPrompt }
        : {}),
    };
    const model = chosen.model ?? this.rewriteModel();
    this.send({ type: 'rewrite_seed_prompts_started', model });
    const count = window.length > 0 ? window.length : ROLLOUT_PROMPTS;
    const started = performance.now();
    const signal = AbortSignal.any([this.lifetime.signal, abort.signal]);
    const asked = this.services.prompts.llmAvailable
      ? this.services.prompts.rewrite(instruction, { count, current: window, signal, overrides })
      : Promise.resolve({ ok: false as const, error: 'no LLM is configured (streaming.prompt.enabled is false): the instruction leads the current rollout' });
    asked.then(
      (out) => {
        if (signal.aborted) return;
        this.rewriting = undefined;
        const latency = Math.round(performance.now() - started);
        const fallback = !out.ok;
        // The documented fallback: the instruction first, then the rest of the window.
        const prompts = out.ok ? out.value.prompts : [instruction, ...window.slice(1)].slice(0, count);
        while (prompts.length < count) prompts.push(instruction);
        const usedModel = out.ok ? out.value.model : model;
        const error = out.ok ? undefined : out.error;
        this.send({
          type: 'seed_prompts_updated',
          reason: 'rewrite',
          prompts,
          preset_id: p.presetId,
          preset_label: p.presetLabel,
          fallback_used: fallback,
          error,
          model: usedModel,
          latency_ms: latency,
          rewrite_instruction: instruction,
        });
        this.send({ type: 'rewrite_seed_prompts_complete', fallback_used: fallback, error, preset_id: p.presetId, preset_label: p.presetLabel, model: usedModel, latency_ms: latency });
        this.log('rewrite', { instruction, prompts, fallback_used: fallback, error });
        this.actions.push({ kind: 'rollout', prompts, reason });
        this.cancelRunning();
        this.changed.notify();
      },
      () => {
        if (this.rewriting === abort) this.rewriting = undefined;
      },
    );
  }

  /** A user's prompt the safety filter blocks: the error (the socket stays open), and true. */
  private refusedPrompt(prompt: string): boolean {
    const verdict = this.services.prompts.check(prompt, 'user');
    if (verdict.allowed) return false;
    this.sendError(ErrorCode.INVALID_MESSAGE, `Prompt blocked: ${verdict.reason}`, true, 'prompt_blocked');
    this.log('prompt_blocked', { prompt, filter: verdict.filter });
    return true;
  }

  private rewriteModel(): string {
    const first = this.services.prompts.status().llm.providers[0];
    return first ? first.model : 'none';
  }

  // ------------------------------------------------------------ client frames

  private onFrame(data: Buffer, isBinary: boolean): void {
    if (this.lifetime.signal.aborted) return;
    let m: Record<string, unknown> | undefined;
    if (!isBinary) {
      try {
        const parsed: unknown = JSON.parse(data.toString('utf8'));
        if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) m = parsed as Record<string, unknown>;
      } catch {
        // answered below
      }
    }
    if (!m) {
      if (!this.initSeen) {
        this.end('bad init', { code: ErrorCode.INVALID_MESSAGE, message: 'the first frame must be a JSON object (session_init_v2)', close: CloseCode.UNSUPPORTED_DATA });
        return;
      }
      this.sendError(ErrorCode.INVALID_MESSAGE, 'expected a JSON object with a type', true);
      return;
    }
    try {
      if (!this.initSeen) {
        this.session.touch();
        this.services.initReceived(this.ws);
        this.initSeen = true;
        this.initArrived?.(m);
        return;
      }
      this.onMessage(m);
    } catch (err) {
      if (err instanceof SessionEnded) return;
      this.services.logger.error({ session: this.session.id, err }, 'frame handling failed');
      this.end('failed', { code: ErrorCode.INTERNAL_ERROR, message: 'internal error', close: CloseCode.INTERNAL_ERROR });
    }
  }

  private onMessage(m: Record<string, unknown>): void {
    const type = str(m.type);
    // Activity restarts the idle clock, and the app's countdown with it.
    this.session.touch();
    this.restartCountdown();
    const p = this.project;
    if (type !== 'append_prompt') this.log(type || 'unknown', { ...m, type: undefined });
    switch (type) {
      case 'append_prompt':
        this.appendPrompt(m);
        return;
      case 'rewrite_seed_prompts': {
        const instruction = str(m.rewrite_instruction).trim();
        if (!p || this.idle) return this.sendError(ErrorCode.INVALID_MESSAGE, 'Start a new project before sending prompts.', true);
        const window = strings(m.prompt_window_prompts);
        const current = window.length > 0 ? window : this.seeds;
        if (!instruction && current.length === 0) return this.sendError(ErrorCode.INVALID_MESSAGE, 'No seed prompts available to rewrite.', true);
        if (instruction && this.refusedPrompt(instruction)) return;
        // The frame may carry its own rewrite settings, for this rewrite only.
        const settings = rewriteSettings(m, p.rewrite);
        if (!settings.ok) return this.sendError(ErrorCode.INVALID_MESSAGE, settings.error, true);
        this.startRewrite(instruction || current[0] || '', current, 'rewrite', settings.value);
        return;
      }
      case 'end_project_keep_session':
        this.cancelRunning();
        this.actions.push({ kind: 'end_project' });
        break;
      case 'project_init_v1':
        if (!this.idle) return this.sendError(ErrorCode.INVALID_MESSAGE, 'Use end_project_keep_session first: a project is running.', true);
        try {
          this.actions.push({ kind: 'project', fields: this.projectFields(m) });
        } catch (err) {
          if (!(err instanceof SessionEnded)) throw err;
        }
        break;
      case 'simple_generate': {
        const prompt = str(m.prompt).trim();
        if (!prompt) return this.sendError(ErrorCode.INVALID_MESSAGE, 'Prompt is empty.', true);
        if (this.refusedPrompt(prompt)) return;
        this.actions.push({ kind: 'simple', prompt, promptId: str(m.prompt_id) || undefined });
        break;
      }
      case 'set_rewrite_model':
      case 'set_rewrite_temperature': {
        if (!p) return;
        const field = type === 'set_rewrite_model' ? 'model' : 'temperature';
        const settings = rewriteSettings({ [field]: m[field] ?? m.value }, p.rewrite);
        if (!settings.ok) return this.sendError(ErrorCode.INVALID_MESSAGE, settings.error, true);
        p.rewrite = settings.value;
        if (field === 'model') this.send({ type: 'rewrite_model_updated', model: p.rewrite.model });
        else this.send({ type: 'rewrite_temperature_updated', temperature: p.rewrite.temperature });
        return;
      }
      case 'set_enhancement':
        if (p) p.enhancement = bool(m.enabled, p.enhancement);
        this.send({ type: 'enhancement_updated', enabled: p?.enhancement ?? false });
        return;
      case 'set_auto_extension':
        if (p) p.autoExtension = bool(m.enabled, p.autoExtension);
        this.send({ type: 'auto_extension_updated', enabled: p?.autoExtension ?? false });
        break;
      case 'set_loop_generation':
        if (p) p.loop = bool(m.enabled, p.loop);
        this.send({ type: 'loop_generation_updated', enabled: p?.loop ?? false });
        break;
      case 'set_generation_paused':
        this.paused = bool(m.paused, this.paused);
        this.send({ type: 'generation_paused_updated', paused: this.paused });
        break;
      case 'reset_to_seed_prompts':
        if (!this.resetPending) {
          this.resetPending = true;
          this.actions.push({ kind: 'reset' });
        }
        this.send({ type: 'seed_prompts_reset_pending', seed_prompt_count: this.seeds.length });
        break;
      case 'restart_generation':
        if (!this.capped) return this.sendError(ErrorCode.INVALID_MESSAGE, 'The segment cap has not been reached.', true);
        this.actions.push({ kind: 'restart' });
        break;
      case 'leave':
        this.cancelRunning();
        this.actions.push({ kind: 'leave' });
        break;
      case 'session_init_v2':
      case 'select_model':
        return this.sendError(ErrorCode.INVALID_MESSAGE, 'session already initialised: use project_init_v1 after project_idle', true);
      default:
        return this.sendError(ErrorCode.INVALID_MESSAGE, `unknown message type ${JSON.stringify(type)}`, true);
    }
    this.changed.notify();
  }

  // ------------------------------------------------------------ ending

  timeOut(): void {
    // No init within the wait: Dreamverse goes on with the defaults, it does not end.
    if (!this.initSeen) {
      this.session.touch();
      this.initArrived?.(undefined);
      return;
    }
    // A segment or a rewrite in flight is activity, even between its reports.
    if (this.running || this.rewriting) {
      this.session.touch();
      return;
    }
    const seconds = this.initSeen ? this.services.policy.sessionTimeoutSeconds : this.services.policy.initTimeoutSeconds;
    this.stopping = true;
    this.completeStream(undefined);
    this.send({ type: 'session_timeout', message: `Session idle for ${seconds} s`, timeout_seconds: seconds });
    this.end('timeout', undefined, CloseCode.NORMAL);
  }

  async shutdown(graceMs: number): Promise<void> {
    this.stopping = true;
    this.changed.notify();
    const running = this.running?.done;
    if (running && graceMs > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([running, new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)))]);
      clearTimeout(timer);
    }
    this.completeStream('stop_requested');
    this.end('shutdown', undefined, CloseCode.GOING_AWAY);
    await this.finished;
  }

  /** Ends the session once: the error frame when there is one, the terminal state, the close. */
  private end(why: string, error?: { code: ErrorCode; message: string; close: number; retryable?: boolean }, close?: number): void {
    if (this.ended) return;
    this.ended = true;
    const s = this.session;
    if (error) {
      this.sendError(error.code, error.message, error.retryable ?? false);
      this.services.metrics.error(error.code);
    }
    const target = why === 'timeout' ? SessionState.TIMEOUT : error ? (s.state === SessionState.INITIALIZING ? SessionState.REJECTED : SessionState.ERROR) : SessionState.COMPLETE;
    try {
      if (target !== s.state) s.transition(target);
    } catch {
      // no legal edge from here (e.g. rejected while queued): the state stays
    }
    const code = error?.close ?? close;
    if (code !== undefined) this.connection.closeAndDrop(code, why.slice(0, 100), this.services.policy.closeGraceMs);
    this.log('end', { reason: why, state: s.state });
    this.running?.abort.abort();
    this.lifetime.abort(new SessionEnded());
    this.changed.notify();
  }

  private async cleanup(): Promise<void> {
    if (!this.ended) this.end('left');
    const { services } = this;
    services.initReceived(this.ws);
    for (const e of this.enhancing) e.abort.abort();
    this.rewriting?.abort();
    if (this.slot) {
      services.admission.release(this.slot);
      this.slot = undefined;
    }
    await Promise.allSettled([this.image?.remove()]);
    services.registry.close(this.session.id);
    services.releaseKey(this.keyId);
    services.metrics.sessionClosed(this.session.state);
    services.logger.info({ session: this.session.id, dialect: 'dreamverse', state: this.session.state, segments: this.session.segmentIdx }, 'session ended');
    await this.eventLog?.close();
  }

  // ------------------------------------------------------------ helpers

  private sendQueueStatus(position: number, available: number, depth = this.services.admission.queueDepth): void {
    this.send({ type: 'queue_status', position, total_gpus: this.services.workersTotal(), available_gpus: available, queue_depth: depth });
  }

  /** A Dreamverse frame: JSON without `undefined` fields. */
  private send(message: Record<string, unknown>): void {
    this.connection.sendEncoded(Buffer.from(JSON.stringify(message)));
  }

  private sendError(code: ErrorCode, message: string, retryable: boolean, reason?: 'prompt_blocked'): void {
    this.send({ type: 'error', message, code, retryable, ...(reason ? { reason } : {}) });
  }

  private untilEnded<T>(promise: Promise<T>): Promise<T> {
    return abortable(promise, this.lifetime.signal);
  }

  private log(event: string, payload: Record<string, unknown>): void {
    this.eventLog?.write(event, payload);
  }
}
