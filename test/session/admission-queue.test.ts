import { afterEach, describe, it, expect, vi } from 'vitest';
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

const tick = () => Promise.resolve();

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
    await tick();
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
    await tick();
    expect(batches).toHaveLength(1);
  });

  it('does not tell a waiter again when neither its position nor the depth changed', async () => {
    const { queue, batches } = recordingQueue();
    queue.enqueue('a');
    queue.flush();
    queue.flush();
    await tick();
    expect(batches).toHaveLength(1);
  });

  it('sends nothing when a join and a leave in the same turn cancel out', async () => {
    const { queue, batches } = recordingQueue();
    queue.enqueue('a');
    queue.flush();
    queue.enqueue('b');
    queue.remove('b');
    await tick();
    expect(batches).toHaveLength(1);
  });

  it('tells a waiter whose position is unchanged again when the depth changed', async () => {
    const { queue, batches, view } = recordingQueue();
    queue.enqueue('a');
    queue.flush();
    queue.enqueue('b');
    await tick();
    expect(batches).toHaveLength(2);
    expect(view(batches[1])).toEqual({ a: [0, 2], b: [1, 2] });
  });

  it('reports a depth-only change after the coalescing interval, a new position at once', async () => {
    vi.useFakeTimers();
    const { queue, batches, view } = recordingQueue(100, 1000);
    queue.enqueue('a');
    queue.flush();
    queue.enqueue('b');
    await tick();
    // b is new: told at once; a only saw the depth change.
    expect(view(batches[1])).toEqual({ b: [1, 2] });
    queue.enqueue('c');
    await tick();
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
    await tick();
    expect(view(batches[1])).toEqual({ b: [0, 2], c: [1, 2] });
  });

  it('after a remove, tells the waiters ahead the new depth and those behind their new position', async () => {
    const { queue, batches, view } = recordingQueue();
    for (const x of ['a', 'b', 'c']) queue.enqueue(x);
    queue.flush();
    queue.remove('b');
    await tick();
    expect(batches).toHaveLength(2);
    expect(view(batches[1])).toEqual({ a: [0, 2], c: [1, 2] });
  });

  it('after a shift, tells every remaining waiter its move up', async () => {
    const { queue, batches, view } = recordingQueue();
    for (const x of ['a', 'b', 'c']) queue.enqueue(x);
    queue.flush();
    expect(queue.shift()).toBe('a');
    await tick();
    expect(view(batches[1])).toEqual({ b: [0, 2], c: [1, 2] });
  });

  it('skips a waiter whose position and the depth are both the same after a leave and a join', async () => {
    const { queue, batches, view } = recordingQueue();
    for (const x of ['a', 'b']) queue.enqueue(x);
    queue.flush();
    queue.remove('b');
    queue.enqueue('c');
    await tick();
    expect(batches).toHaveLength(2);
    expect(view(batches[1])).toEqual({ c: [1, 2] });
  });

  it('never notifies a waiter that has left', async () => {
    const { queue, batches } = recordingQueue();
    for (const x of ['a', 'b', 'c']) queue.enqueue(x);
    queue.remove('a');
    await tick();
    expect(batches.flat().map((c) => c.item)).not.toContain('a');
  });

  it('tells each of many waiters joining in one turn exactly once, with the final depth', async () => {
    const { queue, batches } = recordingQueue(1_000);
    const items = Array.from({ length: 500 }, (_, i) => `w${i}`);
    for (const x of items) queue.enqueue(x);
    await tick();
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
    await tick();
    expect(view(batches[1])).toEqual({ b: [0, 2], a: [1, 2] });
  });

  it('works without an onPositions callback', async () => {
    const queue = new AdmissionQueue<string>({ maxSize: 3 });
    queue.enqueue('a');
    expect(() => queue.flush()).not.toThrow();
    await tick();
    expect(queue.depth).toBe(1);
  });
});
