import { describe, it, expect } from 'vitest';
import { Session, SessionState, InvalidSessionTransition, SessionRejected } from '../../src/session/index.js';
import { fakeClock } from './fake-clock.js';

/**
 * The state machine as PROTOCOL.md ("Session state machine") writes it, copied by hand:
 * the tests check the implementation against this table, never against itself.
 */
const WIRE_STATES = [
  'initializing',
  'queued',
  'gpu_binding',
  'active',
  'complete',
  'error',
  'timeout',
  'rejected',
] as const;
type Wire = (typeof WIRE_STATES)[number];

const LEGAL_TARGETS: Record<Wire, readonly Wire[]> = {
  initializing: ['queued', 'gpu_binding', 'rejected', 'error'],
  queued: ['gpu_binding', 'error', 'timeout', 'rejected'],
  gpu_binding: ['active', 'error', 'timeout'],
  active: ['active', 'complete', 'error', 'timeout'],
  complete: [],
  error: [],
  timeout: [],
  rejected: [],
};

const TERMINAL: readonly Wire[] = ['complete', 'error', 'timeout', 'rejected'];

/** A legal walk from `initializing` to each state, used to put a fresh session there. */
const PATH_TO: Record<Wire, readonly Wire[]> = {
  initializing: [],
  queued: ['queued'],
  gpu_binding: ['gpu_binding'],
  active: ['gpu_binding', 'active'],
  complete: ['gpu_binding', 'active', 'complete'],
  error: ['error'],
  timeout: ['queued', 'timeout'],
  rejected: ['rejected'],
};

/** The enum member whose wire value is `wire`. */
function st(wire: Wire): SessionState {
  const member = Object.values(SessionState).find((v) => v === wire);
  if (member === undefined) throw new Error(`SessionState has no member with value ${wire}`);
  return member;
}

function sessionIn(wire: Wire) {
  const time = fakeClock();
  const session = new Session(time.clock);
  for (const step of PATH_TO[wire]) {
    time.advance(1);
    session.transition(st(step));
  }
  expect(session.state).toBe(wire);
  return { session, time };
}

describe('session module exports', () => {
  it('exports exactly its runtime names: the session, its states and manager, and admission', async () => {
    const mod = await import('../../src/session/index.js');
    expect(Object.keys(mod).sort()).toEqual(
      ['AdmissionClosed', 'AdmissionTimeout', 'InvalidSessionTransition', 'LocalAdmission', 'QueueFull', 'Session', 'SessionManager', 'SessionRejected', 'SessionState'].sort(),
    );
  });

  it('InvalidSessionTransition and SessionRejected are Error subclasses', () => {
    expect(new InvalidSessionTransition(SessionState.QUEUED, SessionState.ACTIVE)).toBeInstanceOf(Error);
    expect(new SessionRejected('full')).toBeInstanceOf(Error);
  });
});

describe('SessionState', () => {
  it('has exactly the members INITIALIZING, QUEUED, GPU_BINDING, ACTIVE, COMPLETE, ERROR, TIMEOUT, REJECTED', () => {
    expect(Object.keys(SessionState).sort()).toEqual(
      ['INITIALIZING', 'QUEUED', 'GPU_BINDING', 'ACTIVE', 'COMPLETE', 'ERROR', 'TIMEOUT', 'REJECTED'].sort(),
    );
  });

  it('uses the lower-case wire strings as member values', () => {
    expect({ ...SessionState }).toEqual({
      INITIALIZING: 'initializing',
      QUEUED: 'queued',
      GPU_BINDING: 'gpu_binding',
      ACTIVE: 'active',
      COMPLETE: 'complete',
      ERROR: 'error',
      TIMEOUT: 'timeout',
      REJECTED: 'rejected',
    });
  });
});

describe('Session fields', () => {
  it('starts in the initializing state', () => {
    expect(new Session(fakeClock().clock).state).toBe(SessionState.INITIALIZING);
  });

  it('has an id of 32 lower-case hex characters', () => {
    expect(new Session(fakeClock().clock).id).toMatch(/^[0-9a-f]{32}$/);
  });

  it('gives every session a different id', () => {
    const ids = new Set(Array.from({ length: 200 }, () => new Session(fakeClock().clock).id));
    expect(ids.size).toBe(200);
  });

  it('defaults streamMode to av_fmp4 and segmentIdx to 0', () => {
    const s = new Session(fakeClock().clock);
    expect(s.streamMode).toBe('av_fmp4');
    expect(s.segmentIdx).toBe(0);
  });

  it('defaults every flag to false', () => {
    const s = new Session(fakeClock().clock);
    expect({
      enhancementEnabled: s.enhancementEnabled,
      autoExtensionEnabled: s.autoExtensionEnabled,
      loopGenerationEnabled: s.loopGenerationEnabled,
      singleClipMode: s.singleClipMode,
      generationPaused: s.generationPaused,
    }).toEqual({
      enhancementEnabled: false,
      autoExtensionEnabled: false,
      loopGenerationEnabled: false,
      singleClipMode: false,
      generationPaused: false,
    });
  });

  it('defaults curatedPrompts to an empty list and metadata to an empty map', () => {
    const s = new Session(fakeClock().clock);
    expect(s.curatedPrompts).toEqual([]);
    expect(s.metadata).toEqual({});
  });

  it('does not share curatedPrompts or metadata between sessions', () => {
    const a = new Session(fakeClock().clock);
    const b = new Session(fakeClock().clock);
    a.curatedPrompts.push('x');
    a.metadata.k = 1;
    expect(b.curatedPrompts).toEqual([]);
    expect(b.metadata).toEqual({});
  });

  it('leaves gpuId, continuationState, clientId, preset and presetLabel undefined', () => {
    const s = new Session(fakeClock().clock);
    expect(s.gpuId).toBeUndefined();
    expect(s.continuationState).toBeUndefined();
    expect(s.clientId).toBeUndefined();
    expect(s.preset).toBeUndefined();
    expect(s.presetLabel).toBeUndefined();
  });

  it('takes createdAt and lastActivity from the injected clock', () => {
    const time = fakeClock(42_000);
    const s = new Session(time.clock);
    expect(s.createdAt).toBe(42_000);
    expect(s.lastActivity).toBe(42_000);
  });
});

describe('Session transition table (every cell of PROTOCOL.md)', () => {
  const cells = WIRE_STATES.flatMap((from) =>
    WIRE_STATES.map((to) => ({
      from,
      to,
      kind: from === to ? 'self' : LEGAL_TARGETS[from].includes(to) ? 'legal' : 'illegal',
    })),
  );

  it('the expected table covers 64 cells: 8 self-transitions, 14 other legal edges, 42 illegal ones', () => {
    expect(cells).toHaveLength(64);
    expect(cells.filter((c) => c.kind === 'self')).toHaveLength(8);
    expect(cells.filter((c) => c.kind === 'legal')).toHaveLength(14);
    expect(cells.filter((c) => c.kind === 'illegal')).toHaveLength(42);
  });

  for (const { from, to } of cells.filter((c) => c.kind === 'legal'))
    it(`${from} -> ${to} is a legal edge: it succeeds and refreshes lastActivity`, () => {
      const { session, time } = sessionIn(from);
      const t = time.advance(500);
      session.transition(st(to));
      expect(session.state).toBe(to);
      expect(session.lastActivity).toBe(t);
    });

  for (const { from, to } of cells.filter((c) => c.kind === 'self'))
    it(`${from} -> ${to} is a self-transition: accepted as a no-op that refreshes lastActivity`, () => {
      const { session, time } = sessionIn(from);
      const t = time.advance(500);
      expect(() => session.transition(st(to))).not.toThrow();
      expect(session.state).toBe(from);
      expect(session.lastActivity).toBe(t);
    });

  for (const { from, to } of cells.filter((c) => c.kind === 'illegal'))
    it(
      `${from} -> ${to} is illegal: throws InvalidSessionTransition and leaves state and lastActivity unchanged`,
      () => {
        const { session, time } = sessionIn(from);
        const before = session.lastActivity;
        time.advance(500);
        expect(() => session.transition(st(to))).toThrow(InvalidSessionTransition);
        expect(session.state).toBe(from);
        expect(session.lastActivity).toBe(before);
      },
    );

  for (const state of TERMINAL)
    it(`${state} is a sink: every other target throws and the state stays`, () => {
      const { session } = sessionIn(state);
      for (const to of WIRE_STATES.filter((w) => w !== state)) {
        expect(() => session.transition(st(to))).toThrow(InvalidSessionTransition);
        expect(session.state).toBe(state);
      }
    });

  it('an illegal transition error names both states', () => {
    const { session } = sessionIn('queued');
    expect(() => session.transition(SessionState.ACTIVE)).toThrow(/queued.*active/);
  });
});

describe('Session activity clock', () => {
  it('refreshes lastActivity on every accepted transition along a full lifecycle', () => {
    const time = fakeClock(10);
    const s = new Session(time.clock);
    for (const step of ['queued', 'gpu_binding', 'active', 'active', 'complete'] as const) {
      const t = time.advance(1_000);
      s.transition(st(step));
      expect(s.lastActivity).toBe(t);
    }
    expect(s.createdAt).toBe(10);
  });

  it('touch() refreshes lastActivity without changing state', () => {
    const { session, time } = sessionIn('queued');
    const t = time.advance(7_777);
    session.touch();
    expect(session.lastActivity).toBe(t);
    expect(session.state).toBe(SessionState.QUEUED);
  });

  it('touch() leaves createdAt alone', () => {
    const time = fakeClock(5);
    const s = new Session(time.clock);
    time.advance(100);
    s.touch();
    expect(s.createdAt).toBe(5);
  });
});

describe('Session predicates', () => {
  for (const { state, active } of WIRE_STATES.map((state) => ({ state, active: state === 'active' })))
    it(
      `isActive() is ${active} in ${state}`,
      () => {
        expect(sessionIn(state).session.isActive()).toBe(active);
      },
    );

  it('segmentCapReached(cap) is false when segmentIdx is one below the cap', () => {
    const s = new Session(fakeClock().clock);
    s.segmentIdx = 5;
    expect(s.segmentCapReached(6)).toBe(false);
  });

  it('segmentCapReached(cap) is true when segmentIdx equals the cap', () => {
    const s = new Session(fakeClock().clock);
    s.segmentIdx = 6;
    expect(s.segmentCapReached(6)).toBe(true);
  });

  it('segmentCapReached(cap) is true when segmentIdx is past the cap', () => {
    const s = new Session(fakeClock().clock);
    s.segmentIdx = 7;
    expect(s.segmentCapReached(6)).toBe(true);
  });

  it('segmentCapReached(0) is true for a fresh session', () => {
    expect(new Session(fakeClock().clock).segmentCapReached(0)).toBe(true);
  });

  it('segmentCapReached(1) is false for a fresh session', () => {
    expect(new Session(fakeClock().clock).segmentCapReached(1)).toBe(false);
  });
});
