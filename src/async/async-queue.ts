export interface AsyncQueueOptions<T> {
  /** Bytes an item counts against the budget (default: items are free). */
  sizeOf?: (item: T) => number;
  /** Queued bytes above which the queue reports pressure. */
  highWaterBytes?: number;
  /** Queued bytes at or below which pressure is released (default: half the high watermark). */
  lowWaterBytes?: number;
  /** Told when the queue goes over its high watermark (true) and back to its low watermark (false). */
  onPressure?: (over: boolean) => void;
  /** The consumer stopped early (`break`, `return()`): tell the producer. */
  onReturn?: () => void;
  /** Runs just before an item is handed to the consumer, so it can be finalised late; a throw fails the queue. */
  beforeDeliver?: (item: T) => void;
}

interface Waiter<T> {
  resolve: (result: IteratorResult<T>) => void;
  reject: (error: unknown) => void;
}

/**
 * A single-consumer async queue: a producer pushes as things happen, the consumer pulls
 * with `for await`. With a byte budget, the producer hears when it should stop (say, pause
 * a pipe) and when it may go on; the queue itself never refuses an item, because the
 * producer that ignores pressure is the one to fix.
 */
export class AsyncQueue<T> implements AsyncIterableIterator<T> {
  private readonly items: T[] = [];
  private head = 0;
  private waiter: Waiter<T> | undefined;
  private finished = false;
  private failure: { error: unknown } | undefined;
  private queuedBytes = 0;
  private overHighWater = false;

  constructor(private readonly options: AsyncQueueOptions<T> = {}) {}

  /** Items waiting for the consumer. */
  get size(): number {
    return this.items.length - this.head;
  }

  /** Bytes waiting for the consumer, as `sizeOf` counts them. */
  get bytes(): number {
    return this.queuedBytes;
  }

  /** True once `finish()` or `fail()` was called. */
  get closed(): boolean {
    return this.finished || this.failure !== undefined;
  }

  push(item: T): void {
    if (this.closed) return;
    const waiter = this.waiter;
    if (waiter) {
      this.waiter = undefined;
      this.deliver(item, waiter);
      return;
    }
    this.items.push(item);
    this.queuedBytes += this.options.sizeOf?.(item) ?? 0;
    const high = this.options.highWaterBytes;
    if (high !== undefined && !this.overHighWater && this.queuedBytes > high) {
      this.overHighWater = true;
      this.options.onPressure?.(true);
    }
  }

  /** No more items: the consumer gets the queued ones, then the end. */
  finish(): void {
    if (this.closed) return;
    this.finished = true;
    if (this.waiter && this.size === 0) {
      this.waiter.resolve({ value: undefined, done: true });
      this.waiter = undefined;
    }
  }

  /** Fails now: queued items are dropped and the consumer's next pull rejects with `error`. */
  fail(error: unknown): void {
    if (this.closed) return;
    this.failure = { error };
    this.clear();
    if (this.waiter) {
      this.waiter.reject(error);
      this.waiter = undefined;
    }
  }

  /** Takes the next item without waiting, if there is one. */
  shift(): T | undefined {
    if (this.size === 0) return undefined;
    return this.take();
  }

  next(): Promise<IteratorResult<T>> {
    return new Promise((resolve, reject) => {
      if (this.waiter) {
        reject(new Error('AsyncQueue: next() called while a previous next() is pending'));
      } else if (this.size > 0) {
        this.deliver(this.take(), { resolve, reject });
      } else if (this.failure) {
        reject(this.failure.error);
      } else if (this.finished) {
        resolve({ value: undefined, done: true });
      } else {
        this.waiter = { resolve, reject };
      }
    });
  }

  /** The consumer stopped early: like destroying a readable stream, the producer is told. */
  return(): Promise<IteratorResult<T>> {
    const wasOpen = !this.closed;
    this.finished = true;
    this.clear();
    if (wasOpen) this.options.onReturn?.();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    return this;
  }

  private take(): T {
    const item = this.items[this.head] as T;
    this.items[this.head] = undefined as T;
    this.head += 1;
    // Compact now and then, so a long-lived queue does not keep a growing dead prefix.
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items.splice(0, this.head);
      this.head = 0;
    }
    this.queuedBytes -= this.options.sizeOf?.(item) ?? 0;
    const high = this.options.highWaterBytes;
    if (high !== undefined && this.overHighWater && this.queuedBytes <= (this.options.lowWaterBytes ?? high / 2)) {
      this.overHighWater = false;
      this.options.onPressure?.(false);
    }
    return item;
  }

  private clear(): void {
    this.items.length = 0;
    this.head = 0;
    this.queuedBytes = 0;
    if (this.overHighWater) {
      this.overHighWater = false;
      this.options.onPressure?.(false);
    }
  }

  private deliver(item: T, waiter: Waiter<T>): void {
    try {
      this.options.beforeDeliver?.(item);
    } catch (error) {
      this.fail(error);
      waiter.reject(error);
      return;
    }
    waiter.resolve({ value: item, done: false });
  }
}
