import { getEventListeners } from 'node:events';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { LocalAdmission, type Placement } from '../../src/session/index.js';
import { admissionBackendContract, FakePlacement, join, type FakeLease } from './admission-backend.contract.js';

admissionBackendContract('LocalAdmission', (placement, options) => new LocalAdmission(placement, options));

/** What LocalAdmission promises beyond the contract: synchronous grants, one report pass per turn. */
describe('LocalAdmission', () => {
  const open: LocalAdmission<FakeLease>[] = [];
  afterEach(() => {
    for (const backend of open.splice(0)) backend.close();
    vi.restoreAllMocks();
  });

  function local(placement: Placement<FakeLease>, options: { maxQueue?: number; depthUpdateIntervalMs?: number } = {}) {
    const backend = new LocalAdmission(placement, { maxQueue: 100, depthUpdateIntervalMs: 0, ...options });
    open.push(backend);
    return backend;
  }

  const endOfTurn = () => new Promise<void>((resolve) => setImmediate(resolve));
  /** Lets `n` event-loop turns pass (reports go out one batch per turn). */
  const turns = async (n: number) => {
    for (let i = 0; i < n; i++) await endOfTurn();
  };

  /** Counts the timers set from now on that are still armed (neither cleared nor fired). */
  function trackTimers(): () => number {
    const armed = new Set<unknown>();
    const realSet = globalThis.setTimeout;
    const realClear = globalThis.clearTimeout;
    vi.spyOn(globalThis, 'setTimeout').mockImplementation(((callback: () => void, ms?: number) => {
      const timer = realSet(() => {
        armed.delete(timer);
        callback();
      }, ms);
      armed.add(timer);
      return timer;
    }) as typeof setTimeout);
    vi.spyOn(globalThis, 'clearTimeout').mockImplementation((timer) => {
      armed.delete(timer);
      realClear(timer);
    });
    return () => armed.size;
  }

  it('refuses a negative or fractional maxQueue and a negative depth interval', () => {
    const placement = new FakePlacement(1);
    expect(() => new LocalAdmission(placement, { maxQueue: -1 })).toThrow(RangeError);
    expect(() => new LocalAdmission(placement, { maxQueue: 1.5 })).toThrow(RangeError);
    expect(() => new LocalAdmission(placement, { maxQueue: 1, depthUpdateIntervalMs: -1 })).toThrow(RangeError);
  });

  it('resolves an immediate grant without waiting for a turn', async () => {
    const backend = local(new FakePlacement(1));
    const a = join(backend, 'a');
    await Promise.resolve();
    await Promise.resolve();
    expect(a.settled()).toEqual({ granted: { slot: 0, sessionId: 'a' } });
  });

  it('calls onQueued synchronously, inside admit', async () => {
    const backend = local(new FakePlacement(0));
    const b = join(backend, 'b');
    expect(b.queuedCalls()).toBe(1);
    expect(backend.queueDepth).toBe(1);
  });

  it('reports positions after the turn that changed them, not in a microtask', async () => {
    const backend = local(new FakePlacement(0));
    const b = join(backend, 'b');
    for (let i = 0; i < 5; i++) await Promise.resolve();
    expect(b.ticket.positions).toEqual([]);
    await turns(2);
    expect(b.ticket.positions).toEqual([[0, 1]]);
  });

  it('sends at most 256 position reports per event-loop turn, so telling thousands never holds the loop', async () => {
    const placement = new FakePlacement(0);
    const backend = local(placement, { maxQueue: 2_000 });
    const joiners = Array.from({ length: 2_000 }, (_, i) => join(backend, `s${i}`));
    const told = () => joiners.filter((j) => j.ticket.positions.length > 0).length;
    await turns(2);
    expect(told()).toBe(256);
    await turns(1);
    expect(told()).toBe(512);
    await turns(10);
    expect(told()).toBe(2_000);
    // In queue order, each with its own position.
    expect(joiners.every((j, i) => j.ticket.last?.[0] === i)).toBe(true);
  });

  it('grants the front waiter in the same call that frees capacity', () => {
    const placement = new FakePlacement(1);
    const backend = local(placement);
    const holder = placement.tryPlace('holder') as FakeLease;
    join(backend, 'b');
    backend.release(holder);
    expect(backend.queueDepth).toBe(0);
    expect(placement.holdersBySession).toEqual(['b']);
  });

  it('serves waiters even when the placement does not announce its releases', async () => {
    const placement = new FakePlacement(1, { announceReleases: false });
    const backend = local(placement);
    const holder = placement.tryPlace('holder') as FakeLease;
    const b = join(backend, 'b');
    backend.release(holder);
    expect(await b.promise).toEqual({ slot: 0, sessionId: 'b' });
  });

  it('fails the front waiter with the error of a placement that throws, and serves the next', async () => {
    const fake = new FakePlacement(1);
    const broken = new Error('placement broke');
    let throwOnce = false;
    const placement: Placement<FakeLease> = {
      tryPlace: (sessionId) => {
        if (throwOnce) {
          throwOnce = false;
          throw broken;
        }
        return fake.tryPlace(sessionId);
      },
      release: (lease) => fake.release(lease),
      onCapacity: (listener) => fake.onCapacity(listener),
    };
    const backend = local(placement);
    const holder = fake.tryPlace('holder') as FakeLease;
    const b = join(backend, 'b');
    const c = join(backend, 'c');
    throwOnce = true;
    backend.release(holder);
    expect(await b.outcome).toEqual({ refused: broken });
    expect(await c.promise).toEqual({ slot: 0, sessionId: 'c' });
  });

  it('a waiter whose onQueued throws leaves the queue and is refused with that error', async () => {
    const backend = local(new FakePlacement(0));
    const broken = new Error('onQueued broke');
    const controller = new AbortController();
    const promise = backend.admit(
      { sessionId: 'b', onPosition: () => undefined },
      {
        signal: controller.signal,
        timeoutMs: 60_000,
        onQueued: () => {
          throw broken;
        },
      },
    );
    await expect(promise).rejects.toBe(broken);
    expect(backend.queueDepth).toBe(0);
  });

  it('after 9,000 of 10,000 waiters leave in one turn, each survivor is told once, in one pass, and no timer is left', async () => {
    const placement = new FakePlacement(1);
    const backend = local(placement, { maxQueue: 10_000 });
    const holder = placement.tryPlace('holder') as FakeLease;
    const armedTimers = trackTimers();
    const joiners = Array.from({ length: 10_000 }, (_, i) => join(backend, `s${i}`));
    await turns(60);
    expect(joiners.every((j, i) => j.ticket.positions.length === 1 && j.ticket.last?.[0] === i)).toBe(true);

    const survivors = joiners.filter((_, i) => i % 10 === 0);
    const leavers = joiners.filter((_, i) => i % 10 !== 0);
    for (const leaver of leavers) {
      leaver.controller.abort(new Error('left'));
      await Promise.resolve(); // each socket closes in its own callback; microtasks run between them
    }
    await turns(10);
    expect(survivors.every((s, i) => s.ticket.positions.length === 2 && s.ticket.last?.[0] === i && s.ticket.last[1] === 1_000)).toBe(true);
    expect(leavers.every((l) => l.ticket.positions.length === 1)).toBe(true);
    await turns(2);
    expect(survivors.every((s) => s.ticket.positions.length === 2)).toBe(true);

    let lease = holder;
    for (const survivor of survivors) {
      backend.release(lease);
      lease = await survivor.promise;
    }
    expect(armedTimers()).toBe(0);
  });

  it('clears the timer and the abort listener of a granted waiter', async () => {
    const placement = new FakePlacement(1);
    const backend = local(placement);
    const holder = placement.tryPlace('holder') as FakeLease;
    const armedTimers = trackTimers();
    const b = join(backend, 'b', { timeoutMs: 60_000 });
    expect(armedTimers()).toBe(1);
    backend.release(holder);
    await b.promise;
    expect(armedTimers()).toBe(0);
    expect(getEventListeners(b.controller.signal, 'abort')).toHaveLength(0);
  });
});
