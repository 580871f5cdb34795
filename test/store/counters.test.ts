import { describe, expect, it } from 'vitest';
import { MemoryConcurrencyCounter, MemoryRateLimiter } from '../../src/store/index.js';
import { concurrencyCounterContract, rateLimiterContract } from './counters.contract.js';
import { ManualClock } from './manual-clock.js';

rateLimiterContract('memory', () => {
  const clock = new ManualClock();
  return { limiter: new MemoryRateLimiter({ now: clock.now }), advance: async (ms) => clock.advance(ms) };
});

concurrencyCounterContract('memory', () => new MemoryConcurrencyCounter());

describe('MemoryRateLimiter', () => {
  it('forgets buckets that have refilled, so passing keys do not pile up', async () => {
    const clock = new ManualClock();
    const limiter = new MemoryRateLimiter({ now: clock.now, sweepIntervalMs: 60_000 });
    for (let i = 0; i < 1000; i++) await limiter.take(`10.0.${i >> 8}.${i & 255}`, 3);
    expect(limiter.trackedKeys).toBe(1000);
    clock.advance(60_000);
    await limiter.take('another', 3);
    expect(limiter.trackedKeys).toBe(1);
  });

  it('keeps a bucket that has not refilled yet', async () => {
    const clock = new ManualClock();
    const limiter = new MemoryRateLimiter({ now: clock.now, sweepIntervalMs: 1000 });
    await limiter.take('busy', 1);
    clock.advance(30_000);
    await limiter.take('other', 1);
    expect(limiter.trackedKeys).toBe(2);
    expect(await limiter.take('busy', 1)).toBe(false);
  });

  it('records nothing for an unlimited take', async () => {
    const limiter = new MemoryRateLimiter();
    await limiter.take('k', 0);
    expect(limiter.trackedKeys).toBe(0);
  });

  it('applies a lowered limit at once', async () => {
    const limiter = new MemoryRateLimiter({ now: new ManualClock().now });
    await limiter.take('k', 10);
    // Nine tokens left, but the bucket now holds at most two.
    expect(await limiter.take('k', 2)).toBe(true);
    expect(await limiter.take('k', 2)).toBe(true);
    expect(await limiter.take('k', 2)).toBe(false);
  });
});

describe('MemoryConcurrencyCounter', () => {
  it('forgets keys back at zero', async () => {
    const counter = new MemoryConcurrencyCounter();
    await counter.acquire('a', 0);
    await counter.acquire('b', 0);
    expect(counter.trackedKeys).toBe(2);
    await counter.release('a');
    await counter.release('b');
    expect(counter.trackedKeys).toBe(0);
  });
});
