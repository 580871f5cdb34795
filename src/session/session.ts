import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { ContinuationState, StreamMode } from '../core/index.js';

/** State-machine positions of a streaming session; values are the wire strings. */
export enum SessionState {
  INITIALIZING = 'initializing',
  QUEUED = 'queued',
  GPU_BINDING = 'gpu_binding',
  ACTIVE = 'active',
  COMPLETE = 'complete',
  ERROR = 'error',
  TIMEOUT = 'timeout',
  REJECTED = 'rejected',
}

/** Milliseconds on a monotonic clock. Injectable so tests need no sleeps. */
export type Clock = () => number;
export const monotonicClock: Clock = () => performance.now();

/** The legal edges (PROTOCOL.md "Session state machine"); self-transitions are handled separately. */
const LEGAL_EDGES: Readonly<Record<SessionState, ReadonlySet<SessionState>>> = {
  [SessionState.INITIALIZING]: new Set([
    SessionState.QUEUED,
    SessionState.GPU_BINDING,
    SessionState.REJECTED,
    SessionState.ERROR,
  ]),
  [SessionState.QUEUED]: new Set([
    SessionState.GPU_BINDING,
    SessionState.ERROR,
    SessionState.TIMEOUT,
    SessionState.REJECTED,
  ]),
  [SessionState.GPU_BINDING]: new Set([SessionState.ACTIVE, SessionState.ERROR, SessionState.TIMEOUT]),
  [SessionState.ACTIVE]: new Set([SessionState.ACTIVE, SessionState.COMPLETE, SessionState.ERROR, SessionState.TIMEOUT]),
  [SessionState.COMPLETE]: new Set(),
  [SessionState.ERROR]: new Set(),
  [SessionState.TIMEOUT]: new Set(),
  [SessionState.REJECTED]: new Set(),
};

export const TERMINAL_STATES: ReadonlySet<SessionState> = new Set([
  SessionState.COMPLETE,
  SessionState.ERROR,
  SessionState.TIMEOUT,
  SessionState.REJECTED,
]);

export function isTerminal(state: SessionState): boolean {
  return TERMINAL_STATES.has(state);
}

/** True when `from → to` is an edge of the table or a self-transition. */
export function canTransition(from: SessionState, to: SessionState): boolean {
  return from === to || LEGAL_EDGES[from].has(to);
}

export class InvalidSessionTransition extends Error {
  override readonly name = 'InvalidSessionTransition';
  constructor(
    readonly from: SessionState,
    readonly to: SessionState,
  ) {
    super(`${from} -> ${to} is not a valid session transition`);
  }
}

export class SessionRejected extends Error {
  override readonly name = 'SessionRejected';
}

/** The continuation state a session holds (the shared definition in src/core). */
export type SessionContinuationState = ContinuationState;
/** How a session's media travels (the shared definition in src/core). */
export type SessionStreamMode = StreamMode;

/**
 * One connection's session. Only `transition` changes `state`; everything else is plain
 * data the driver keeps up to date.
 */
export class Session {
  readonly id: string = randomBytes(16).toString('hex');
  private _state: SessionState = SessionState.INITIALIZING;
  readonly createdAt: number;
  lastActivity: number;
  clientId: string | undefined = undefined;
  preset: string | undefined = undefined;
  presetLabel: string | undefined = undefined;
  curatedPrompts: string[] = [];
  /** 0-based count of finished segments. */
  segmentIdx = 0;
  enhancementEnabled = false;
  autoExtensionEnabled = false;
  loopGenerationEnabled = false;
  singleClipMode = false;
  generationPaused = false;
  streamMode: SessionStreamMode = 'av_fmp4';
  gpuId: number | undefined = undefined;
  continuationState: SessionContinuationState | undefined = undefined;
  metadata: Record<string, unknown> = {};

  constructor(private readonly clock: Clock = monotonicClock) {
    this.createdAt = clock();
    this.lastActivity = this.createdAt;
  }

  get state(): SessionState {
    return this._state;
  }

  /**
   * Moves to `target` if the edge is legal (or `target` is the current state, which is
   * always accepted as a no-op). Throws `InvalidSessionTransition` otherwise, leaving state
   * and clock untouched.
   */
  transition(target: SessionState): void {
    if (!canTransition(this._state, target)) throw new InvalidSessionTransition(this._state, target);
    this._state = target;
    this.lastActivity = this.clock();
  }

  /** Records activity (a client frame, segment progress) without changing state. */
  touch(): void {
    this.lastActivity = this.clock();
  }

  /** True while the session is in the `active` state (bound and streaming). */
  isActive(): boolean {
    return this._state === SessionState.ACTIVE;
  }

  isTerminal(): boolean {
    return isTerminal(this._state);
  }

  segmentCapReached(cap: number): boolean {
    return this.segmentIdx >= cap;
  }
}
