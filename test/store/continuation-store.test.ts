import { afterEach, describe, expect, it, vi } from 'vitest';
import { MemoryContinuationStore } from '../../src/store/index.js';
import { continuationStoreContract } from './continuation-store.contract.js';
import { ManualClock } from './manual-clock.js';

continuationStoreContract('memory', () => {
  const clock = new ManualClock();
  return {
    store: new MemoryContinuationStore({ now: clock.now }),
    advance: async (ms) => clock.advance(ms),
  };
});

describe('MemoryContinuationStore', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  const state = { kind: 'test', payload: {} };

  it('keeps the object it was given rather than a copy', async () => {
    const store = new MemoryContinuationStore();
    await store.put('s1', state);
    expect(await store.get('s1')).toBe(state);
    await store.close();
  });

  it('runs no timer while no entry can expire', async () => {
    vi.useFakeTimers();
    const store = new MemoryContinuationStore();
    await store.put('s1', state);
    expect(vi.getTimerCount()).toBe(0);
    await store.close();
  });

  it('sweeps with one timer however many entries expire', async () => {
    vi.useFakeTimers();
    const clock = new ManualClock();
    const store = new MemoryContinuationStore({ now: clock.now, sweepIntervalMs: 1000 });
    for (let i = 0; i < 100; i++) await store.put(`s${i}`, state, { ttlMs: 500 + i });
    expect(vi.getTimerCount()).toBe(1);
    await store.close();
  });

  it('stops its sweep timer once the sweep has dropped every expiring entry', async () => {
    vi.useFakeTimers();
    const clock = new ManualClock();
    const store = new MemoryContinuationStore({ now: clock.now, sweepIntervalMs: 1000 });
    await store.put('expiring', state, { ttlMs: 500 });
    await store.put('kept', state);
    clock.advance(600);
    vi.advanceTimersByTime(1000);
    expect(vi.getTimerCount()).toBe(0);
    expect(await store.size()).toBe(1);
    await store.close();
  });

  it('does not let its sweep timer keep the process alive', async () => {
    const store = new MemoryContinuationStore();
    const before = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    await store.put('s1', state, { ttlMs: 60_000 });
    expect(process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length).toBe(before);
    await store.close();
  });

  it('clears its timer and its entries on close', async () => {
    vi.useFakeTimers();
    const store = new MemoryContinuationStore();
    await store.put('s1', state, { ttlMs: 60_000 });
    await store.close();
    expect(vi.getTimerCount()).toBe(0);
    expect(await store.size()).toBe(0);
  });
});
