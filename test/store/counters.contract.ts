import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ConcurrencyCounter, RateLimiter } from '../../src/store/index.js';

/** A rate limiter under test and a way to move its time on. */
export interface RateLimiterFixture {
  limiter: RateLimiter;
  /** Moves the limiter's clock `ms` forward: a manual clock in process, a real wait for a server. */
  advance(ms: number): Promise<void>;
  /** Cleans up after a test (a connection); optional. */
  dispose?(): Promise<void>;
}

/**
 * What every RateLimiter promises. Rates are 60 a minute (one token a second) so that a
 * limiter on real time refills within the suite's waits.
 */
export function rateLimiterContract(name: string, makeLimiter: () => RateLimiterFixture | Promise<RateLimiterFixture>): void {
  describe(`RateLimiter contract: ${name}`, () => {
    let fixture: RateLimiterFixture;
    let limiter: RateLimiter;
    afterEach(async () => {
      await fixture.dispose?.();
    });
    beforeEach(async () => {
      fixture = await makeLimiter();
      limiter = fixture.limiter;
    });

    async function takeMany(key: string, perMinute: number, n: number): Promise<boolean[]> {
      const results: boolean[] = [];
      for (let i = 0; i < n; i++) results.push(await limiter.take(key, perMinute));
      return results;
    }

    it('grants a new key a full bucket of perMinute tokens, then refuses', async () => {
      expect(await takeMany('k', 5, 5)).toEqual([true, true, true, true, true]);
      expect(await limiter.take('k', 5)).toBe(false);
    });

    it('refills continuously at perMinute a minute', async () => {
      await takeMany('k', 60, 60);
      expect(await limiter.take('k', 60)).toBe(false);
      await fixture.advance(1000);
      expect(await limiter.take('k', 60)).toBe(true);
      expect(await limiter.take('k', 60)).toBe(false);
    });

    it('grants nothing for part of a token', async () => {
      await takeMany('k', 60, 60);
      await fixture.advance(500);
      expect(await limiter.take('k', 60)).toBe(false);
      await fixture.advance(600);
      expect(await limiter.take('k', 60)).toBe(true);
    });

    it('takes nothing when it refuses', async () => {
      await takeMany('k', 60, 60);
      expect(await takeMany('k', 60, 3)).toEqual([false, false, false]);
      await fixture.advance(1100);
      expect(await limiter.take('k', 60)).toBe(true);
    });

    it('never holds more than perMinute tokens, however long a key is idle', async () => {
      await limiter.take('k', 3);
      await fixture.advance(5 * 60_000);
      expect(await takeMany('k', 3, 4)).toEqual([true, true, true, false]);
    });

    it('keeps keys apart', async () => {
      await takeMany('a', 2, 2);
      expect(await limiter.take('a', 2)).toBe(false);
      expect(await limiter.take('b', 2)).toBe(true);
      expect(await limiter.take('a:b', 2)).toBe(true);
    });

    it('treats perMinute 0 as unlimited', async () => {
      expect(await takeMany('k', 0, 100)).toEqual(new Array<boolean>(100).fill(true));
    });

    it('grants exactly perMinute of many concurrent takes', async () => {
      const results = await Promise.all(Array.from({ length: 20 }, () => limiter.take('k', 5)));
      expect(results.filter(Boolean)).toHaveLength(5);
    });

    it('refuses a negative or non-finite perMinute with a RangeError', async () => {
      for (const perMinute of [-1, Number.NaN, Infinity]) {
        await expect(limiter.take('k', perMinute)).rejects.toThrow(RangeError);
      }
    });
  });
}

/** What every ConcurrencyCounter promises. */
export function concurrencyCounterContract(
  name: string,
  makeCounter: () => (ConcurrencyCounter & { close?(): Promise<void> }) | Promise<ConcurrencyCounter & { close?(): Promise<void> }>,
): void {
  describe(`ConcurrencyCounter contract: ${name}`, () => {
    let counter: ConcurrencyCounter & { close?(): Promise<void> };
    beforeEach(async () => {
      counter = await makeCounter();
    });
    afterEach(async () => {
      await counter.close?.();
    });

    it('counts zero for a key never acquired', async () => {
      expect(await counter.count('k')).toBe(0);
    });

    it('grants up to the limit, then refuses without counting', async () => {
      expect(await counter.acquire('k', 2)).toBe(true);
      expect(await counter.acquire('k', 2)).toBe(true);
      expect(await counter.acquire('k', 2)).toBe(false);
      expect(await counter.count('k')).toBe(2);
    });

    it('grants again once a place is released', async () => {
      await counter.acquire('k', 1);
      await counter.release('k');
      expect(await counter.count('k')).toBe(0);
      expect(await counter.acquire('k', 1)).toBe(true);
    });

    it('treats limit 0 as unlimited and still counts', async () => {
      for (let i = 0; i < 50; i++) expect(await counter.acquire('k', 0)).toBe(true);
      expect(await counter.count('k')).toBe(50);
    });

    it('never counts below zero', async () => {
      await counter.release('k');
      await counter.acquire('k', 1);
      await counter.release('k');
      await counter.release('k');
      expect(await counter.count('k')).toBe(0);
      expect(await counter.acquire('k', 1)).toBe(true);
      expect(await counter.acquire('k', 1)).toBe(false);
    });

    it('keeps keys apart', async () => {
      await counter.acquire('a', 1);
      expect(await counter.acquire('a', 1)).toBe(false);
      expect(await counter.acquire('b', 1)).toBe(true);
      await counter.release('b');
      expect(await counter.count('a')).toBe(1);
      expect(await counter.count('b')).toBe(0);
    });

    it('grants exactly the limit of many concurrent acquires', async () => {
      const results = await Promise.all(Array.from({ length: 20 }, () => counter.acquire('k', 3)));
      expect(results.filter(Boolean)).toHaveLength(3);
      expect(await counter.count('k')).toBe(3);
    });

    it('applies the limit given with each acquire', async () => {
      await counter.acquire('k', 5);
      await counter.acquire('k', 5);
      expect(await counter.acquire('k', 2)).toBe(false);
      expect(await counter.acquire('k', 3)).toBe(true);
    });

    it('refuses a negative, fractional or non-finite limit with a RangeError', async () => {
      for (const limit of [-1, 1.5, Number.NaN, Infinity]) {
        await expect(counter.acquire('k', limit)).rejects.toThrow(RangeError);
      }
      expect(await counter.count('k')).toBe(0);
    });
  });
}
