import { checkLimit } from './validate.js';

/**
 * How many of something each key holds at once (sessions per API key), shared by whoever
 * shares the counter (one process, or every replica through Redis). Async so a shared
 * implementation fits the same interface.
 */
export interface ConcurrencyCounter {
  /**
   * Counts one more for `key` unless it already holds `limit`; resolves whether it was
   * counted. Check and increment are one step, so concurrent acquires never overshoot.
   * `limit` 0 means unlimited (still counted); a negative, fractional or non-finite
   * `limit` rejects with a RangeError.
   */
  acquire(key: string, limit: number): Promise<boolean>;
  /** Gives one back; a key already at zero stays at zero. */
  release(key: string): Promise<void>;
  count(key: string): Promise<number>;
}

/** In-process counts; keys back at zero are forgotten, so memory follows what is held. */
export class MemoryConcurrencyCounter implements ConcurrencyCounter {
  private readonly counts = new Map<string, number>();

  async acquire(key: string, limit: number): Promise<boolean> {
    checkLimit(limit);
    const count = this.counts.get(key) ?? 0;
    if (limit > 0 && count >= limit) return false;
    this.counts.set(key, count + 1);
    return true;
  }

  async release(key: string): Promise<void> {
    const count = (this.counts.get(key) ?? 0) - 1;
    if (count <= 0) this.counts.delete(key);
    else this.counts.set(key, count);
  }

  async count(key: string): Promise<number> {
    return this.counts.get(key) ?? 0;
  }

  /** Keys holding anything now (for leak checks). */
  get trackedKeys(): number {
    return this.counts.size;
  }
}
