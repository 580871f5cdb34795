import type { CloseInfo, ContinuationState, QueueStatus } from '../../src/client/index.js';
import type { MseStats } from './mse-player.js';

/**
 * Where the page stands. `reconnecting`: the connection dropped and the page is about to
 * open (or is opening) a new session that resumes the story.
 */
export type PlayerStatus = 'idle' | 'connecting' | 'queued' | 'active' | 'reconnecting' | 'ended';

/**
 * Why the story stopped: `left` (Stop), `segment_cap` (the server's cap; Continue goes on),
 * `timeout` (idle past the server's timeout), `refused` (an error not worth retrying),
 * `gave_up` (reconnecting failed too often), `closed` (any other end).
 */
export type EndReason = 'left' | 'segment_cap' | 'timeout' | 'refused' | 'gave_up' | 'closed';

/** What the page knows about one segment. Times in ms; `atMs` fields count from the Start click. */
export interface SegmentInfo {
  /** 1 for the first session of the story, 2 for the session Continue or a reconnect opened, … */
  session: number;
  segmentIdx: number;
  /** The prompt generated: what the user typed, or the LLM's text (`source` `enhanced`, an LLM auto-extension). */
  prompt: string;
  /** `user`, `curated`, `enhanced` (the server's LLM rewrote the typed prompt), `auto_extension`. */
  source: string | undefined;
  /**
   * What the LLM started from, when the server's prompt layer had a hand in it: the typed
   * prompt (enhancement) or the last prompt (auto-extension).
   */
  originalPrompt: string | undefined;
  /** Who wrote `prompt`, and how long it took (the LLM provider's name, its model). */
  promptProvider: string | undefined;
  promptModel: string | undefined;
  promptLatencyMs: number | undefined;
  /** The LLM failed, timed out or wrote a blocked prompt: `prompt` is the original (`promptError` says why). */
  fallbackUsed: boolean;
  promptError: string | undefined;
  step: number;
  totalSteps: number;
  startedAtMs: number;
  /** From `ltx2_segment_start` to `media_init`. */
  firstMediaMs: number | undefined;
  generationTimeMs: number | undefined;
  e2eLatencyMs: number | undefined;
  durationMs: number | undefined;
  ptsBaseMs: number | undefined;
  bytes: number;
  chunks: number;
  complete: boolean;
}

export interface PlayerError {
  at: string;
  code: string;
  /** The text as it came: the server's `message`, or what the client saw. */
  message: string;
  /** What happened, in plain words (from the code). */
  explanation: string;
  /** What the page does about it, or what the user can do. */
  next: string;
  retryable: boolean;
  source: 'server' | 'client' | 'media';
  /** The server's `reason`, when the code alone does not say (`prompt_blocked`). */
  reason?: string;
  /** The prompt it concerns (a prompt the safety filter blocked), when the page knows it. */
  prompt?: string;
}

/** The one line the page shows above everything else: what is going on now. */
export interface Notice {
  kind: 'info' | 'warning' | 'error' | 'cap';
  text: string;
}

/** The reconnect in progress. */
export interface ReconnectInfo {
  /** 1-based attempt of this round. */
  attempt: number;
  maxAttempts: number;
  delayMs: number;
  /** Why: the close that triggered it. */
  close: CloseInfo | null;
  /** The state the next session resumes from; null starts afresh with the same prompt. */
  resumeFrom: ContinuationState | null;
}

/** The initial image picked for the next Start. */
export interface PickedImageInfo {
  name: string;
  mime: string;
  bytes: number;
  width: number;
  height: number;
}

/** Milestones of the current session in ms since the Start click: where the time to first frame goes. */
export interface SessionTimeline {
  connectedMs?: number;
  activeMs?: number;
  firstSegmentStartMs?: number;
  firstMediaMs?: number;
  firstFrameMs?: number;
  playingMs?: number;
}

/** `window.livegenPlayer`: the page's state, read-only, for tests and for poking around. */
export interface LivegenPlayerDebug {
  readonly state: PlayerStatus;
  /** Every segment of the story, across its sessions. */
  readonly segments: SegmentInfo[];
  /** Segments completed in the story, and in the current (or last) session. */
  readonly segmentCount: { story: number; session: number };
  /** Sessions the story has used so far (1 + continues + reconnects that got through). */
  readonly sessions: number;
  readonly errors: PlayerError[];
  readonly notice: Notice | null;
  readonly endReason: EndReason | null;
  readonly reconnect: ReconnectInfo | null;
  /** Reconnects made in this story (sessions opened to resume after a drop). */
  readonly reconnects: number;
  /** User prompts sent (or waiting for the next session) that have not started yet. */
  readonly pendingPrompts: string[];
  readonly initialImage: PickedImageInfo | null;
  /** Start click → first video frame presented. */
  readonly ttffMs: number | null;
  /** Start click → playback running. */
  readonly playingMs: number | null;
  readonly queue: QueueStatus | null;
  readonly lastSnapshot: ContinuationState | null;
  /** The state the current session was started from, if any. */
  readonly resumedFrom: ContinuationState | null;
  readonly closeInfo: CloseInfo | null;
  readonly timeline: SessionTimeline;
  readonly mse: MseStats | null;
}
