import type { ContinuationState } from '../core/index.js';
import { checkTtl } from './validate.js';

export interface ContinuationPutOptions {
  /**
   * Lifetime of the entry in milliseconds (positive); past it the entry is gone. Without
   * it the entry stays until deleted. Every `put` sets the lifetime afresh, so a put
   * without `ttlMs` over an expiring entry makes it permanent.
   */
  ttlMs?: number;
}

/**
 * Where continuation states live between segments, for `snapshot_state` and for resuming.
 * Keys are opaque strings (a session id, a resume token). An interface so a shared
 * (Redis) store can replace the in-process default for scale-out; a shared store
 * serialises states, so a state must be a JSON value and `get` may return a copy.
 */
export interface ContinuationStore {
  get(key: string): Promise<ContinuationState | undefined>;
  /** Stores `state` under `key`, replacing what was there; rejects with a RangeError for a bad `ttlMs`. */
  put(key: string, state: ContinuationState, options?: ContinuationPutOptions): Promise<void>;
  delete(key: string): Promise<void>;
  /** Entries held now, expired ones not counted (for leak checks and metrics). */
  size(): Promise<number>;
  /** Releases timers and connections; the store is not used afterwards. */
  close(): Promise<void>;
}

export interface MemoryContinuationStoreOptions {
  /** Clock in milliseconds; monotonic by default so a wall-clock jump neither keeps nor drops entries. */
  now?: () => number;
  /** How often expired entries nobody reads again are dropped. */
  sweepIntervalMs?: number;
}

interface Entry {
  state: ContinuationState;
  /** `Infinity` when the entry does not expire. */
  expiresAt: number;
}

/**
 * In-process store: the default for a single node. Expired entries vanish when touched;
 * one unref'd timer, running only while some entry can expire, drops the ones nobody
 * touches again, so memory is bounded without a timer per entry.
 */
export class MemoryContinuationStore implements ContinuationStore {
  private readonly entries = new Map<string, Entry>();
  private readonly now: () => number;
  private readonly sweepIntervalMs: number;
  private sweeper: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(options: MemoryContinuationStoreOptions = {}) {
    this.now = options.now ?? (() => performance.now());
    this.sweepIntervalMs = options.sweepIntervalMs ?? 60_000;
  }

  async get(key: string): Promise<ContinuationState | undefined> {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt <= this.now()) {
      this.entries.delete(key);
      return undefined;
    }
    return entry.state;
  }

  async put(key: string, state: ContinuationState, options: ContinuationPutOptions = {}): Promise<void> {
    checkTtl(options.ttlMs);
    const expiresAt = options.ttlMs === undefined ? Infinity : this.now() + options.ttlMs;
    // Stored as given, not copied: callers hand over ownership of the object.
    this.entries.set(key, { state, expiresAt });
    if (expiresAt !== Infinity) this.startSweeper();
  }

  async delete(key: string): Promise<void> {
    this.entries.delete(key);
  }

  async size(): Promise<number> {
    this.sweep();
    return this.entries.size;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.stopSweeper();
    this.entries.clear();
  }

  private startSweeper(): void {
    if (this.sweeper || this.closed) return;
    this.sweeper = setInterval(() => this.sweep(), this.sweepIntervalMs);
    // Expiry must never keep the process alive.
    this.sweeper.unref();
  }

  private stopSweeper(): void {
    clearInterval(this.sweeper);
    this.sweeper = undefined;
  }

  /** Drops expired entries; stops the timer once no entry can expire. */
  private sweep(): void {
    const now = this.now();
    let expiring = false;
    for (const [key, entry] of this.entries) {
      if (entry.expiresAt <= now) this.entries.delete(key);
      else if (entry.expiresAt !== Infinity) expiring = true;
    }
    if (!expiring) this.stopSweeper();
  }
}
