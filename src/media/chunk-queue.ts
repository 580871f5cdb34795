/**
 * A single-consumer async queue: the encoder pushes as ffmpeg produces, the caller
 * pulls with `for await` while it is still writing frames. Not bounded: its input is
 * compressed media, at most one segment's worth, and bounding it would make `end()`
 * depend on someone reading.
 */
export class ChunkQueue<T> implements AsyncIterableIterator<T> {
  private readonly items: T[] = [];
  private waiter: { resolve: (result: IteratorResult<T>) => void; reject: (error: unknown) => void } | undefined;
  private finished = false;
  private error: unknown;
  private hasError = false;
  private readonly onReturn: () => void;
  /** Called just before an item is handed to the consumer, so it can be finalised late. */
  private readonly beforeDeliver: (item: T) => void;

  constructor(hooks: { onReturn?: () => void; beforeDeliver?: (item: T) => void } = {}) {
    this.onReturn = hooks.onReturn ?? (() => undefined);
    this.beforeDeliver = hooks.beforeDeliver ?? (() => undefined);
  }

  push(item: T): void {
    if (this.finished || this.hasError) return;
    if (this.waiter) {
      const { resolve, reject } = this.waiter;
      this.waiter = undefined;
      this.deliver(item, resolve, reject);
    } else {
      this.items.push(item);
    }
  }

  /** No more items: the consumer sees the queued ones, then the end. */
  finish(): void {
    if (this.finished || this.hasError) return;
    this.finished = true;
    if (this.waiter && this.items.length === 0) {
      this.waiter.resolve({ value: undefined, done: true });
      this.waiter = undefined;
    }
  }

  /** Fail now: queued items are dropped, the consumer's next pull rejects. */
  fail(error: unknown): void {
    if (this.finished || this.hasError) return;
    this.hasError = true;
    this.error = error;
    this.items.length = 0;
    if (this.waiter) {
      this.waiter.reject(error);
      this.waiter = undefined;
    }
  }

  get size(): number {
    return this.items.length;
  }

  next(): Promise<IteratorResult<T>> {
    return new Promise((resolve, reject) => {
      if (this.waiter) {
        reject(new Error('ChunkQueue: next() called while a previous next() is pending'));
        return;
      }
      if (this.items.length > 0) {
        this.deliver(this.items.shift() as T, resolve, reject);
      } else if (this.hasError) {
        reject(this.error);
      } else if (this.finished) {
        resolve({ value: undefined, done: true });
      } else {
        this.waiter = { resolve, reject };
      }
    });
  }

  /** The consumer stopped early (`break`): like destroying a readable stream, tell the producer. */
  return(): Promise<IteratorResult<T>> {
    const wasOpen = !this.finished && !this.hasError;
    this.finished = true;
    this.items.length = 0;
    if (wasOpen) this.onReturn();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    return this;
  }

  private deliver(item: T, resolve: (result: IteratorResult<T>) => void, reject: (error: unknown) => void): void {
    try {
      this.beforeDeliver(item);
    } catch (error) {
      this.fail(error);
      reject(error);
      return;
    }
    resolve({ value: item, done: false });
  }
}
