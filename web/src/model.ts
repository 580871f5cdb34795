import type { CloseInfo, ContinuationState, QueueStatus } from '../../src/client/index.js';
import type { MseStats } from './mse-player.js';

export type PlayerStatus = 'idle' | 'connecting' | 'queued' | 'active' | 'ended';

/** What the page knows about one segment. Times in ms; `atMs` fields count from the Start click. */
export interface SegmentInfo {
  segmentIdx: number;
  prompt: string;
  source: string | undefined;
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
  message: string;
  retryable: boolean;
  source: 'server' | 'client' | 'media';
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
  readonly segments: SegmentInfo[];
  readonly errors: PlayerError[];
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
