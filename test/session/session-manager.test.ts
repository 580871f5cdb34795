import { describe, it, expect } from 'vitest';
import { SessionManager, SessionRejected, SessionState, type Session } from '../../src/session/index.js';
import { fakeClock } from './fake-clock.js';

function manager(options: { maxSessions?: number; timeoutSeconds?: number; startMs?: number } = {}) {
  const time = fakeClock(options.startMs ?? 1_000);
  const m = new SessionManager({
    segmentCap: 6,
    sessionTimeoutSeconds: options.timeoutSeconds ?? 300,
    maxSessions: options.maxSessions ?? 10,
    clock: time.clock,
  });
  return { m, time };
}

function moveTo(session: Session, path: readonly SessionState[]): void {
  for (const s of path) session.transition(s);
}

describe('SessionManager construction', () => {
  it('keeps the segmentCap, sessionTimeoutSeconds and maxSessions it was given', () => {
    const m = new SessionManager({ segmentCap: 3, sessionTimeoutSeconds: 45, maxSessions: 7 });
    expect(m.segmentCap).toBe(3);
    expect(m.sessionTimeoutSeconds).toBe(45);
    expect(m.maxSessions).toBe(7);
  });

  it('defaults maxSessions to 1', () => {
    const m = new SessionManager({ segmentCap: 6, sessionTimeoutSeconds: 300 });
    expect(m.maxSessions).toBe(1);
    m.create();
    expect(() => m.create()).toThrow(SessionRejected);
  });

  it('declares segmentCap and sessionTimeoutSeconds read-only', () => {
    const m = new SessionManager({ segmentCap: 6, sessionTimeoutSeconds: 300 });
    // Type-level check (tsc): assigning the budgets must not compile. Never called.
    const tamper = (): void => {
      // @ts-expect-error segmentCap is read-only
      m.segmentCap = 1;
      // @ts-expect-error sessionTimeoutSeconds is read-only
      m.sessionTimeoutSeconds = 1;
    };
    expect(typeof tamper).toBe('function');
    expect(m.segmentCap).toBe(6);
    expect(m.sessionTimeoutSeconds).toBe(300);
  });

  it('starts empty', () => {
    expect(manager().m.size).toBe(0);
  });
});

describe('SessionManager registry', () => {
  it('create() registers a new session in the initializing state', () => {
    const { m } = manager();
    const s = m.create();
    expect(s.state).toBe(SessionState.INITIALIZING);
    expect(m.all()).toEqual([s]);
  });

  it('create() stamps sessions with the injected clock', () => {
    const { m, time } = manager({ startMs: 123_456 });
    expect(m.create().createdAt).toBe(123_456);
    time.advance(10);
    const s = m.create();
    expect(s.createdAt).toBe(123_466);
    expect(s.lastActivity).toBe(123_466);
  });

  it('create() past maxSessions throws SessionRejected and registers nothing', () => {
    const { m } = manager({ maxSessions: 2 });
    m.create();
    m.create();
    expect(() => m.create()).toThrow(SessionRejected);
    expect(m.size).toBe(2);
  });

  it('close() frees a place for a new session', () => {
    const { m } = manager({ maxSessions: 1 });
    const s = m.create();
    m.close(s.id);
    expect(() => m.create()).not.toThrow();
    expect(m.size).toBe(1);
  });

  it('keeps the handle built for each session and forgets it on close()', () => {
    const { m: plain } = manager();
    const m = plain as unknown as SessionManager<{ sessionId: string }>;
    const s = m.create((session) => ({ sessionId: session.id }));
    expect(m.handle(s.id)).toEqual({ sessionId: s.id });
    expect(m.handles()).toEqual([{ sessionId: s.id }]);
    expect(m.handle('0'.repeat(32))).toBeUndefined();
    m.close(s.id);
    expect(m.handle(s.id)).toBeUndefined();
    expect(m.all()).toEqual([]);
  });

  it('size counts registered sessions', () => {
    const { m } = manager();
    const a = m.create();
    m.create();
    m.create();
    expect(m.size).toBe(3);
    m.close(a.id);
    expect(m.size).toBe(2);
  });

  it('close() is idempotent and ignores unknown ids', () => {
    const { m } = manager();
    const a = m.create();
    const b = m.create();
    m.close(a.id);
    expect(() => m.close(a.id)).not.toThrow();
    expect(() => m.close('nope')).not.toThrow();
    expect(m.size).toBe(1);
    expect(m.all()).toContain(b);
  });

  it('all() lists the registered sessions in registration order', () => {
    const { m } = manager();
    const a = m.create();
    const b = m.create();
    expect(m.all().map((x) => x.id)).toEqual([a.id, b.id]);
  });
});

describe('SessionManager with pending inits counted apart', () => {
  it('limits sessions waiting for their init by maxPending, not maxSessions', () => {
    const m = new SessionManager({ segmentCap: 6, sessionTimeoutSeconds: 300, maxSessions: 1, maxPending: 2 });
    m.create();
    m.create();
    expect(m.pending).toBe(2);
    expect(m.registered).toBe(0);
    expect(() => m.create()).toThrow(SessionRejected);
  });

  it('counts a session as registered once confirmed, and refuses the confirmation past maxSessions', () => {
    const m = new SessionManager({ segmentCap: 6, sessionTimeoutSeconds: 300, maxSessions: 1, maxPending: 4 });
    const a = m.create();
    const b = m.create();
    m.confirm(a.id);
    expect(m.registered).toBe(1);
    expect(m.pending).toBe(1);
    expect(() => m.confirm(b.id)).toThrow(SessionRejected);
    // A refused confirmation leaves the session pending until it is closed.
    expect(m.pending).toBe(1);
    m.close(b.id);
    m.close(a.id);
    expect(m.pending).toBe(0);
    expect(m.registered).toBe(0);
  });

  it('reaps a session still initializing after the init deadline, long before the idle timeout', () => {
    let now = 0;
    const m = new SessionManager({ segmentCap: 6, sessionTimeoutSeconds: 300, maxSessions: 4, maxPending: 4, initTimeoutSeconds: 5, clock: () => now });
    const waiting = m.create();
    const live = m.create();
    m.confirm(live.id);
    live.transition(SessionState.GPU_BINDING);
    now = 5001;
    expect(m.reapTimedOut()).toEqual([waiting.id]);
  });
});

describe('SessionManager.reapTimedOut', () => {
  const TIMEOUT_S = 10;
  const TIMEOUT_MS = TIMEOUT_S * 1000;

  it('reaps a session idle strictly longer than the timeout', () => {
    const { m } = manager({ timeoutSeconds: TIMEOUT_S, startMs: 1_000 });
    const s = m.create();
    expect(m.reapTimedOut(1_000 + TIMEOUT_MS + 1)).toEqual([s.id]);
  });

  it('keeps a session idle exactly the timeout', () => {
    const { m } = manager({ timeoutSeconds: TIMEOUT_S, startMs: 1_000 });
    m.create();
    expect(m.reapTimedOut(1_000 + TIMEOUT_MS)).toEqual([]);
  });

  for (const { state, path } of [
    { state: 'initializing', path: [] },
    { state: 'queued', path: [SessionState.QUEUED] },
    { state: 'gpu_binding', path: [SessionState.GPU_BINDING] },
    { state: 'active', path: [SessionState.GPU_BINDING, SessionState.ACTIVE] },
  ])
    it(`reaps an idle session in the non-terminal state ${state}`, () => {
      const { m, time } = manager({ timeoutSeconds: TIMEOUT_S });
      const s = m.create();
      moveTo(s, path);
      expect(m.reapTimedOut(time.now() + TIMEOUT_MS + 1)).toEqual([s.id]);
    });

  for (const { state, path } of [
    { state: 'complete', path: [SessionState.GPU_BINDING, SessionState.ACTIVE, SessionState.COMPLETE] },
    { state: 'error', path: [SessionState.ERROR] },
    { state: 'timeout', path: [SessionState.QUEUED, SessionState.TIMEOUT] },
    { state: 'rejected', path: [SessionState.REJECTED] },
  ])
    it(`never reaps a session in the terminal state ${state}`, () => {
      const { m, time } = manager({ timeoutSeconds: TIMEOUT_S });
      const s = m.create();
      moveTo(s, path);
      expect(m.reapTimedOut(time.now() + 1_000 * TIMEOUT_MS)).toEqual([]);
    });

  it('keeps a session that was touched within the timeout', () => {
    const { m, time } = manager({ timeoutSeconds: TIMEOUT_S, startMs: 0 });
    const s = m.create();
    time.advance(TIMEOUT_MS - 1);
    s.touch();
    expect(m.reapTimedOut(TIMEOUT_MS + 5)).toEqual([]);
  });

  it('keeps a session whose transition refreshed its clock within the timeout', () => {
    const { m, time } = manager({ timeoutSeconds: TIMEOUT_S, startMs: 0 });
    const s = m.create();
    time.advance(TIMEOUT_MS - 1);
    s.transition(SessionState.QUEUED);
    expect(m.reapTimedOut(TIMEOUT_MS + 5)).toEqual([]);
  });

  it('uses the injected clock when no now is given', () => {
    const { m, time } = manager({ timeoutSeconds: TIMEOUT_S, startMs: 0 });
    const s = m.create();
    time.advance(TIMEOUT_MS);
    expect(m.reapTimedOut()).toEqual([]);
    time.advance(1);
    expect(m.reapTimedOut()).toEqual([s.id]);
  });

  it('returns only the idle sessions among several', () => {
    const { m, time } = manager({ timeoutSeconds: TIMEOUT_S, startMs: 0 });
    const old = m.create();
    time.advance(5_000);
    const fresh = m.create();
    time.advance(TIMEOUT_MS - 4_000);
    expect(m.reapTimedOut()).toEqual([old.id]);
    expect(m.all()).toContain(fresh);
  });

  it('only identifies timed-out sessions: it neither closes them nor changes their state', () => {
    const { m, time } = manager({ timeoutSeconds: TIMEOUT_S, startMs: 0 });
    const s = m.create();
    time.advance(TIMEOUT_MS + 1);
    expect(m.reapTimedOut()).toEqual([s.id]);
    expect(m.all()).toContain(s);
    expect(s.state).toBe(SessionState.INITIALIZING);
    expect(m.reapTimedOut()).toEqual([s.id]);
  });

  it('does not report closed sessions', () => {
    const { m, time } = manager({ timeoutSeconds: TIMEOUT_S, startMs: 0 });
    const s = m.create();
    m.close(s.id);
    time.advance(TIMEOUT_MS + 1);
    expect(m.reapTimedOut()).toEqual([]);
  });
});
