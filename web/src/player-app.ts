import {
  LivegenClient,
  LivegenError,
  streamUrl,
  type CloseInfo,
  type ContinuationState,
  type QueueStatus,
} from '../../src/client/index.js';
import { CuratedPrompts } from './curated-prompts.js';
import { errorText } from './error-text.js';
import { describeImage, ImageRefused, readInitialImage, type PickedImage } from './initial-image.js';
import type {
  EndReason,
  LivegenPlayerDebug,
  Notice,
  PlayerError,
  PlayerStatus,
  ReconnectInfo,
  SegmentInfo,
  SessionTimeline,
} from './model.js';
import { MsePlayer } from './mse-player.js';
import { downloadState, readStateFile } from './state-file.js';
import { ms, renderErrors, renderNotice, renderPending, renderSegments, type PageElements } from './view.js';

export interface PlayerAppOptions {
  /** The stream endpoint (default: this page's server). */
  serverUrl: string;
  keepBehindS?: number;
  startAheadS?: number;
  /** Delay before the first reconnect attempt; it doubles per attempt, up to 8 s (default 500 ms). */
  reconnectBaseMs?: number;
  /** Reconnect attempts in a row before the page gives up (default 5). */
  reconnectAttempts?: number;
}

const DEFAULT_CURATED = [
  'a paper boat drifting down a rainy street at dusk',
  'the boat reaches a canal lit by lanterns',
  'morning fog lifts over the quiet harbour',
];

const RECONNECT_MAX_DELAY_MS = 8000;
/**
 * Closes after which the same request would end the same way: a normal end (cap, timeout,
 * the user), a refused opening frame (1003), a policy refusal (1008), a frame too large (1009).
 */
const FINAL_CLOSES = new Set([1000, 1003, 1008, 1009]);

/**
 * `enhanced`: a prompt the server's LLM already wrote, asked for again (a resumed session
 * regenerating a cut segment); the server does not enhance it a second time.
 */
type PromptSource = 'user' | 'curated' | 'enhanced' | 'auto_extension';

interface PendingPrompt {
  prompt: string;
  source: PromptSource;
}

/** How a session of the story was opened. */
type SessionKind = 'start' | 'continue' | 'reconnect';

/** One session (one connection) of the story, and what it learnt before it closed. */
interface SessionRun {
  client: LivegenClient;
  /** 1-based, within the story. */
  number: number;
  kind: SessionKind;
  resumedFrom: ContinuationState | null;
  opened: boolean;
  active: boolean;
  completed: number;
  streamComplete?: string;
  timedOutAfterS?: number;
  /** The last `error` frame the server sent in this session, and its entry in the list. */
  serverError?: { error: LivegenError; entry: PlayerError };
  /** The page gave up on this session itself (its init could not be sent). */
  refused?: boolean;
}

const END_LABEL: Record<EndReason, string> = {
  left: 'stopped',
  segment_cap: 'segment cap reached',
  timeout: 'timed out idle',
  refused: 'refused',
  gave_up: 'could not reconnect',
  closed: 'closed',
};

/** "frame 96" for a synthetic state, "the last state" otherwise. */
function stateLabel(state: ContinuationState | null): string {
  if (!state) return 'the start';
  const next = state.payload.nextFrameIndex;
  return typeof next === 'number' ? `frame ${next}` : 'the last state';
}

function seconds(msValue: number): string {
  return `${(msValue / 1000).toFixed(1)} s`;
}

/**
 * The player page. Start begins a story: one session, then, without anyone asking, the
 * sessions it takes to go on. Auto-extension (on by default) keeps each session
 * generating after the prompts run out; at the server's segment cap the page offers
 * Continue, which opens a new session resumed from the last state; a connection that
 * drops is reopened with backoff and resumed the same way. Media of every session goes to
 * one MSE player, so playback runs on across sessions.
 */
export class PlayerApp {
  private client: LivegenClient | undefined;
  private run: SessionRun | undefined;
  private player: MsePlayer | undefined;
  private status: PlayerStatus = 'idle';
  private segments: SegmentInfo[] = [];
  private readonly errors: PlayerError[] = [];
  private startedAt = 0;
  private ttffMs: number | null = null;
  private playingMs: number | null = null;
  private queue: QueueStatus | null = null;
  private lastSnapshot: ContinuationState | null = null;
  private loadedState: ContinuationState | null = null;
  private resumedFrom: ContinuationState | null = null;
  private closeInfo: CloseInfo | null = null;
  private timeline: SessionTimeline = {};
  private notice: Notice | null = null;
  private endReason: EndReason | null = null;
  // The story: what carries over from one session to the next.
  private sessionsOpened = 0;
  private everConnected = false;
  private leaving = false;
  private lastPrompt = '';
  private lastSource: PromptSource = 'user';
  private pending: PendingPrompt[] = [];
  private capSegments: number | undefined;
  private reconnect: ReconnectInfo | null = null;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private reconnects = 0;
  // The initial image for the next Start.
  private image: PickedImage | null = null;
  private imageRefusal: string | null = null;
  private imageChecking: string | null = null;
  private imagePick = 0;
  private readonly curated: CuratedPrompts;
  private readonly reconnectBaseMs: number;
  private readonly reconnectAttempts: number;

  constructor(
    private readonly el: PageElements,
    private readonly options: PlayerAppOptions,
  ) {
    this.reconnectBaseMs = options.reconnectBaseMs ?? 500;
    this.reconnectAttempts = options.reconnectAttempts ?? 5;
    el.video.muted = true;
    this.curated = new CuratedPrompts(el.curatedList, el.curatedNew, el.curatedAdd, DEFAULT_CURATED, {
      onChange: (prompts) => this.whenLive((c) => c.setSeedPrompts(prompts)),
      onUse: (prompt) => {
        if (this.storyRunning()) this.queuePrompt(prompt, 'curated');
        else el.prompt.value = prompt;
      },
    });
    el.start.addEventListener('click', () => this.start());
    el.sendPrompt.addEventListener('click', () => this.sendPrompt());
    el.prompt.addEventListener('keydown', (e) => {
      if (e.key !== 'Enter' || e.shiftKey || e.isComposing) return;
      e.preventDefault();
      if (this.storyRunning()) this.sendPrompt();
      else this.start();
    });
    el.leave.addEventListener('click', () => void this.leave());
    el.continueButton.addEventListener('click', () => this.continueStory());
    el.pause.addEventListener('change', () => this.whenLive((c) => c.setPaused(el.pause.checked)));
    el.loop.addEventListener('change', () => this.whenLive((c) => c.setLoopGeneration(el.loop.checked)));
    el.auto.addEventListener('change', () => this.whenLive((c) => c.setAutoExtension(el.auto.checked)));
    el.enhance.addEventListener('change', () => this.whenLive((c) => c.setEnhancement(el.enhance.checked)));
    el.downloadState.addEventListener('click', () => void this.download());
    el.stateFile.addEventListener('change', () => void this.loadStateFile());
    el.clearState.addEventListener('click', () => this.setLoadedState(null));
    el.imageFile.addEventListener('change', () => {
      const file = el.imageFile.files?.[0];
      el.imageFile.value = '';
      if (file) void this.pickImage(file);
    });
    el.clearImage.addEventListener('click', () => this.setImage(null));
    this.listenForDrops();
    setInterval(() => this.renderBuffer(), 250);
    renderErrors(el.errors, this.errors);
    this.render();
  }

  /** The object behind `window.livegenPlayer`. */
  debug(): LivegenPlayerDebug {
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const app = this;
    return {
      get state() {
        return app.status;
      },
      get segments() {
        return app.segments.map((s) => ({ ...s }));
      },
      get segmentCount() {
        return { story: app.completedSegments(), session: app.run?.completed ?? 0 };
      },
      get sessions() {
        return app.sessionsOpened;
      },
      get errors() {
        return app.errors.map((e) => ({ ...e }));
      },
      get notice() {
        return app.notice && { ...app.notice };
      },
      get endReason() {
        return app.endReason;
      },
      get reconnect() {
        return app.reconnect && { ...app.reconnect };
      },
      get reconnects() {
        return app.reconnects;
      },
      get pendingPrompts() {
        return app.pending.map((p) => p.prompt);
      },
      get initialImage() {
        const image = app.image;
        return image && { name: image.name, mime: image.mime, bytes: image.bytes, width: image.width, height: image.height };
      },
      get ttffMs() {
        return app.ttffMs;
      },
      get playingMs() {
        return app.playingMs;
      },
      get queue() {
        return app.queue;
      },
      get lastSnapshot() {
        return app.lastSnapshot;
      },
      get resumedFrom() {
        return app.resumedFrom;
      },
      get closeInfo() {
        return app.closeInfo;
      },
      get timeline() {
        return { ...app.timeline };
      },
      get mse() {
        return app.player?.snapshotStats() ?? null;
      },
    };
  }

  // ------------------------------------------------------------------ actions

  /** Start: a new story, from the typed prompt (and a loaded state or an initial image, if any). */
  private start(): void {
    if (this.storyRunning()) return;
    const prompt = this.el.prompt.value.trim();
    if (!prompt && !(this.el.loop.checked && this.curated.values().length > 0)) {
      this.fail('client', 'invalid_request', 'type a prompt, or turn on "Loop curated prompts" with at least one curated prompt');
      return;
    }
    this.resetStory();
    this.lastPrompt = prompt;
    this.pending = prompt ? [{ prompt, source: 'user' }] : [];
    this.player = this.createPlayer();
    const resume = this.loadedState;
    if (resume) this.setLoadedState(null);
    void this.openSession(resume, 'start');
  }

  /** Continue: after the cap (or a stop, a timeout, a failure) a new session resumes the story. */
  private continueStory(): void {
    const state = this.resumeState();
    if (this.storyRunning() || !state) return;
    this.leaving = false;
    this.endReason = null;
    this.capSegments = undefined;
    this.reconnect = null;
    this.player ??= this.createPlayer();
    // A session stopped mid-segment left part of one: the resumed session regenerates it in its place.
    this.player.discardUnfinished();
    this.notice = { kind: 'info', text: `Continuing from ${stateLabel(state)} in a new session…` };
    void this.openSession(state, 'continue');
  }

  /** Queue prompt / Enter while the story runs: the prompt runs next, before any auto-extension. */
  private sendPrompt(): void {
    const prompt = this.el.prompt.value.trim();
    if (!prompt) {
      this.fail('client', 'invalid_request', 'type a prompt first');
      return;
    }
    if (!this.storyRunning()) return;
    this.queuePrompt(prompt, 'user');
  }

  private queuePrompt(prompt: string, source: PromptSource): void {
    this.pending.push({ prompt, source });
    // Between sessions (connecting, reconnecting) it waits and goes with the next init.
    if (this.isLive()) this.whenLive((c) => c.requestSegment(prompt, { source }));
    this.render();
  }

  private async leave(): Promise<void> {
    this.leaving = true;
    if (this.reconnectTimer !== undefined) {
      this.endStory('left', { kind: 'info', text: 'Stopped while reconnecting. Continue goes on from the last state; Start begins a new story.' });
      return;
    }
    await this.client?.leave();
  }

  private async download(): Promise<void> {
    let state = this.lastSnapshot;
    const client = this.client;
    if (client && client.phase === 'open' && client.segmentsCompleted > 0) {
      try {
        state = await client.snapshot();
      } catch (err) {
        this.report(err);
      }
    }
    if (!state) {
      this.fail('client', 'no_state', 'no continuation state yet: it exists once a segment has finished');
      return;
    }
    this.lastSnapshot = state;
    downloadState(state, this.el.downloadLink);
  }

  private async loadStateFile(): Promise<void> {
    const file = this.el.stateFile.files?.[0];
    if (!file) return;
    try {
      this.setLoadedState(await readStateFile(file), file.name);
    } catch (err) {
      this.fail('client', 'invalid_state_file', err instanceof Error ? err.message : String(err));
    } finally {
      this.el.stateFile.value = '';
    }
  }

  // ------------------------------------------------------------------ initial image

  private listenForDrops(): void {
    const hasFiles = (e: DragEvent): boolean => e.dataTransfer?.types.includes('Files') ?? false;
    document.addEventListener('dragover', (e) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      if (e.dataTransfer) e.dataTransfer.dropEffect = 'copy';
      this.el.stage.classList.add('dragging');
    });
    document.addEventListener('dragleave', (e) => {
      if (e.relatedTarget === null) this.el.stage.classList.remove('dragging');
    });
    document.addEventListener('drop', (e) => {
      this.el.stage.classList.remove('dragging');
      const file = e.dataTransfer?.files[0];
      // Anything dropped on the page is taken as the initial image, never opened by the browser.
      e.preventDefault();
      if (file) void this.pickImage(file);
    });
  }

  private async pickImage(file: File): Promise<void> {
    const pick = ++this.imagePick;
    this.imageChecking = file.name;
    this.renderImage();
    try {
      const image = await readInitialImage(file);
      if (pick !== this.imagePick) return URL.revokeObjectURL(image.previewUrl);
      this.setImage(image);
    } catch (err) {
      if (pick !== this.imagePick) return;
      const message =
        err instanceof ImageRefused ? err.message : `${file.name} cannot be read: ${err instanceof Error ? err.message : String(err)}`;
      this.setImage(null);
      this.imageRefusal = message;
      this.fail('client', 'invalid_image', message);
      this.renderImage();
    }
  }

  private setImage(image: PickedImage | null): void {
    if (this.image) URL.revokeObjectURL(this.image.previewUrl);
    this.image = image;
    this.imageRefusal = null;
    this.imageChecking = null;
    this.renderImage();
  }

  // ------------------------------------------------------------------ sessions

  private createPlayer(): MsePlayer {
    return new MsePlayer(this.el.video, {
      keepBehindS: this.options.keepBehindS,
      startAheadS: this.options.startAheadS,
      onError: (message) => this.fail('media', 'media_error', message),
      onFirstFrame: () => {
        this.ttffMs = this.mark('firstFrameMs');
        this.render();
      },
      onPlaying: () => {
        this.playingMs = this.mark('playingMs');
        this.render();
      },
    });
  }

  /**
   * Opens one session of the story: a fresh one (`resumeFrom` null) or one resumed from a
   * state, and asks for its first segments.
   */
  private async openSession(resumeFrom: ContinuationState | null, kind: SessionKind): Promise<void> {
    let client: LivegenClient;
    try {
      client = new LivegenClient();
    } catch (err) {
      this.report(err);
      this.endStory('refused', { kind: 'error', text: 'This browser has no WebSocket: the page cannot connect.' });
      return;
    }
    const run: SessionRun = { client, number: ++this.sessionsOpened, kind, resumedFrom: resumeFrom, opened: false, active: false, completed: 0 };
    this.client = client;
    this.run = run;
    this.queue = null;
    this.closeInfo = null;
    this.resumedFrom = resumeFrom;
    this.setStatus(kind === 'reconnect' ? 'reconnecting' : 'connecting');
    this.wire(run);
    try {
      await client.connect(this.options.serverUrl);
    } catch (err) {
      // The close handler already decided what comes next; a reconnect attempt says so in the notice.
      if (kind !== 'reconnect') this.report(err);
      return;
    }
    if (this.run !== run) return;
    run.opened = true;
    this.everConnected = true;
    this.mark('connectedMs');
    const image = this.image;
    try {
      client.init({
        client_id: 'livegen-web',
        curated_prompts: this.curated.values(),
        loop_generation_enabled: this.el.loop.checked,
        auto_extension_enabled: this.el.auto.checked,
        enhancement_enabled: this.el.enhance.checked,
        ...(resumeFrom ? { continuation_state: resumeFrom } : {}),
        // The image starts a story; a session resumed from a state goes on from its frames instead.
        ...(image && (kind === 'start' || !resumeFrom) ? { initial_image: { mime: image.mime, name: image.name || undefined, data: image.data } } : {}),
      });
      if (this.el.pause.checked) client.setPaused(true);
      for (const request of this.firstRequests(kind)) client.requestSegment(request.prompt, { source: request.source });
    } catch (err) {
      this.report(err);
      run.refused = true;
      void client.leave();
    }
  }

  /**
   * What a new session asks for first: the prompts still waiting (at Start, the typed one);
   * a resumed session with none goes on with the story's last prompt, since the server's
   * auto-extension needs a prompt to extend. With loop generation on, the loop drives.
   */
  private firstRequests(kind: SessionKind): PendingPrompt[] {
    if (this.pending.length > 0 || kind === 'start') return [...this.pending];
    if (this.el.loop.checked || !this.lastPrompt) return [];
    const request: PendingPrompt = { prompt: this.lastPrompt, source: this.lastSource };
    this.pending.push(request);
    return [request];
  }

  private wire(run: SessionRun): void {
    const client = run.client;
    const current = (): boolean => this.run === run;
    client.on('queue_status', (m) => {
      if (!current()) return;
      this.queue = m;
      if (m.queue_depth > 0 && (this.status === 'connecting' || this.status === 'reconnecting')) this.setStatus('queued');
      this.render();
    });
    client.on('gpu_assigned', () => {
      if (!current()) return;
      run.active = true;
      this.mark('activeMs');
      if (run.kind === 'reconnect') {
        this.notice = { kind: 'info', text: `Reconnected: session ${run.number} resumes the story from ${stateLabel(run.resumedFrom)}.` };
      }
      this.setStatus('active');
    });
    client.on('ltx2_segment_start', (m) => {
      if (!current()) return;
      this.mark('firstSegmentStartMs');
      this.lastPrompt = m.prompt;
      // An enhanced prompt goes on as it is: a resumed session does not ask the LLM again.
      this.lastSource = m.source === 'curated' || m.source === 'auto_extension' || m.source === 'enhanced' ? m.source : 'user';
      // What was asked for: an enhanced segment answers the user's typed prompt.
      const enhancedRequest = m.source === 'enhanced' && m.original_prompt !== undefined;
      const asked = enhancedRequest ? { prompt: m.original_prompt, source: 'user' } : { prompt: m.prompt, source: m.source };
      const waiting = this.pending.findIndex((p) => p.prompt === asked.prompt && (asked.source === undefined || p.source === asked.source));
      if (waiting >= 0) this.pending.splice(waiting, 1);
      this.segments.push({
        session: run.number,
        segmentIdx: m.segment_idx,
        prompt: m.prompt,
        source: m.source,
        originalPrompt: m.original_prompt,
        promptProvider: m.prompt_provider,
        promptModel: m.prompt_model,
        promptLatencyMs: m.prompt_latency_ms,
        fallbackUsed: m.fallback_used ?? false,
        promptError: m.prompt_error,
        step: 0,
        totalSteps: m.total_steps,
        startedAtMs: performance.now() - this.startedAt,
        firstMediaMs: undefined,
        generationTimeMs: undefined,
        e2eLatencyMs: undefined,
        durationMs: undefined,
        ptsBaseMs: undefined,
        bytes: 0,
        chunks: 0,
        complete: false,
      });
      this.render();
    });
    client.on('session_migrated', (m) => {
      if (!current()) return;
      // A cluster moved the session to another replica: the segment that was running is
      // generated again there, so its partial media leaves the buffer and its row goes.
      this.player?.discardUnfinished();
      const unfinished = this.segments.findIndex((s) => s.session === run.number && s.segmentIdx >= m.segment_idx && !s.complete);
      if (unfinished >= 0) this.segments.splice(unfinished);
      this.notice = { kind: 'info', text: `Moved to another server (${m.to_replica}); segment ${m.segment_idx} is generated again there.` };
      this.render();
    });
    client.on('step_complete', (m) => current() && this.updateSegment(run, m.segment_idx, (s) => (s.step = m.step)));
    client.on('media_init', (m) => {
      if (!current()) return;
      this.mark('firstMediaMs');
      this.updateSegment(run, m.segment_idx, (s) => (s.firstMediaMs = performance.now() - this.startedAt - s.startedAtMs));
    });
    client.on('media', (chunk) => {
      if (!current()) return;
      this.player?.push(chunk);
      const segment = this.segmentOf(run, chunk.segmentIdx);
      if (segment) {
        segment.bytes += chunk.data.byteLength;
        segment.chunks += 1;
      }
    });
    client.on('media_segment_complete', (m) => {
      if (!current()) return;
      this.player?.segmentComplete();
      this.updateSegment(run, m.segment_idx, (s) => {
        s.durationMs = m.duration_ms;
        s.ptsBaseMs = m.pts_base_ms;
      });
    });
    client.on('ltx2_segment_complete', (m) => {
      if (!current()) return;
      run.completed += 1;
      // Progress: a reconnect round is over, and what it said is old news.
      this.reconnect = null;
      if (this.notice && this.notice.kind !== 'error') this.notice = null;
      this.updateSegment(run, m.segment_idx, (s) => {
        s.generationTimeMs = m.generation_time_ms;
        s.e2eLatencyMs = m.e2e_latency_ms;
        s.complete = true;
        s.step = s.totalSteps;
      });
      // A fresh state after every segment, so a dropped connection can resume from it.
      client.snapshot().catch((err: unknown) => {
        const code = err instanceof LivegenError ? err.code : '';
        // The session ending meanwhile is not an error: its close says what happened.
        if (current() && code !== 'connection_closed' && code !== 'not_open') this.report(err);
      });
    });
    client.on('continuation_state_snapshot', (m) => {
      if (current()) this.lastSnapshot = m.state;
    });
    client.on('ltx2_stream_complete', (m) => {
      if (current()) run.streamComplete = m.reason;
    });
    client.on('session_timeout', (m) => {
      if (current()) run.timedOutAfterS = m.timeout_seconds;
    });
    client.on('error', (e) => {
      if (!current()) return;
      const reason = e.source === 'server' ? e.reason : undefined;
      // The socket's error event before an abnormal close: the close says what happened.
      if (e.source === 'client' && e.code === 'connection_failed' && run.opened) return;
      const entry = this.report(e, reason);
      if (e.source !== 'server') return;
      if (reason === 'prompt_blocked') {
        // Not a failure of the session: it goes on, and a later close is not about this.
        this.onPromptBlocked(entry, e.prompt);
        return;
      }
      run.serverError = { error: e, entry };
      // Errors that end the session get their "next" when the close comes; these keep it open.
      entry.next = run.active ? 'The session goes on.' : '';
      if (run.active && e.code === 'gpu_unavailable') {
        // A segment request over the server's bound was dropped: it is no longer waiting.
        this.pending.pop();
        entry.next = 'The session goes on; that prompt was not queued: send it again once a segment has finished.';
      }
      this.notice = { kind: 'warning', text: this.describeError(entry) };
      this.render();
      renderErrors(this.el.errors, this.errors);
    });
    client.on('close', (info) => {
      if (current()) this.onSessionClosed(run, info);
    });
  }

  /**
   * The server's safety filter refused a prompt: a segment request (named by the error's
   * `prompt`; not queued, so it leaves the waiting list) or curated prompts (left out of
   * the server's list). The session goes on.
   */
  private onPromptBlocked(entry: PlayerError, prompt: string | undefined): void {
    if (prompt === undefined) {
      entry.next = 'The stream goes on: the server left that curated prompt out of its list, so the loop skips it. Edit it to send the list again.';
    } else {
      entry.prompt = prompt;
      const waiting = this.pending.findIndex((p) => p.prompt === prompt);
      if (waiting >= 0) this.pending.splice(waiting, 1);
      // A story whose first prompt was refused has no prompt to go on with after a reconnect.
      if (this.segments.length === 0 && this.lastPrompt === prompt) this.lastPrompt = '';
      entry.next = `The stream goes on; “${prompt}” was not generated. Rephrase it and queue it again.`;
    }
    this.notice = { kind: 'warning', text: this.describeError(entry) };
    renderErrors(this.el.errors, this.errors);
    this.render();
  }

  /** Decides what a closed session means for the story: the end, Continue, or a reconnect. */
  private onSessionClosed(run: SessionRun, info: CloseInfo): void {
    this.client = undefined;
    this.closeInfo = info;
    const error = run.serverError;
    if (this.leaving) {
      this.endStory('left', { kind: 'info', text: 'Stopped. Continue goes on from the last state; Start begins a new story.' });
    } else if (run.streamComplete === 'segment_cap') {
      this.capSegments = run.completed;
      this.endStory('segment_cap', {
        kind: 'cap',
        text:
          `Segment cap reached: the server ends a session after ${run.completed} segment${run.completed === 1 ? '' : 's'} ` +
          '(its streaming.generation_segment_cap). Press Continue to go on from the last frame in a new session.',
      });
    } else if (run.timedOutAfterS !== undefined) {
      this.endStory('timeout', {
        kind: 'warning',
        text: `The server ended the session after ${run.timedOutAfterS} s without activity (paused, or nothing left to generate). Continue goes on from the last state.`,
      });
    } else if (run.refused) {
      this.endStory('refused', { kind: 'error', text: 'The page could not start the session (see Errors). Fix it and press Start.' });
    } else if (this.shouldReconnect(run, info)) {
      if ((this.reconnect?.attempt ?? 0) >= this.reconnectAttempts) this.giveUp(run, info);
      else this.scheduleReconnect(run, info);
    } else if (error) {
      const advice = errorText(error.error.code).advice;
      error.entry.next = error.error.retryable ? `Not retried: the page has tried enough. ${advice}` : `Not retried. ${advice}`;
      this.endStory(error.error.retryable ? 'gave_up' : 'refused', { kind: 'error', text: this.describeError(error.entry) });
      renderErrors(this.el.errors, this.errors);
    } else if (!run.opened && !this.everConnected) {
      const text = errorText('connection_failed');
      this.endStory('closed', { kind: 'error', text: `${text.what} ${text.advice}` });
    } else if (info.code === 1000) {
      this.endStory('closed', { kind: 'info', text: `The server ended the session${info.reason ? ` (${info.reason})` : ''}. Continue goes on from the last state.` });
    } else {
      this.endStory('refused', { kind: 'error', text: `The server closed the connection (${this.closeText(info)}). Not retried: the same request would be refused again.` });
    }
  }

  private shouldReconnect(run: SessionRun, info: CloseInfo): boolean {
    // Nothing ever worked (wrong address, refused key): retrying would only fail again.
    if (!this.everConnected) return false;
    if (run.serverError && !run.serverError.error.retryable) return false;
    return !FINAL_CLOSES.has(info.code);
  }

  /** Out of reconnect attempts: the story ends, saying why and what the user can do. */
  private giveUp(run: SessionRun, info: CloseInfo): void {
    const why = run.serverError ? `${run.serverError.error.code}: ${run.serverError.error.message}` : this.closeText(info);
    const next = this.resumeState() ? 'Press Continue to try again from the last state, or Start to begin anew.' : 'Press Start to try again.';
    if (run.serverError) run.serverError.entry.next = `Not retried: ${this.reconnectAttempts} reconnect attempts in a row failed.`;
    const entry = this.fail('client', 'connection_failed', `gave up after ${this.reconnectAttempts} reconnect attempts (last: ${why})`, true);
    entry.next = next;
    renderErrors(this.el.errors, this.errors);
    this.endStory('gave_up', { kind: 'error', text: `Could not reconnect after ${this.reconnectAttempts} attempts (last: ${why}). ${next}` });
  }

  private scheduleReconnect(run: SessionRun, info: CloseInfo): void {
    const attempt = (this.reconnect?.attempt ?? 0) + 1;
    const delayMs = Math.min(this.reconnectBaseMs * 2 ** (attempt - 1), RECONNECT_MAX_DELAY_MS);
    // The last state the story reached; before any segment, the one this story started from.
    const resumeFrom = this.resumeState();
    this.reconnect = { attempt, maxAttempts: this.reconnectAttempts, delayMs, close: info, resumeFrom };
    // A segment cut off mid-way is made again by the resumed session, in the same place.
    this.player?.discardUnfinished();
    const plan =
      `Reconnecting in ${seconds(delayMs)} (attempt ${attempt} of ${this.reconnectAttempts}); ` +
      (resumeFrom ? `the story resumes from ${stateLabel(resumeFrom)}.` : 'no state yet, so it starts again with the same prompt.');
    const error = run.serverError;
    if (error) {
      error.entry.next = plan;
      this.notice = { kind: 'warning', text: this.describeError(error.entry) };
    } else if (!run.opened) {
      this.notice = { kind: 'warning', text: `The server cannot be reached yet (${this.closeText(info)}). ${plan}` };
    } else {
      const why = info.code === 1001 ? 'the server is restarting or shutting down' : 'the connection dropped';
      const entry = this.fail('client', 'connection_lost', `${why} (${this.closeText(info)})`, true);
      entry.next = plan;
      this.notice = { kind: 'warning', text: `Connection lost: ${why} (${this.closeText(info)}). ${plan}` };
    }
    renderErrors(this.el.errors, this.errors);
    this.setStatus('reconnecting');
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.reconnects += 1;
      void this.openSession(resumeFrom, 'reconnect');
    }, delayMs);
  }

  /** The story is over until Start (or Continue). */
  private endStory(reason: EndReason, notice: Notice): void {
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    this.reconnect = null;
    this.client = undefined;
    this.endReason = reason;
    this.notice = notice;
    this.player?.end();
    this.setStatus('ended');
  }

  private resumeState(): ContinuationState | null {
    return this.lastSnapshot ?? this.resumedFrom;
  }

  private segmentOf(run: SessionRun, idx: number): SegmentInfo | undefined {
    for (let i = this.segments.length - 1; i >= 0; i--) {
      const s = this.segments[i];
      if (s && s.session === run.number && s.segmentIdx === idx) return s;
    }
    return undefined;
  }

  private updateSegment(run: SessionRun, idx: number, change: (s: SegmentInfo) => void): void {
    const segment = this.segmentOf(run, idx);
    if (!segment) return;
    change(segment);
    this.render();
  }

  private completedSegments(): number {
    return this.segments.reduce((n, s) => n + (s.complete ? 1 : 0), 0);
  }

  // ------------------------------------------------------------------ state and view

  private resetStory(): void {
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    this.reconnect = null;
    this.reconnects = 0;
    this.player?.destroy();
    this.player = undefined;
    this.run = undefined;
    this.segments = [];
    this.queue = null;
    this.ttffMs = null;
    this.playingMs = null;
    this.closeInfo = null;
    this.resumedFrom = null;
    this.lastSnapshot = null;
    this.timeline = {};
    this.notice = null;
    this.endReason = null;
    this.capSegments = undefined;
    this.sessionsOpened = 0;
    this.everConnected = false;
    this.leaving = false;
    this.pending = [];
    this.lastPrompt = '';
    this.lastSource = 'user';
    this.startedAt = performance.now();
  }

  /** Records a milestone the first time it happens; returns its time since Start. */
  private mark(milestone: keyof SessionTimeline): number {
    this.timeline[milestone] ??= performance.now() - this.startedAt;
    return this.timeline[milestone];
  }

  private storyRunning(): boolean {
    return this.status !== 'idle' && this.status !== 'ended';
  }

  private isLive(): boolean {
    return this.client !== undefined && this.client.session !== 'none' && this.client.phase === 'open';
  }

  /** Runs `action` on the live session's client, reporting what it throws. */
  private whenLive(action: (client: LivegenClient) => void): void {
    const client = this.client;
    if (!client || !this.isLive()) return;
    try {
      action(client);
    } catch (err) {
      this.report(err);
    }
  }

  private setLoadedState(state: ContinuationState | null, fileName?: string): void {
    this.loadedState = state;
    const { loadedState, clearState } = this.el;
    loadedState.hidden = state === null;
    clearState.hidden = state === null;
    if (state) {
      const next = state.payload.nextFrameIndex;
      loadedState.textContent = `Loaded ${fileName ?? 'state'} (${state.kind}${typeof next === 'number' ? `, next frame ${next}` : ''}). Start continues from it.`;
    }
    this.el.start.textContent = state ? 'Start from saved state' : 'Start';
  }

  private setStatus(status: PlayerStatus): void {
    this.status = status;
    this.render();
  }

  private report(err: unknown, reason?: string): PlayerError {
    if (err instanceof LivegenError) return this.fail(err.source, err.code, err.message, err.retryable, reason);
    return this.fail('client', 'internal_error', err instanceof Error ? err.message : String(err));
  }

  private fail(source: PlayerError['source'], code: string, message: string, retryable = false, reason?: string): PlayerError {
    const text = errorText(code, reason);
    const entry: PlayerError = {
      at: new Date().toISOString(),
      code,
      message,
      explanation: text.what,
      next: source === 'server' ? '' : text.advice,
      retryable,
      source,
      ...(reason === undefined ? {} : { reason }),
    };
    this.errors.push(entry);
    renderErrors(this.el.errors, this.errors);
    return entry;
  }

  /** One paragraph: what happened, what the server said, what comes next. */
  private describeError(e: PlayerError): string {
    return `${e.explanation}${e.message ? ` The server said: “${e.message}”.` : ''}${e.next ? ` ${e.next}` : ''}`;
  }

  private closeText(info: CloseInfo): string {
    return `close ${info.code}${info.reason ? `: ${info.reason}` : ''}`;
  }

  private render(): void {
    const el = this.el;
    const running = this.storyRunning();
    el.status.dataset.state = this.status;
    el.status.textContent = this.statusText();
    el.start.disabled = running;
    el.sendPrompt.disabled = !running;
    el.leave.disabled = !running;
    // Not after a refusal: the same state would be refused again.
    const canContinue = this.status === 'ended' && this.endReason !== null && this.endReason !== 'refused' && this.resumeState() !== null;
    el.continueButton.hidden = !canContinue;
    el.continueButton.textContent = canContinue ? `Continue from ${stateLabel(this.resumeState())}` : 'Continue';
    renderNotice(el.notice, this.notice);
    renderPending(el.pendingPrompts, this.pending.map((p) => p.prompt));
    const q = this.queue;
    el.queue.dataset.position = q && this.status === 'queued' ? String(q.position) : '';
    el.queue.textContent =
      this.status === 'queued' && q
        ? `position ${q.position} of ${q.queue_depth} waiting (${q.position === 0 ? 'next' : `${q.position} ahead`})`
        : this.status === 'active'
          ? 'running'
          : '–';
    this.renderSegmentCount();
    el.ttff.textContent =
      this.ttffMs === null ? '–' : `${ms(this.ttffMs)} (first media after ${ms(this.timeline.firstMediaMs)}, playing after ${ms(this.playingMs)})`;
    renderSegments(el.segmentRows, this.segments);
  }

  private renderSegmentCount(): void {
    const el = this.el.segmentCount;
    const story = this.completedSegments();
    el.dataset.count = String(story);
    el.dataset.cap = this.capSegments === undefined ? '' : String(this.capSegments);
    if (this.sessionsOpened === 0) {
      el.textContent = '–';
      return;
    }
    const running = this.segments.some((s) => !s.complete && s.session === this.run?.number) ? ' (one generating)' : '';
    const perSession = this.sessionsOpened > 1 ? `; ${this.run?.completed ?? 0} in session ${this.sessionsOpened}` : '';
    const cap = this.capSegments === undefined ? '' : ` — the server's cap of ${this.capSegments} per session was reached`;
    el.textContent = `${story} done${running}${perSession}${cap}`;
  }

  private statusText(): string {
    switch (this.status) {
      case 'ended': {
        const close = this.closeInfo ? `, closed ${this.closeInfo.code}${this.closeInfo.reason ? `: ${this.closeInfo.reason}` : ''}` : '';
        return `ended${this.endReason ? ` (${END_LABEL[this.endReason]})` : ''}${close}`;
      }
      case 'active': {
        const run = this.run;
        if (!run || run.number === 1) return this.resumedFrom ? 'active (resumed from a saved state)' : 'active';
        return `active (session ${run.number}, resumed from ${stateLabel(run.resumedFrom)})`;
      }
      case 'reconnecting':
        return this.reconnect ? `reconnecting (attempt ${this.reconnect.attempt} of ${this.reconnect.maxAttempts})` : 'reconnecting';
      default:
        return this.status;
    }
  }

  private renderImage(): void {
    const { imageThumb, imageInfo, clearImage } = this.el;
    const image = this.image;
    imageThumb.hidden = image === null;
    if (image) imageThumb.src = image.previewUrl;
    else imageThumb.removeAttribute('src');
    clearImage.hidden = image === null;
    if (this.imageChecking !== null) {
      imageInfo.dataset.state = 'checking';
      imageInfo.textContent = `Checking ${this.imageChecking}…`;
    } else if (image) {
      imageInfo.dataset.state = 'accepted';
      imageInfo.textContent = `${describeImage(image)}. Accepted: the next Start begins the story from it.`;
    } else if (this.imageRefusal !== null) {
      imageInfo.dataset.state = 'refused';
      imageInfo.textContent = `Refused: ${this.imageRefusal}`;
    } else {
      imageInfo.dataset.state = 'none';
      imageInfo.textContent = '';
    }
  }

  private renderBuffer(): void {
    const stats = this.player?.snapshotStats();
    this.el.bufferInfo.textContent = stats
      ? `${stats.bufferedAheadS.toFixed(1)} s ahead, ${stats.bufferedStartS.toFixed(1)}–${stats.bufferedEndS.toFixed(1)} s kept, ${stats.stalls.length} stall(s)`
      : '–';
  }
}

/** The server to talk to: `?server=ws://…` or this page's own; `?token=KEY` is passed on as the API key. */
export function serverUrlFor(location: Location): string {
  const params = new URLSearchParams(location.search);
  return streamUrl(params.get('server') ?? location.href, params.get('token') ?? undefined);
}
