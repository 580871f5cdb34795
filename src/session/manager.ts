import { Session, SessionRejected, isTerminal, monotonicClock, type Clock } from './session.js';

export interface SessionManagerOptions {
  /** Segments a session may generate before it completes (`generation_segment_cap`). */
  segmentCap: number;
  /** Idle seconds after which the reaper times a session out. */
  sessionTimeoutSeconds: number;
  /** Registered sessions at most; `create()` past it throws `SessionRejected`. Default 1, as in the reference. */
  maxSessions?: number;
  clock?: Clock;
}

/** Registers sessions and holds the per-process budgets (cap, timeout, max sessions). */
export class SessionManager {
  readonly segmentCap: number;
  readonly sessionTimeoutSeconds: number;
  readonly maxSessions: number;
  private readonly clock: Clock;
  private readonly sessions = new Map<string, Session>();

  constructor(options: SessionManagerOptions) {
    for (const [name, value] of [
      ['segmentCap', options.segmentCap],
      ['sessionTimeoutSeconds', options.sessionTimeoutSeconds],
      ['maxSessions', options.maxSessions ?? 1],
    ] as const) {
      if (!Number.isFinite(value) || value < 0) throw new RangeError(`${name} must be a non-negative number, got ${value}`);
    }
    this.segmentCap = options.segmentCap;
    this.sessionTimeoutSeconds = options.sessionTimeoutSeconds;
    this.maxSessions = options.maxSessions ?? 1;
    this.clock = options.clock ?? monotonicClock;
  }

  /** Registers a new session in `initializing`; throws `SessionRejected` at the maximum. */
  create(): Session {
    if (this.sessions.size >= this.maxSessions) {
      throw new SessionRejected(`max sessions reached (${this.maxSessions})`);
    }
    const session = new Session(this.clock);
    this.sessions.set(session.id, session);
    return session;
  }

  get(id: string): Session | undefined {
    return this.sessions.get(id);
  }

  has(id: string): boolean {
    return this.sessions.has(id);
  }

  /** Unregisters a session (idempotent). */
  close(id: string): void {
    this.sessions.delete(id);
  }

  get size(): number {
    return this.sessions.size;
  }

  /** Sessions currently in the `active` state. */
  activeSessions(): Session[] {
    return [...this.sessions.values()].filter((s) => s.isActive());
  }

  /** Every registered session, in registration order. */
  all(): Session[] {
    return [...this.sessions.values()];
  }

  /**
   * Ids of non-terminal sessions idle strictly longer than the timeout. It only
   * identifies them; the caller sends `session_timeout` and closes.
   */
  reapTimedOut(nowMs: number = this.clock()): string[] {
    const limitMs = this.sessionTimeoutSeconds * 1000;
    const dead: string[] = [];
    for (const [id, session] of this.sessions) {
      if (isTerminal(session.state)) continue;
      if (nowMs - session.lastActivity > limitMs) dead.push(id);
    }
    return dead;
  }
}
