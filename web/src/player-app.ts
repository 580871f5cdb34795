import {
  LivegenClient,
  LivegenError,
  streamUrl,
  type CloseInfo,
  type ContinuationState,
  type QueueStatus,
} from '../../src/client/index.js';
import { CuratedPrompts } from './curated-prompts.js';
import type { LivegenPlayerDebug, PlayerError, PlayerStatus, SegmentInfo, SessionTimeline } from './model.js';
import { MsePlayer } from './mse-player.js';
import { downloadState, readStateFile } from './state-file.js';
import { ms, renderErrors, renderSegments, type PageElements } from './view.js';

export interface PlayerAppOptions {
  /** The stream endpoint (default: this page's server). */
  serverUrl: string;
  keepBehindS?: number;
  startAheadS?: number;
}

const DEFAULT_CURATED = [
  'a paper boat drifting down a rainy street at dusk',
  'the boat reaches a canal lit by lanterns',
  'morning fog lifts over the quiet harbour',
];

/**
 * The player page: one session at a time. Start connects, sends the init (toggles,
 * curated prompts, and a loaded state to resume from) and the prompt; media goes to
 * the MSE player; every server message updates the view.
 */
export class PlayerApp {
  private client: LivegenClient | undefined;
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
  private endNote = '';
  private readonly curated: CuratedPrompts;

  constructor(
    private readonly el: PageElements,
    private readonly options: PlayerAppOptions,
  ) {
    el.video.muted = true;
    this.curated = new CuratedPrompts(el.curatedList, el.curatedNew, el.curatedAdd, DEFAULT_CURATED, {
      onChange: (prompts) => this.whenLive((c) => c.setSeedPrompts(prompts)),
      onUse: (prompt) => {
        if (this.isLive()) this.whenLive((c) => c.requestSegment(prompt, { source: 'curated' }));
        else el.prompt.value = prompt;
      },
    });
    el.start.addEventListener('click', () => void this.start());
    el.sendPrompt.addEventListener('click', () => this.sendPrompt());
    el.leave.addEventListener('click', () => void this.leave());
    el.pause.addEventListener('change', () => this.whenLive((c) => c.setPaused(el.pause.checked)));
    el.loop.addEventListener('change', () => this.whenLive((c) => c.setLoopGeneration(el.loop.checked)));
    el.auto.addEventListener('change', () => this.whenLive((c) => c.setAutoExtension(el.auto.checked)));
    el.downloadState.addEventListener('click', () => void this.download());
    el.stateFile.addEventListener('change', () => void this.loadStateFile());
    el.clearState.addEventListener('click', () => this.setLoadedState(null));
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
      get errors() {
        return [...app.errors];
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

  private async start(): Promise<void> {
    if (this.client) return;
    const prompt = this.el.prompt.value.trim();
    const curated = this.curated.values();
    if (!prompt && !(this.el.loop.checked && curated.length > 0)) {
      this.fail('client', 'invalid_request', 'type a prompt, or turn on "Loop curated prompts" with at least one curated prompt');
      return;
    }
    this.resetSession();
    const client = new LivegenClient();
    this.client = client;
    this.setStatus('connecting');
    const player = new MsePlayer(this.el.video, {
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
    this.player = player;
    this.wire(client, player);
    try {
      await client.connect(this.options.serverUrl);
    } catch (err) {
      this.report(err);
      return;
    }
    this.mark('connectedMs');
    const resume = this.loadedState;
    try {
      client.init({
        client_id: 'livegen-web',
        curated_prompts: curated,
        loop_generation_enabled: this.el.loop.checked,
        auto_extension_enabled: this.el.auto.checked,
        ...(resume ? { continuation_state: resume } : {}),
      });
      if (this.el.pause.checked) client.setPaused(true);
      if (prompt) client.requestSegment(prompt);
    } catch (err) {
      this.report(err);
      void client.leave();
      return;
    }
    if (resume) {
      this.resumedFrom = resume;
      this.setLoadedState(null);
    }
  }

  private sendPrompt(): void {
    const prompt = this.el.prompt.value.trim();
    if (!prompt) {
      this.fail('client', 'invalid_request', 'type a prompt first');
      return;
    }
    this.whenLive((c) => c.requestSegment(prompt));
  }

  private async leave(): Promise<void> {
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

  // ------------------------------------------------------------------ session events

  private wire(client: LivegenClient, player: MsePlayer): void {
    const current = (): boolean => this.client === client;
    client.on('queue_status', (m) => {
      if (!current()) return;
      this.queue = m;
      if (m.queue_depth > 0 && this.status === 'connecting') this.setStatus('queued');
      this.render();
    });
    client.on('gpu_assigned', () => {
      if (!current()) return;
      this.mark('activeMs');
      this.setStatus('active');
    });
    client.on('ltx2_segment_start', (m) => {
      if (!current()) return;
      this.mark('firstSegmentStartMs');
      this.segments.push({
        segmentIdx: m.segment_idx,
        prompt: m.prompt,
        source: m.source,
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
    client.on('step_complete', (m) => this.updateSegment(m.segment_idx, (s) => (s.step = m.step)));
    client.on('media_init', (m) => {
      if (!current()) return;
      this.mark('firstMediaMs');
      this.updateSegment(m.segment_idx, (s) => (s.firstMediaMs = performance.now() - this.startedAt - s.startedAtMs));
    });
    client.on('media', (chunk) => {
      if (!current()) return;
      player.push(chunk);
      const segment = this.segments.find((s) => s.segmentIdx === chunk.segmentIdx);
      if (segment) {
        segment.bytes += chunk.data.byteLength;
        segment.chunks += 1;
      }
    });
    client.on('media_segment_complete', (m) =>
      this.updateSegment(m.segment_idx, (s) => {
        s.durationMs = m.duration_ms;
        s.ptsBaseMs = m.pts_base_ms;
      }),
    );
    client.on('ltx2_segment_complete', (m) => {
      this.updateSegment(m.segment_idx, (s) => {
        s.generationTimeMs = m.generation_time_ms;
        s.e2eLatencyMs = m.e2e_latency_ms;
        s.complete = true;
        s.step = s.totalSteps;
      });
      // Keep a fresh state so it can be downloaded even after the session ends.
      if (current()) {
        client.snapshot().then(
          (state) => (this.lastSnapshot = state),
          (err: unknown) => this.report(err),
        );
      }
    });
    client.on('ltx2_stream_complete', (m) => {
      if (!current()) return;
      this.endNote = `stream complete: ${m.reason}`;
      this.render();
    });
    client.on('session_timeout', (m) => {
      if (!current()) return;
      this.endNote = `session timed out after ${m.timeout_seconds} s idle`;
      this.render();
    });
    client.on('error', (e) => current() && this.report(e));
    client.on('close', (info) => {
      if (!current()) return;
      this.closeInfo = info;
      // Ends the server explains come with an error or notice frame; a dropped connection does not.
      if (info.code === 1006 || (!info.wasClean && info.code !== 1000)) {
        this.fail('client', 'connection_closed', `the connection was lost (close ${info.code}${info.reason ? `: ${info.reason}` : ''})`, true);
      }
      this.client = undefined;
      player.end();
      this.setStatus('ended');
    });
  }

  private updateSegment(idx: number, change: (s: SegmentInfo) => void): void {
    const segment = this.segments.find((s) => s.segmentIdx === idx);
    if (!segment) return;
    change(segment);
    this.render();
  }

  // ------------------------------------------------------------------ state and view

  private resetSession(): void {
    this.player?.destroy();
    this.player = undefined;
    this.segments = [];
    this.queue = null;
    this.ttffMs = null;
    this.playingMs = null;
    this.closeInfo = null;
    this.resumedFrom = null;
    this.timeline = {};
    this.endNote = '';
    this.startedAt = performance.now();
  }

  /** Records a milestone the first time it happens; returns its time since Start. */
  private mark(milestone: keyof SessionTimeline): number {
    this.timeline[milestone] ??= performance.now() - this.startedAt;
    return this.timeline[milestone];
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

  private report(err: unknown): void {
    if (err instanceof LivegenError) this.fail(err.source, err.code, err.message, err.retryable);
    else this.fail('client', 'internal_error', err instanceof Error ? err.message : String(err));
  }

  private fail(source: PlayerError['source'], code: string, message: string, retryable = false): void {
    this.errors.push({ at: new Date().toISOString(), code, message, retryable, source });
    renderErrors(this.el.errors, this.errors);
  }

  private render(): void {
    const el = this.el;
    const live = this.client !== undefined;
    el.status.dataset.state = this.status;
    el.status.textContent = this.statusText();
    el.start.disabled = live;
    el.sendPrompt.disabled = !live;
    el.leave.disabled = !live;
    const q = this.queue;
    el.queue.dataset.position = q && this.status === 'queued' ? String(q.position) : '';
    el.queue.textContent =
      this.status === 'queued' && q
        ? `position ${q.position} of ${q.queue_depth} waiting (${q.position === 0 ? 'next' : `${q.position} ahead`})`
        : this.status === 'active'
          ? 'running'
          : '–';
    el.ttff.textContent =
      this.ttffMs === null ? '–' : `${ms(this.ttffMs)} (first media after ${ms(this.timeline.firstMediaMs)}, playing after ${ms(this.playingMs)})`;
    renderSegments(el.segmentRows, this.segments);
  }

  private statusText(): string {
    switch (this.status) {
      case 'ended': {
        const close = this.closeInfo ? `closed ${this.closeInfo.code}${this.closeInfo.reason ? `: ${this.closeInfo.reason}` : ''}` : '';
        return ['ended', this.endNote, close].filter(Boolean).join(', ');
      }
      case 'active':
        return this.resumedFrom ? 'active (resumed from a saved state)' : 'active';
      default:
        return this.status;
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
