import { checkPerMinute } from './validate.js';

/**
 * A token bucket per key, shared by whoever shares the limiter (one process, or every
 * replica through Redis). Async so a shared implementation fits the same interface.
 */
export interface RateLimiter {
  /**
   * Takes one token from `key`'s bucket, which holds at most `perMinute` tokens and refills
   * continuously at `perMinute` a minute; a key never seen starts full. Resolves false,
   * taking nothing, when less than one token is left. `perMinute` 0 means unlimited;
   * a negative or non-finite `perMinute` rejects with a RangeError.
   */
  take(key: string, perMinute: number): Promise<boolean>;
}

export interface MemoryRateLimiterOptions {
  /** Clock in milliseconds; monotonic by default so a wall-clock jump neither refills nor drains buckets. */
  now?: () => number;
  /** How often, at most, `take` looks for buckets to forget. */
  sweepIntervalMs?: number;
}

interface Bucket {
  tokens: number;
  /** When `tokens` was computed. */
  at: number;
  /** When the bucket will be full again, and so carries no information. */
  fullAt: number;
}

const MINUTE_MS = 60_000;

/**
 * In-process token buckets. A full bucket is the same as no bucket, so buckets are
 * forgotten once full; any bucket is full a minute after its last take, so the table
 * holds only keys seen in the last minute or two, however many keys pass by. The
 * forgetting happens inside `take`, at most once per sweep interval: no timer to stop.
 */
export class MemoryRateLimiter implements RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly now: () => number;
  private readonly sweepIntervalMs: number;
  private lastSweep: number;

  constructor(options: MemoryRateLimiterOptions = {}) {
    this.now = options.now ?? (() => performance.now());
    this.sweepIntervalMs = options.sweepIntervalMs ?? MINUTE_MS;
    this.lastSweep = this.now();
  }

  async take(key: string, perMinute: number): Promise<boolean> {
    checkPerMinute(perMinute);
    if (perMinute === 0) return true;
    const now = this.now();
    this.forgetFullBuckets(now);
    const bucket = this.buckets.get(key);
    // Capped at the current capacity, so a lowered limit applies at once.
    const tokens = bucket ? Math.min(perMinute, bucket.tokens + ((now - bucket.at) * perMinute) / MINUTE_MS) : perMinute;
    if (tokens < 1) {
      this.buckets.set(key, { tokens, at: now, fullAt: now + ((perMinute - tokens) * MINUTE_MS) / perMinute });
      return false;
    }
    const left = tokens - 1;
    this.buckets.set(key, { tokens: left, at: now, fullAt: now + ((perMinute - left) * MINUTE_MS) / perMinute });
    return true;
  }

  /** Buckets held now (for leak checks). */
  get trackedKeys(): number {
    return this.buckets.size;
  }

  private forgetFullBuckets(now: number): void {
    if (now - this.lastSweep < this.sweepIntervalMs) return;
    this.lastSweep = now;
    for (const [key, bucket] of this.buckets) {
      if (bucket.fullAt <= now) this.buckets.delete(key);
    }
  }
}
