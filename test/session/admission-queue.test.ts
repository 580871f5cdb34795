import { afterEach, describe, it, expect, vi } from 'vitest';
import fc from 'fast-check';
import { AdmissionQueue, QueueFull, type QueuePosition } from '../../src/session/admission-queue.js';

/** A queue whose position notifications are recorded batch by batch. */
function recordingQueue(maxSize = 100, depthUpdateIntervalMs = 0) {
  const batches: QueuePosition<string>[][] = [];
  const queue = new AdmissionQueue<string>({ maxSize, depthUpdateIntervalMs, onPositions: (changes) => batches.push(changes) });
  /** Simple view of one batch: item → [position, depth]. */
  const view = (batch: QueuePosition<string>[] | undefined) =>
    Object.fromEntries((batch ?? []).map((c) => [c.item, [c.position, c.depth]]));
  return { queue, batches, view };
}

/**
 * Lets the event-loop turn end: reports go out in its check phase (`setImmediate`). Under
 * fake timers the check phase is run by hand.
 */
async function endOfTurn(): Promise<void> {
  if (vi.isFakeTimers()) vi.advanceTimersByTime(0);
  else await new Promise<void>((resolve) => setImmediate(resolve));
}

afterEach(() => {
  vi.useRealTimers();
});

describe('AdmissionQueue ordering', () => {
  it('enqueue returns positions 0..n-1 in arrival order', () => {
    const { queue } = recordingQueue();
    expect(['a', 'b', 'c', 'd'].map((x) => queue.enqueue(x))).toEqual([0, 1, 2, 3]);
  });

  it('positionOf reports each waiter 0..n-1 and -1 for one not queued', () => {
    const { queue } = recordingQueue();
    for (const x of ['a', 'b', 'c']) queue.enqueue(x);
    expect(['a', 'b', 'c', 'z'].map((x) => queue.positionOf(x))).toEqual([0, 1, 2, -1]);
  });

  it('shift takes waiters first-in first-out', () => {
    const { queue } = recordingQueue();
    for (const x of ['a', 'b', 'c']) queue.enqueue(x);
    expect([queue.shift(), queue.shift(), queue.shift(), queue.shift()]).toEqual(['a', 'b', 'c', undefined]);
  });

  it('peek shows the front waiter without taking it', () => {
    const { queue } = recordingQueue();
    expect(queue.peek()).toBeUndefined();
    queue.enqueue('a');
    queue.enqueue('b');
    expect(queue.peek()).toBe('a');
    expect(queue.depth).toBe(2);
  });

  it('depth counts the waiters', () => {
    const { queue } = recordingQueue();
    expect(queue.depth).toBe(0);
    queue.enqueue('a');
    queue.enqueue('b');
    expect(queue.depth).toBe(2);
    queue.shift();
    expect(queue.depth).toBe(1);
  });

  it('has() is true only for queued waiters', () => {
    const { queue } = recordingQueue();
    queue.enqueue('a');
    expect(queue.has('a')).toBe(true);
    expect(queue.has('b')).toBe(false);
    queue.shift();
    expect(queue.has('a')).toBe(false);
  });

  it('remove moves the waiters behind it up by one', () => {
    const { queue } = recordingQueue();
    for (const x of ['a', 'b', 'c', 'd']) queue.enqueue(x);
    expect(queue.remove('b')).toBe(true);
    expect(['a', 'c', 'd'].map((x) => queue.positionOf(x))).toEqual([0, 1, 2]);
    expect(queue.depth).toBe(3);
  });

  it('remove returns false for a waiter that is not queued', () => {
    const { queue } = recordingQueue();
    queue.enqueue('a');
    expect(queue.remove('z')).toBe(false);
    expect(queue.depth).toBe(1);
  });
});

describe('AdmissionQueue capacity', () => {
  it('enqueue past maxSize throws QueueFull and leaves the queue unchanged', () => {
    const { queue } = recordingQueue(2);
    queue.enqueue('a');
    queue.enqueue('b');
    expect(() => queue.enqueue('c')).toThrow(QueueFull);
    expect(queue.depth).toBe(2);
    expect(queue.has('c')).toBe(false);
  });

  it('QueueFull is an Error', () => {
    const { queue } = recordingQueue(0);
    let caught: unknown;
    try {
      queue.enqueue('a');
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(QueueFull);
    expect(caught).toBeInstanceOf(Error);
  });

  it('a freed place can be taken again after a shift', () => {
    const { queue } = recordingQueue(1);
    queue.enqueue('a');
    queue.shift();
    expect(queue.enqueue('b')).toBe(0);
  });

  it('exposes maxSize', () => {
    expect(recordingQueue(7).queue.maxSize).toBe(7);
  });
});

describe('AdmissionQueue position notifications', () => {
  it('coalesces a burst of joins into one notification per waiter after the turn', async () => {
    const { queue, batches, view } = recordingQueue();
    for (const x of ['a', 'b', 'c']) queue.enqueue(x);
    expect(batches).toHaveLength(0);
    await endOfTurn();
    expect(batches).toHaveLength(1);
    expect(view(batches[0])).toEqual({ a: [0, 3], b: [1, 3], c: [2, 3] });
  });

  it('flush() delivers pending updates at once and the end of the turn sends nothing more', async () => {
    const { queue, batches, view } = recordingQueue();
    queue.enqueue('a');
    queue.enqueue('b');
    queue.flush();
    expect(batches).toHaveLength(1);
    expect(view(batches[0])).toEqual({ a: [0, 2], b: [1, 2] });
    await endOfTurn();
    expect(batches).toHaveLength(1);
  });

  it('does not tell a waiter again when neither its position nor the depth changed', async () => {
    const { queue, batches } = recordingQueue();
    queue.enqueue('a');
    queue.flush();
    queue.flush();
    await endOfTurn();
    expect(batches).toHaveLength(1);
  });

  it('sends nothing when a join and a leave in the same turn cancel out', async () => {
    const { queue, batches } = recordingQueue();
    queue.enqueue('a');
    queue.flush();
    queue.enqueue('b');
    queue.remove('b');
    await endOfTurn();
    expect(batches).toHaveLength(1);
  });

  it('tells a waiter whose position is unchanged again when the depth changed', async () => {
    const { queue, batches, view } = recordingQueue();
    queue.enqueue('a');
    queue.flush();
    queue.enqueue('b');
    await endOfTurn();
    expect(batches).toHaveLength(2);
    expect(view(batches[1])).toEqual({ a: [0, 2], b: [1, 2] });
  });

  it('reports a depth-only change after the coalescing interval, a new position at once', async () => {
    vi.useFakeTimers();
    const { queue, batches, view } = recordingQueue(100, 1000);
    queue.enqueue('a');
    queue.flush();
    queue.enqueue('b');
    await endOfTurn();
    // b is new: told at once; a only saw the depth change.
    expect(view(batches[1])).toEqual({ b: [1, 2] });
    queue.enqueue('c');
    await endOfTurn();
    expect(view(batches[2])).toEqual({ c: [2, 3] });
    vi.advanceTimersByTime(1000);
    // One coalesced update for every waiter whose last news is stale.
    expect(view(batches[3])).toEqual({ a: [0, 3], b: [1, 3] });
    vi.advanceTimersByTime(5000);
    expect(batches).toHaveLength(4);
  });

  it('does not wait for the interval when a position changes', async () => {
    vi.useFakeTimers();
    const { queue, batches, view } = recordingQueue(100, 1000);
    for (const x of ['a', 'b', 'c']) queue.enqueue(x);
    queue.flush();
    queue.remove('a');
    await endOfTurn();
    expect(view(batches[1])).toEqual({ b: [0, 2], c: [1, 2] });
  });

  it('after a remove, tells the waiters ahead the new depth and those behind their new position', async () => {
    const { queue, batches, view } = recordingQueue();
    for (const x of ['a', 'b', 'c']) queue.enqueue(x);
    queue.flush();
    queue.remove('b');
    await endOfTurn();
    expect(batches).toHaveLength(2);
    expect(view(batches[1])).toEqual({ a: [0, 2], c: [1, 2] });
  });

  it('after a shift, tells every remaining waiter its move up', async () => {
    const { queue, batches, view } = recordingQueue();
    for (const x of ['a', 'b', 'c']) queue.enqueue(x);
    queue.flush();
    expect(queue.shift()).toBe('a');
    await endOfTurn();
    expect(view(batches[1])).toEqual({ b: [0, 2], c: [1, 2] });
  });

  it('skips a waiter whose position and the depth are both the same after a leave and a join', async () => {
    const { queue, batches, view } = recordingQueue();
    for (const x of ['a', 'b']) queue.enqueue(x);
    queue.flush();
    queue.remove('b');
    queue.enqueue('c');
    await endOfTurn();
    expect(batches).toHaveLength(2);
    expect(view(batches[1])).toEqual({ c: [1, 2] });
  });

  it('never notifies a waiter that has left', async () => {
    const { queue, batches } = recordingQueue();
    for (const x of ['a', 'b', 'c']) queue.enqueue(x);
    queue.remove('a');
    await endOfTurn();
    expect(batches.flat().map((c) => c.item)).not.toContain('a');
  });

  it('tells each of many waiters joining in one turn exactly once, with the final depth', async () => {
    const { queue, batches } = recordingQueue(1_000);
    const items = Array.from({ length: 500 }, (_, i) => `w${i}`);
    for (const x of items) queue.enqueue(x);
    await endOfTurn();
    expect(batches).toHaveLength(1);
    const batch = batches[0] ?? [];
    expect(batch.map((c) => c.item)).toEqual(items);
    expect(batch.every((c, i) => c.position === i && c.depth === 500)).toBe(true);
  });

  it('tells a waiter that left and came back its new place', async () => {
    const { queue, batches, view } = recordingQueue();
    for (const x of ['a', 'b']) queue.enqueue(x);
    queue.flush();
    queue.remove('a');
    queue.enqueue('a');
    await endOfTurn();
    expect(view(batches[1])).toEqual({ b: [0, 2], a: [1, 2] });
  });

  it('reports in the check phase of the turn, not in a microtask after the change', async () => {
    const { queue, batches } = recordingQueue();
    queue.enqueue('a');
    for (let i = 0; i < 10; i++) await Promise.resolve();
    expect(batches).toHaveLength(0);
    await endOfTurn();
    expect(batches).toHaveLength(1);
  });

  it('makes one pass for changes separated by microtask checkpoints within one turn', async () => {
    const { queue, batches, view } = recordingQueue();
    for (const x of ['a', 'b', 'c', 'd']) queue.enqueue(x);
    queue.flush();
    // Like sockets closing in separate callbacks of one poll phase, microtasks running between them.
    queue.remove('a');
    await Promise.resolve();
    queue.remove('c');
    await Promise.resolve();
    await endOfTurn();
    expect(batches).toHaveLength(2);
    expect(view(batches[1])).toEqual({ b: [0, 2], d: [1, 2] });
  });

  it('with a coalescing interval, a leave in the same turn as a join still moves everyone behind the leaver', async () => {
    vi.useFakeTimers();
    const { queue, batches, view } = recordingQueue(100, 1000);
    for (const x of ['a', 'b', 'c', 'd']) queue.enqueue(x);
    queue.flush();
    queue.enqueue('e');
    queue.remove('b');
    await endOfTurn();
    expect(view(batches[1])).toEqual({ c: [1, 4], d: [2, 4], e: [3, 4] });
  });

  it('tells the waiters ahead of a leave at the back only after the coalescing interval', async () => {
    vi.useFakeTimers();
    const { queue, batches, view } = recordingQueue(100, 1000);
    for (const x of ['a', 'b', 'c']) queue.enqueue(x);
    queue.flush();
    queue.remove('c');
    await endOfTurn();
    expect(batches).toHaveLength(1);
    vi.advanceTimersByTime(1000);
    expect(view(batches[1])).toEqual({ a: [0, 2], b: [1, 2] });
  });

  it('clear() empties the queue front to back without reporting anything', async () => {
    const { queue, batches } = recordingQueue();
    for (const x of ['a', 'b', 'c']) queue.enqueue(x);
    expect(queue.clear()).toEqual(['a', 'b', 'c']);
    expect(queue.depth).toBe(0);
    expect(queue.peek()).toBeUndefined();
    await endOfTurn();
    expect(batches).toHaveLength(0);
    expect(queue.enqueue('d')).toBe(0);
  });

  it('works without an onPositions callback', async () => {
    const queue = new AdmissionQueue<string>({ maxSize: 3 });
    queue.enqueue('a');
    expect(() => queue.flush()).not.toThrow();
    await endOfTurn();
    expect(queue.depth).toBe(1);
  });
});

describe('AdmissionQueue under a mass departure', () => {
  const WAITERS = 10_000;
  const survives = (i: number) => i % 10 === 0; // 1,000 survivors spread through the queue

  /** 10,000 waiters, all told their first position, so only the departure is left to report. */
  function fullQueue(depthUpdateIntervalMs: number) {
    const recording = recordingQueue(WAITERS, depthUpdateIntervalMs);
    const items = Array.from({ length: WAITERS }, (_, i) => `w${i}`);
    for (const x of items) recording.queue.enqueue(x);
    recording.queue.flush();
    recording.batches.length = 0;
    return { ...recording, items, survivors: items.filter((_, i) => survives(i)) };
  }

  /** Every survivor told exactly once, in queue order, with its final place and depth; nobody else. */
  function expectEachSurvivorToldOnce(batches: QueuePosition<string>[][], survivors: string[]) {
    expect(batches).toHaveLength(1);
    const batch = batches[0] ?? [];
    expect(batch).toHaveLength(survivors.length);
    expect(batch.map((c) => c.item)).toEqual(survivors);
    expect(batch.every((c, i) => c.position === i && c.depth === survivors.length)).toBe(true);
  }

  it('9,000 of 10,000 leaving in one synchronous burst cost one report pass telling each survivor once', async () => {
    const { queue, batches, items, survivors } = fullQueue(0);
    for (const [i, x] of items.entries()) if (!survives(i)) queue.remove(x);
    expect(queue.depth).toBe(survivors.length);
    await endOfTurn();
    expectEachSurvivorToldOnce(batches, survivors);
    await endOfTurn();
    expect(batches).toHaveLength(1);
  });

  it('9,000 leaving in one turn with microtasks between the leaves still cost one pass', async () => {
    const { queue, batches, items, survivors } = fullQueue(0);
    for (const [i, x] of items.entries()) {
      if (survives(i)) continue;
      queue.remove(x);
      await Promise.resolve();
    }
    await endOfTurn();
    expectEachSurvivorToldOnce(batches, survivors);
  });

  it('with a coalescing interval, the survivors who moved hear at once and the front one at the interval', async () => {
    vi.useFakeTimers();
    const { queue, batches, items, survivors, view } = fullQueue(1000);
    for (const [i, x] of items.entries()) if (!survives(i)) queue.remove(x);
    await endOfTurn();
    // w0 kept place 0: only the depth changed for it.
    expectEachSurvivorToldOnce([[{ item: 'w0', position: 0, depth: survivors.length }, ...(batches[0] ?? [])]], survivors);
    vi.advanceTimersByTime(1000);
    expect(batches).toHaveLength(2);
    expect(view(batches[1])).toEqual({ w0: [0, survivors.length] });
  });

  it('positions stay right after the burst: the survivors leave front to back in order', () => {
    const { queue, items, survivors } = fullQueue(0);
    for (const [i, x] of items.entries()) if (!survives(i)) queue.remove(x);
    expect(survivors.every((x) => queue.has(x))).toBe(true);
    expect(queue.positionOf(survivors[500] ?? '')).toBe(500);
    const order: (string | undefined)[] = [];
    while (queue.depth > 0) order.push(queue.shift());
    expect(order).toEqual(survivors);
  });
});

describe('AdmissionQueue against a plain array model', () => {
  type Op =
    | { kind: 'enqueue' }
    | { kind: 'remove'; pick: number }
    | { kind: 'shift' }
    | { kind: 'endOfTurn' }
    | { kind: 'interval' }
    | { kind: 'flush' };
  const op: fc.Arbitrary<Op> = fc.oneof(
    { arbitrary: fc.constant({ kind: 'enqueue' as const }), weight: 4 },
    { arbitrary: fc.nat().map((pick) => ({ kind: 'remove' as const, pick })), weight: 3 },
    { arbitrary: fc.constant({ kind: 'shift' as const }), weight: 1 },
    { arbitrary: fc.constant({ kind: 'endOfTurn' as const }), weight: 2 },
    { arbitrary: fc.constant({ kind: 'interval' as const }), weight: 1 },
    { arbitrary: fc.constant({ kind: 'flush' as const }), weight: 1 },
  );

  /**
   * After each turn every waiter holds its true place; after the interval or a flush, the
   * true depth too. A batch never names a waiter twice, nor one that is not queued.
   */
  function check(depthUpdateIntervalMs: number) {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        vi.useFakeTimers();
        try {
          const model: string[] = [];
          const told = new Map<string, [number, number]>();
          let next = 0;
          const queue = new AdmissionQueue<string>({
            maxSize: 1_000,
            depthUpdateIntervalMs,
            onPositions: (changes) => {
              expect(new Set(changes.map((c) => c.item)).size).toBe(changes.length);
              for (const c of changes) {
                expect(model).toContain(c.item);
                told.set(c.item, [c.position, c.depth]);
              }
            },
          });
          const expectPlaces = (withDepth: boolean) => {
            model.forEach((item, i) => {
              const last = told.get(item);
              expect(last?.[0]).toBe(i);
              if (withDepth) expect(last?.[1]).toBe(model.length);
            });
          };
          for (const o of ops) {
            if (o.kind === 'enqueue') {
              const item = `w${next++}`;
              expect(queue.enqueue(item)).toBe(model.length);
              model.push(item);
            } else if (o.kind === 'remove') {
              // One pick in (depth + 1) names a waiter that is not queued.
              const item = model[o.pick % (model.length + 1)] ?? `w${next}`;
              expect(queue.remove(item)).toBe(model.includes(item));
              if (model.includes(item)) model.splice(model.indexOf(item), 1);
              told.delete(item);
            } else if (o.kind === 'shift') {
              const item = model.shift();
              expect(queue.shift()).toBe(item);
              if (item !== undefined) told.delete(item);
            } else if (o.kind === 'endOfTurn') {
              vi.advanceTimersByTime(0);
              expectPlaces(depthUpdateIntervalMs === 0);
            } else if (o.kind === 'interval') {
              vi.advanceTimersByTime(0);
              vi.advanceTimersByTime(depthUpdateIntervalMs);
              expectPlaces(true);
            } else {
              queue.flush();
              expectPlaces(true);
            }
            expect(queue.depth).toBe(model.length);
            expect(queue.peek()).toBe(model[0]);
          }
          model.forEach((item, i) => expect(queue.positionOf(item)).toBe(i));
        } finally {
          vi.useRealTimers();
        }
      }),
      { numRuns: 300 },
    );
  }

  it('keeps every waiter told its place and depth when depth changes are reported at once', () => check(0));

  it('keeps every waiter told its place each turn and its depth after the interval', () => check(1000));
});
