import { getEventListeners } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import {
  AdmissionClosed,
  AdmissionTimeout,
  QueueFull,
  type AdmissionBackend,
  type AdmissionTicket,
  type Placement,
} from '../../src/session/index.js';

/**
 * The contract every `AdmissionBackend` keeps, written once and run against each
 * implementation (in-process today, a shared queue later). Backends are built over a
 * `FakePlacement` of N slots; nothing here assumes a backend reports or grants
 * synchronously, so waits are polled (`eventually`) with short deadlines.
 */

export interface FakeLease {
  readonly slot: number;
  readonly sessionId: string;
}

/** N slots, each held by at most one session; announces capacity whenever a slot frees. */
export class FakePlacement implements Placement<FakeLease> {
  private readonly holders: (FakeLease | undefined)[];
  private readonly listeners = new Set<() => void>();

  constructor(
    slots: number,
    private readonly options: { announceReleases?: boolean } = {},
  ) {
    this.holders = Array.from({ length: slots }, () => undefined);
  }

  tryPlace(sessionId: string): FakeLease | undefined {
    const slot = this.holders.indexOf(undefined);
    if (slot < 0) return undefined;
    const lease = { slot, sessionId };
    this.holders[slot] = lease;
    return lease;
  }

  release(lease: FakeLease): void {
    if (this.holders[lease.slot] !== lease) return;
    this.holders[lease.slot] = undefined;
    if (this.options.announceReleases ?? true) this.announce();
  }

  onCapacity(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Capacity that appears without a release, like a worker coming back after a restart. */
  addSlot(): void {
    this.holders.push(undefined);
    this.announce();
  }

  get inUse(): number {
    return this.holders.filter((h) => h !== undefined).length;
  }

  /** Sessions holding a slot. */
  get holdersBySession(): string[] {
    return this.holders.flatMap((h) => (h ? [h.sessionId] : []));
  }

  get listenerCount(): number {
    return this.listeners.size;
  }

  private announce(): void {
    for (const listener of [...this.listeners]) listener();
  }
}

export interface BackendOptions {
  maxQueue: number;
  depthUpdateIntervalMs: number;
}

export type MakeBackend = (
  placement: FakePlacement,
  options: BackendOptions,
) => AdmissionBackend<FakeLease> | Promise<AdmissionBackend<FakeLease>>;

/** A ticket that records what it was told. */
export class RecordingTicket implements AdmissionTicket {
  readonly positions: [position: number, depth: number][] = [];
  constructor(readonly sessionId: string) {}
  onPosition(position: number, depth: number): void {
    this.positions.push([position, depth]);
  }
  get last(): [number, number] | undefined {
    return this.positions.at(-1);
  }
}

export type Outcome = { granted: FakeLease } | { refused: unknown };

/** One `admit` call with everything a test looks at. */
export interface Joiner {
  readonly ticket: RecordingTicket;
  readonly controller: AbortController;
  readonly promise: Promise<FakeLease>;
  /** Settles with the result either way, so a refusal is never an unhandled rejection. */
  readonly outcome: Promise<Outcome>;
  readonly settled: () => Outcome | undefined;
  readonly queuedCalls: () => number;
}

export function join(
  backend: AdmissionBackend<FakeLease>,
  sessionId: string,
  options: { timeoutMs?: number; controller?: AbortController } = {},
): Joiner {
  const ticket = new RecordingTicket(sessionId);
  const controller = options.controller ?? new AbortController();
  let queued = 0;
  let result: Outcome | undefined;
  const promise = backend.admit(ticket, {
    signal: controller.signal,
    timeoutMs: options.timeoutMs ?? 60_000,
    onQueued: () => (queued += 1),
  });
  const outcome = promise.then(
    (granted): Outcome => (result = { granted }),
    (refused: unknown): Outcome => (result = { refused }),
  );
  return { ticket, controller, promise, outcome, settled: () => result, queuedCalls: () => queued };
}

/** Polls `condition` until it holds, failing with `what` after `timeoutMs`. */
export async function eventually(condition: () => boolean, what: string, timeoutMs = 2_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise<void>((resolve) => setTimeout(resolve, 2));
  }
}

async function granted(joiner: Joiner): Promise<FakeLease> {
  const outcome = await joiner.outcome;
  if (!('granted' in outcome)) throw new Error(`${joiner.ticket.sessionId} was refused: ${String(outcome.refused)}`);
  return outcome.granted;
}

async function refused(joiner: Joiner): Promise<unknown> {
  const outcome = await joiner.outcome;
  if (!('refused' in outcome)) throw new Error(`${joiner.ticket.sessionId} was granted slot ${outcome.granted.slot}`);
  return outcome.refused;
}

const abortListeners = (joiner: Joiner): number => getEventListeners(joiner.controller.signal, 'abort').length;

export function admissionBackendContract(name: string, makeBackend: MakeBackend): void {
  describe(`${name} keeps the AdmissionBackend contract`, () => {
    const open: AdmissionBackend<FakeLease>[] = [];

    afterEach(() => {
      for (const backend of open.splice(0)) backend.close();
    });

    async function setup(slots: number, options: Partial<BackendOptions> = {}) {
      const placement = new FakePlacement(slots);
      const backend = await makeBackend(placement, { maxQueue: 100, depthUpdateIntervalMs: 0, ...options });
      open.push(backend);
      return { placement, backend };
    }

    /** A backend whose only slot is held by `holder`, so every later ticket waits. */
    async function fullSetup(options: Partial<BackendOptions> = {}) {
      const { placement, backend } = await setup(1, options);
      const holder = await granted(join(backend, 'holder'));
      return { placement, backend, holder };
    }

    describe('granting', () => {
      it('grants at once when capacity is free and nobody waits, without queueing', async () => {
        const { placement, backend } = await setup(2);
        const a = join(backend, 'a');
        const lease = await granted(a);
        expect(lease.sessionId).toBe('a');
        expect(a.queuedCalls()).toBe(0);
        expect(a.ticket.positions).toEqual([]);
        expect(backend.queueDepth).toBe(0);
        expect(placement.holdersBySession).toEqual(['a']);
        expect(abortListeners(a)).toBe(0);
      });

      it('queues a ticket when no capacity is free and calls onQueued once', async () => {
        const { backend } = await fullSetup();
        const b = join(backend, 'b');
        await eventually(() => b.queuedCalls() === 1 && backend.queueDepth === 1, 'b queued');
        expect(b.settled()).toBeUndefined();
      });

      it('grants waiters first in, first out as capacity frees', async () => {
        const { backend, holder } = await fullSetup();
        const waiters = ['b', 'c', 'd'].map((id) => join(backend, id));
        await eventually(() => backend.queueDepth === 3, 'three waiting');
        const order: string[] = [];
        let lease = holder;
        for (const waiter of waiters) {
          backend.release(lease);
          lease = await granted(waiter);
          order.push(lease.sessionId);
        }
        expect(order).toEqual(['b', 'c', 'd']);
        expect(backend.queueDepth).toBe(0);
      });

      it('release hands the freed capacity to the front waiter only', async () => {
        const { placement, backend, holder } = await fullSetup();
        const b = join(backend, 'b');
        const c = join(backend, 'c');
        await eventually(() => backend.queueDepth === 2, 'two waiting');
        backend.release(holder);
        expect((await granted(b)).sessionId).toBe('b');
        await eventually(() => c.ticket.last?.[0] === 0, 'c moves to the front');
        expect(c.settled()).toBeUndefined();
        expect(placement.holdersBySession).toEqual(['b']);
        expect(abortListeners(b)).toBe(0);
      });

      it('a released lease is granted to the next admit at once when nobody waits', async () => {
        const { backend, holder } = await fullSetup();
        backend.release(holder);
        const b = join(backend, 'b');
        expect((await granted(b)).sessionId).toBe('b');
        expect(b.queuedCalls()).toBe(0);
      });

      it('capacity that appears without a release goes to the front waiter', async () => {
        const { placement, backend } = await fullSetup();
        const b = join(backend, 'b');
        await eventually(() => backend.queueDepth === 1, 'b waiting');
        placement.addSlot();
        expect((await granted(b)).sessionId).toBe('b');
        expect(placement.inUse).toBe(2);
      });
    });

    describe('positions', () => {
      it('tells each waiter its place and the depth', async () => {
        const { backend } = await fullSetup();
        const [b, c, d] = ['b', 'c', 'd'].map((id) => join(backend, id)) as [Joiner, Joiner, Joiner];
        await eventually(() => d.ticket.last?.[1] === 3 && b.ticket.last?.[1] === 3, 'everyone told depth 3');
        expect([b.ticket.last, c.ticket.last, d.ticket.last]).toEqual([
          [0, 3],
          [1, 3],
          [2, 3],
        ]);
      });

      it('tells waiters their new places as the queue moves, and newcomers the depth', async () => {
        const { backend, holder } = await fullSetup();
        const [b, c, d] = ['b', 'c', 'd'].map((id) => join(backend, id)) as [Joiner, Joiner, Joiner];
        await eventually(() => d.ticket.last?.[0] === 2, 'd told place 2');
        backend.release(holder);
        await granted(b);
        await eventually(() => c.ticket.last?.[0] === 0 && d.ticket.last?.[0] === 1, 'c and d move up');
        const e = join(backend, 'e');
        await eventually(() => e.ticket.last?.[0] === 2 && c.ticket.last?.[1] === 3, 'e joins behind');
        expect([c.ticket.last, d.ticket.last, e.ticket.last]).toEqual([
          [0, 3],
          [1, 3],
          [2, 3],
        ]);
      });

      it('does not tell a waiter anything after it was granted', async () => {
        const { backend, holder } = await fullSetup();
        const b = join(backend, 'b');
        const c = join(backend, 'c');
        await eventually(() => c.ticket.last?.[0] === 1, 'c told place 1');
        backend.release(holder);
        await granted(b);
        const told = b.ticket.positions.length;
        const d = join(backend, 'd');
        await eventually(() => d.ticket.last?.[0] === 1 && c.ticket.last?.[0] === 0, 'c and d told');
        expect(b.ticket.positions).toHaveLength(told);
      });
    });

    describe('refusals', () => {
      it('refuses a ticket with QueueFull when maxQueue tickets wait, leaving the waiters as they were', async () => {
        const { backend } = await fullSetup({ maxQueue: 2 });
        const b = join(backend, 'b');
        const c = join(backend, 'c');
        await eventually(() => c.ticket.last?.[0] === 1, 'c told place 1');
        const d = join(backend, 'd');
        expect(await refused(d)).toBeInstanceOf(QueueFull);
        expect(d.queuedCalls()).toBe(0);
        expect(d.ticket.positions).toEqual([]);
        expect(abortListeners(d)).toBe(0);
        expect(backend.queueDepth).toBe(2);
        expect(b.settled()).toBeUndefined();
        expect(c.settled()).toBeUndefined();
      });

      it('with maxQueue 0, a ticket that cannot be granted at once is refused', async () => {
        const { backend } = await fullSetup({ maxQueue: 0 });
        expect(await refused(join(backend, 'b'))).toBeInstanceOf(QueueFull);
      });

      it('times a waiter out after timeoutMs: it leaves, those behind move up, and it never gets capacity', async () => {
        const { placement, backend, holder } = await fullSetup();
        const b = join(backend, 'b', { timeoutMs: 30 });
        const c = join(backend, 'c');
        await eventually(() => c.ticket.last?.[0] === 1, 'c told place 1');
        const error = await refused(b);
        expect(error).toBeInstanceOf(AdmissionTimeout);
        expect(abortListeners(b)).toBe(0);
        await eventually(() => c.ticket.last?.[0] === 0 && backend.queueDepth === 1, 'c moves to the front');
        backend.release(holder);
        expect((await granted(c)).sessionId).toBe('c');
        expect(placement.holdersBySession).toEqual(['c']);
      });

      it('refuses at once, without capacity or a place, a ticket whose signal already aborted', async () => {
        const { placement, backend } = await setup(1);
        const controller = new AbortController();
        const reason = new Error('left before asking');
        controller.abort(reason);
        const a = join(backend, 'a', { controller });
        expect(await refused(a)).toBe(reason);
        expect(placement.inUse).toBe(0);
        expect(backend.queueDepth).toBe(0);
        expect(a.queuedCalls()).toBe(0);
      });

      it('refuses a second ticket for a session that is already waiting, and keeps the first', async () => {
        const { backend, holder } = await fullSetup();
        const first = join(backend, 'b');
        await eventually(() => backend.queueDepth === 1, 'b waiting');
        const second = join(backend, 'b');
        const error = await refused(second);
        expect(error).toBeInstanceOf(Error);
        expect(error).not.toBeInstanceOf(QueueFull);
        expect(backend.queueDepth).toBe(1);
        backend.release(holder);
        expect((await granted(first)).sessionId).toBe('b');
      });
    });

    describe('leaving', () => {
      it('an abort while queued rejects with the reason; the ticket leaves and those behind move up', async () => {
        const { backend, holder } = await fullSetup();
        const [b, c, d] = ['b', 'c', 'd'].map((id) => join(backend, id)) as [Joiner, Joiner, Joiner];
        await eventually(() => d.ticket.last?.[0] === 2, 'd told place 2');
        const reason = new Error('c left');
        c.controller.abort(reason);
        expect(await refused(c)).toBe(reason);
        expect(abortListeners(c)).toBe(0);
        const told = c.ticket.positions.length;
        await eventually(() => d.ticket.last?.[0] === 1 && b.ticket.last?.[1] === 2, 'd moves up, b sees depth 2');
        expect(backend.queueDepth).toBe(2);
        expect(c.ticket.positions).toHaveLength(told);
        backend.release(holder);
        const bLease = await granted(b);
        backend.release(bLease);
        expect((await granted(d)).sessionId).toBe('d');
      });

      it('a grant racing an abort goes to the next waiter, and no capacity is lost', async () => {
        const { placement, backend, holder } = await fullSetup();
        // b's session frees the slot as it leaves, before b's own abort is seen.
        const bController = new AbortController();
        bController.signal.addEventListener('abort', () => backend.release(holder), { once: true });
        const b = join(backend, 'b', { controller: bController });
        const c = join(backend, 'c');
        await eventually(() => backend.queueDepth === 2, 'b and c waiting');
        const reason = new Error('b left');
        bController.abort(reason);
        expect(await refused(b)).toBe(reason);
        expect((await granted(c)).sessionId).toBe('c');
        expect(placement.holdersBySession).toEqual(['c']);
        expect(backend.queueDepth).toBe(0);
      });

      for (const order of ['release then abort', 'abort then release'] as const) {
        it(`capacity freed and the front waiter leaving in one turn (${order}) loses no capacity`, async () => {
          const { placement, backend, holder } = await fullSetup();
          const b = join(backend, 'b');
          const c = join(backend, 'c');
          await eventually(() => backend.queueDepth === 2, 'b and c waiting');
          const reason = new Error('b left');
          if (order === 'release then abort') {
            backend.release(holder);
            b.controller.abort(reason);
          } else {
            b.controller.abort(reason);
            backend.release(holder);
          }
          // A lease granted before the abort is the caller's to give back.
          const bOutcome = await b.outcome;
          if ('granted' in bOutcome) backend.release(bOutcome.granted);
          else expect(bOutcome.refused).toBe(reason);
          expect((await granted(c)).sessionId).toBe('c');
          expect(placement.holdersBySession).toEqual(['c']);
          expect(backend.queueDepth).toBe(0);
        });
      }

      it('9,000 of 10,000 waiters leaving at once leave the rest in order with correct places', async () => {
        const { backend, holder } = await fullSetup({ maxQueue: 10_000 });
        const joiners = Array.from({ length: 10_000 }, (_, i) => join(backend, `s${i}`));
        await eventually(() => backend.queueDepth === 10_000, '10,000 waiting', 10_000);
        const survives = (i: number) => i % 10 === 0;
        const survivors = joiners.filter((_, i) => survives(i));
        const leavers = joiners.filter((_, i) => !survives(i));
        const reason = new Error('left');
        for (const leaver of leavers) leaver.controller.abort(reason);
        const refusals = await Promise.all(leavers.map((leaver) => leaver.outcome));
        expect(refusals.every((o) => 'refused' in o && o.refused === reason)).toBe(true);
        expect(backend.queueDepth).toBe(1_000);
        await eventually(
          () => survivors.every((s, i) => s.ticket.last?.[0] === i && s.ticket.last[1] === 1_000),
          'every survivor told its place among 1,000',
          10_000,
        );
        // The backend is consistent: capacity goes to the survivors in order, one after another.
        let lease = holder;
        for (const survivor of survivors) {
          backend.release(lease);
          lease = await granted(survivor);
          expect(lease.sessionId).toBe(survivor.ticket.sessionId);
        }
        expect(backend.queueDepth).toBe(0);
      });
    });

    describe('closing', () => {
      it('close refuses every waiter with AdmissionClosed, and every later admit', async () => {
        const { placement, backend, holder } = await fullSetup();
        const b = join(backend, 'b');
        const c = join(backend, 'c');
        await eventually(() => backend.queueDepth === 2, 'b and c waiting');
        backend.close();
        expect(await refused(b)).toBeInstanceOf(AdmissionClosed);
        expect(await refused(c)).toBeInstanceOf(AdmissionClosed);
        expect(abortListeners(b)).toBe(0);
        expect(backend.queueDepth).toBe(0);
        expect(await refused(join(backend, 'd'))).toBeInstanceOf(AdmissionClosed);
        backend.release(holder);
        expect(placement.inUse).toBe(0);
        expect(placement.listenerCount).toBe(0);
      });
    });
  });
}
