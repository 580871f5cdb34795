import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import { abortable, AsyncQueue, Notifier, sleep } from '../../src/async/index.js';

describe('abortable', () => {
  it('resolves with the promise and leaves no listener on the signal', async () => {
    const controller = new AbortController();
    for (let i = 0; i < 100; i++) await abortable(Promise.resolve(i), controller.signal);
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
  });

  it('rejects with the signal reason as soon as it aborts', async () => {
    const controller = new AbortController();
    const waiting = abortable(new Promise<never>(() => undefined), controller.signal);
    controller.abort(new Error('gone'));
    await expect(waiting).rejects.toThrow('gone');
  });

  it('rejects at once on an aborted signal', async () => {
    await expect(abortable(Promise.resolve(1), AbortSignal.abort(new Error('already')))).rejects.toThrow('already');
  });
});

describe('sleep', () => {
  it('ends early with the signal reason and clears its timer', async () => {
    const controller = new AbortController();
    const started = performance.now();
    const waiting = sleep(10_000, controller.signal);
    controller.abort(new Error('stop'));
    await expect(waiting).rejects.toThrow('stop');
    expect(performance.now() - started).toBeLessThan(5_000);
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
  });
});

describe('Notifier', () => {
  it('wakes every waiter at the next notify, and remembers nothing when nobody waits', async () => {
    const n = new Notifier();
    n.notify();
    let woken = 0;
    const waits = [n.wait().then(() => woken++), n.wait().then(() => woken++)];
    await Promise.resolve();
    expect(woken).toBe(0);
    n.notify();
    await Promise.all(waits);
    expect(woken).toBe(2);
  });

  it('does not pile listeners on a long-lived signal across many waits', async () => {
    const n = new Notifier();
    const controller = new AbortController();
    for (let i = 0; i < 50; i++) {
      const w = n.wait(controller.signal);
      n.notify();
      await w;
    }
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
  });
});

describe('AsyncQueue', () => {
  it('hands items to the consumer in order, then the end', async () => {
    const q = new AsyncQueue<number>();
    q.push(1);
    q.push(2);
    q.finish();
    const got: number[] = [];
    for await (const item of q) got.push(item);
    expect(got).toEqual([1, 2]);
  });

  it('reports pressure above the high watermark and its release at the low one', async () => {
    const events: boolean[] = [];
    const q = new AsyncQueue<Buffer>({ sizeOf: (b) => b.length, highWaterBytes: 10, lowWaterBytes: 4, onPressure: (over) => events.push(over) });
    for (let i = 0; i < 4; i++) q.push(Buffer.alloc(4));
    expect(events).toEqual([true]);
    expect(q.bytes).toBe(16);
    await q.next();
    await q.next();
    expect(events).toEqual([true]);
    await q.next();
    expect(events).toEqual([true, false]);
  });

  it('fails the consumer, dropping what was queued', async () => {
    const q = new AsyncQueue<number>();
    q.push(1);
    q.fail(new Error('broken'));
    await expect(q.next()).rejects.toThrow('broken');
    expect(q.size).toBe(0);
  });

  it('tells the producer when the consumer stops early', async () => {
    let returned = 0;
    const q = new AsyncQueue<number>({ onReturn: () => returned++ });
    q.push(1);
    q.push(2);
    for await (const item of q) {
      expect(item).toBe(1);
      break;
    }
    expect(returned).toBe(1);
  });
});
