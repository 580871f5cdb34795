import { Session, SessionRejected, SessionState, isTerminal, monotonicClock, type Clock } from './session.js';

export interface SessionManagerOptions {
  /** Segments a session may generate before it completes (`generation_segment_cap`). */
  segmentCap: number;
  /** Idle seconds after which the reaper times a session out. */
  sessionTimeoutSeconds: number;
  /** Registered sessions at most; registering past it throws `SessionRejected`. Default 1, as in the reference. */
  maxSessions?: number;
  /**
   * Sessions still waiting for their init, counted apart from `maxSessions`: a session
   * is created pending and counts as registered once `confirm()` says its init arrived.
   * Without it, every session counts as registered from `create()` on, as in the reference.
   */
  maxPending?: number;
  /** Seconds a pending session may wait for its init before the reaper times it out (default: the idle timeout). */
  initTimeoutSeconds?: number;
  clock?: Clock;
}

/**
 * Where the server keeps its sessions and the handle that drives each (a connection's
 * driver), so one map answers both "which sessions exist" and "who ends this one".
 * The local implementation is `SessionManager`; a shared registry for a cluster
 * implements the same contract.
 */
export interface SessionRegistry<H> {
  /** Registers a new session in `initializing` with its handle; throws `SessionRejected` at the limit. */
  create(makeHandle?: (session: Session) => H): Session;
  /** The session's init arrived: it counts as registered now. Throws `SessionRejected` at `maxSessions`. */
  confirm(id: string): void;
  /** Unregisters a session (idempotent). */
  close(id: string): void;
  handle(id: string): H | undefined;
  /** Every handle, in registration order. */
  handles(): H[];
  /** Ids of non-terminal sessions past their timeout; the caller ends them. */
  reapTimedOut(nowMs?: number): string[];
  readonly size: number;
}

interface Entry<H> {
  session: Session;
  handle: H | undefined;
  confirmed: boolean;
}

/** Registers sessions and holds the per-process budgets (cap, timeout, max sessions). */
export class SessionManager<H = undefined> implements SessionRegistry<H> {
  readonly segmentCap: number;
  readonly sessionTimeoutSeconds: number;
  readonly maxSessions: number;
  readonly maxPending: number | undefined;
  readonly initTimeoutSeconds: number;
  private readonly clock: Clock;
  private readonly entries = new Map<string, Entry<H>>();
  private pendingCount = 0;

  constructor(options: SessionManagerOptions) {
    for (const [name, value] of [
      ['segmentCap', options.segmentCap],
      ['sessionTimeoutSeconds', options.sessionTimeoutSeconds],
      ['maxSessions', options.maxSessions ?? 1],
      ['maxPending', options.maxPending ?? 0],
      ['initTimeoutSeconds', options.initTimeoutSeconds ?? 0],
    ] as const) {
      if (!Number.isFinite(value) || value < 0) throw new RangeError(`${name} must be a non-negative number, got ${value}`);
    }
    this.segmentCap = options.segmentCap;
    this.sessionTimeoutSeconds = options.sessionTimeoutSeconds;
    this.maxSessions = options.maxSessions ?? 1;
    this.maxPending = options.maxPending;
    this.initTimeoutSeconds = options.initTimeoutSeconds ?? options.sessionTimeoutSeconds;
    this.clock = options.clock ?? monotonicClock;
  }

  /**
   * Registers a new session in `initializing`; throws `SessionRejected` at the maximum
   * (of pending sessions when `maxPending` is set, else of all sessions).
   */
  create(makeHandle?: (session: Session) => H): Session {
    if (this.maxPending === undefined) {
      if (this.entries.size >= this.maxSessions) throw new SessionRejected(`max sessions reached (${this.maxSessions})`);
    } else if (this.pendingCount >= this.maxPending) {
      throw new SessionRejected(`too many connections waiting to initialise (${this.maxPending})`);
    }
    const session = new Session(this.clock);
    const confirmed = this.maxPending === undefined;
    if (!confirmed) this.pendingCount += 1;
    const entry: Entry<H> = { session, handle: undefined, confirmed };
    this.entries.set(session.id, entry);
    entry.handle = makeHandle?.(session);
    return session;
  }

  confirm(id: string): void {
    const entry = this.entries.get(id);
    if (!entry || entry.confirmed) return;
    if (this.registered >= this.maxSessions) throw new SessionRejected(`max sessions reached (${this.maxSessions})`);
    entry.confirmed = true;
    this.pendingCount -= 1;
  }

  close(id: string): void {
    const entry = this.entries.get(id);
    if (!entry) return;
    if (!entry.confirmed) this.pendingCount -= 1;
    this.entries.delete(id);
  }

  handle(id: string): H | undefined {
    return this.entries.get(id)?.handle;
  }

  handles(): H[] {
    const out: H[] = [];
    for (const entry of this.entries.values()) if (entry.handle !== undefined) out.push(entry.handle);
    return out;
  }

  /** Every session held (pending ones included). */
  get size(): number {
    return this.entries.size;
  }

  /** Sessions whose init arrived. */
  get registered(): number {
    return this.entries.size - this.pendingCount;
  }

  /** Sessions still waiting for their init. */
  get pending(): number {
    return this.pendingCount;
  }

  /** Every held session, in registration order. */
  all(): Session[] {
    return [...this.entries.values()].map((e) => e.session);
  }

  /**
   * Ids of non-terminal sessions idle strictly longer than their timeout: the init
   * deadline for a session still initializing, the idle timeout otherwise. It only
   * identifies them; the caller sends `session_timeout` and closes.
   */
  reapTimedOut(nowMs: number = this.clock()): string[] {
    const dead: string[] = [];
    for (const [id, { session }] of this.entries) {
      if (isTerminal(session.state)) continue;
      const seconds = session.state === SessionState.INITIALIZING ? this.initTimeoutSeconds : this.sessionTimeoutSeconds;
      if (nowMs - session.lastActivity > seconds * 1000) dead.push(id);
    }
    return dead;
  }
}
