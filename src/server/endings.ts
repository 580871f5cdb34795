/**
 * How a session can end, as a table: for each way, the frames the client is told, the
 * terminal state the session moves to, the close code, and what the error metric counts.
 * The driver decides *which* ending applies; this table says what that ending *is*.
 */
import { buildServerMessage, CloseCode, ErrorCode, errorMessage, StreamCompleteReason, type ServerMessage } from '../protocol/index.js';
import { SessionState } from '../session/index.js';
import type { WireError } from './wire-errors.js';

export type Ending =
  /** The session generated its segment cap. */
  | { kind: 'segment_cap' }
  /** No activity for the idle timeout (or no init within the init deadline). */
  | { kind: 'timeout'; timeoutSeconds: number }
  /** The client closed or vanished. */
  | { kind: 'left' }
  /** Refused before it started: a bad opening frame, a preset not served, no room. */
  | { kind: 'rejected'; code: ErrorCode; message: string; close: number }
  /** Waited in the queue past the queue timeout. */
  | { kind: 'queue_timeout'; message: string }
  /** Something failed while serving it (generation, media, store, a bug). */
  | { kind: 'failed'; error: WireError }
  /** The client sent a frame larger than allowed. */
  | { kind: 'too_large'; message: string }
  /** The client stopped reading: its send backlog stalled or passed the hard ceiling. */
  | { kind: 'slow_client'; message: string }
  /** The server is shutting down. */
  | { kind: 'shutdown' };

export type EndingKind = Ending['kind'];

export interface EndingSpec<E extends Ending> {
  /** Frames sent before the close, in order. */
  frames(ending: E): ServerMessage[];
  /** The terminal state for a session currently in `from`; undefined leaves the state as it is. */
  state(from: SessionState): SessionState | undefined;
  /** Close frame; none for a client that already left. */
  close?: (ending: E) => { code: number; reason: string };
  /** Drop the TCP connection this long after the close frame (for a peer that will not answer it). */
  dropAfterMs?: number;
  /** The `livegen_errors_total{code}` label, if this ending counts as an error. */
  metric?: (ending: E) => string | undefined;
  /**
   * The client may want to go on from where the story stopped: the last good continuation
   * state goes out before the close, so "retryable" can continue and a capped session can
   * be resumed in a new one.
   */
  offersState?: (ending: E) => boolean;
}

type EndingTable = { [K in EndingKind]: EndingSpec<Extract<Ending, { kind: K }>> };

const streamComplete = (reason: StreamCompleteReason): ServerMessage => buildServerMessage('ltx2_stream_complete', { reason });

/** Only an active session can complete; one that ends earlier keeps the state it reached. */
const completeIfActive = (from: SessionState): SessionState | undefined => (from === SessionState.ACTIVE ? SessionState.COMPLETE : undefined);

/** Before its init a session can only be rejected (the table has no initializing → timeout/error edge). */
const unlessInitializing =
  (target: SessionState) =>
  (from: SessionState): SessionState =>
    from === SessionState.INITIALIZING ? SessionState.REJECTED : target;

export const ENDINGS: EndingTable = {
  segment_cap: {
    frames: () => [streamComplete(StreamCompleteReason.SEGMENT_CAP)],
    state: () => SessionState.COMPLETE,
    offersState: () => true,
    close: () => ({ code: CloseCode.NORMAL, reason: 'segment cap reached' }),
  },
  timeout: {
    frames: (e) => [buildServerMessage('session_timeout', { timeout_seconds: e.timeoutSeconds })],
    state: unlessInitializing(SessionState.TIMEOUT),
    close: () => ({ code: CloseCode.NORMAL, reason: 'session timeout' }),
    metric: () => 'session_timeout',
  },
  left: {
    frames: () => [],
    state: completeIfActive,
  },
  rejected: {
    frames: (e) => [errorMessage(e.code, e.message, e.code === ErrorCode.SESSION_REJECTED)],
    state: () => SessionState.REJECTED,
    close: (e) => ({ code: e.close, reason: e.code }),
    metric: (e) => e.code,
  },
  queue_timeout: {
    frames: (e) => [errorMessage(ErrorCode.GPU_UNAVAILABLE, e.message, true)],
    state: () => SessionState.TIMEOUT,
    offersState: () => true,
    close: () => ({ code: CloseCode.TRY_AGAIN_LATER, reason: 'no worker available' }),
    metric: () => ErrorCode.GPU_UNAVAILABLE,
  },
  failed: {
    frames: (e) => [errorMessage(e.error.code, e.error.message, e.error.retryable), streamComplete(StreamCompleteReason.ERROR)],
    state: () => SessionState.ERROR,
    offersState: (e) => e.error.retryable,
    // A state the generator cannot read is the client's data (1003); anything else is the server's (1011).
    close: (e) => ({ code: e.error.code === ErrorCode.INVALID_MESSAGE ? CloseCode.UNSUPPORTED_DATA : CloseCode.INTERNAL_ERROR, reason: e.error.code }),
    metric: (e) => e.error.code,
  },
  too_large: {
    frames: (e) => [errorMessage(ErrorCode.INVALID_MESSAGE, e.message)],
    state: unlessInitializing(SessionState.ERROR),
    close: () => ({ code: CloseCode.MESSAGE_TOO_BIG, reason: 'frame too large' }),
    metric: () => ErrorCode.INVALID_MESSAGE,
  },
  slow_client: {
    // It is not reading, so the notice may never arrive; the TCP connection goes soon after.
    frames: (e) => [errorMessage(ErrorCode.INTERNAL_ERROR, e.message, true)],
    state: () => SessionState.ERROR,
    close: () => ({ code: CloseCode.TRY_AGAIN_LATER, reason: 'client too slow' }),
    dropAfterMs: 1000,
    metric: () => 'slow_client',
  },
  shutdown: {
    frames: () => [streamComplete(StreamCompleteReason.STOP_REQUESTED)],
    state: completeIfActive,
    close: () => ({ code: CloseCode.GOING_AWAY, reason: 'server shutting down' }),
    offersState: () => true,
  },
};

/** The spec of `ending`, typed for it. */
export function endingSpec<E extends Ending>(ending: E): EndingSpec<E> {
  return ENDINGS[ending.kind] as unknown as EndingSpec<E>;
}

/**
 * Why every wait in a session's story stops: the lifetime signal's reason. Not an Error
 * on purpose: thousands of sessions can end in one turn, and a stack trace apiece is
 * time the event loop does not have.
 */
export class SessionEnded {
  readonly name = 'SessionEnded';
  constructor(readonly reason = 'ended') {}
}
