/**
 * FIFO of sessions waiting for a worker, with live positions. It only orders and
 * reports; who gets a freed worker is decided by the caller taking `shift()`.
 *
 * A waiter hears of a new position at the end of the event-loop turn that changed it
 * (a burst of joins or leaves costs one notification per waiter, not one per change).
 * A change of the queue depth alone (someone joined behind it) is reported too, but
 * coalesced over `depthUpdateIntervalMs`: telling every waiter of every arrival at once
 * would cost a quadratic number of frames when thousands queue up.
 */
export interface QueuePosition<T> {
  item: T;
  /** 0 = next to be admitted. */
  position: number;
  depth: number;
}

export class QueueFull extends Error {
  override readonly name = 'QueueFull';
}

export interface AdmissionQueueOptions<T> {
  /** Waiters at most; `enqueue` past it throws `QueueFull`. */
  maxSize: number;
  /** Called with each waiter whose position or the depth changed since it was last told. */
  onPositions?: (changes: QueuePosition<T>[]) => void;
  /** Longest delay before a depth-only change is reported (default 1000 ms; 0 = at once). */
  depthUpdateIntervalMs?: number;
}

export class AdmissionQueue<T> {
  private readonly items: T[] = [];
  private readonly told = new Map<T, { position: number; depth: number }>();
  private flushScheduled = false;
  private depthTimer: NodeJS.Timeout | undefined;
  readonly maxSize: number;

  constructor(private readonly options: AdmissionQueueOptions<T>) {
    this.maxSize = options.maxSize;
  }

  get depth(): number {
    return this.items.length;
  }

  /** Adds a waiter at the back and returns its position. */
  enqueue(item: T): number {
    if (this.items.length >= this.maxSize) throw new QueueFull(`queue is full (${this.maxSize} waiting)`);
    if (this.items.includes(item)) throw new Error('already queued');
    this.items.push(item);
    this.scheduleFlush();
    return this.items.length - 1;
  }

  /** Takes the waiter at the front, if any. */
  shift(): T | undefined {
    const item = this.items.shift();
    if (item !== undefined) {
      this.told.delete(item);
      this.scheduleFlush();
    }
    return item;
  }

  /** Removes a waiter wherever it stands (it left); the ones behind move up. */
  remove(item: T): boolean {
    const index = this.items.indexOf(item);
    if (index < 0) return false;
    this.items.splice(index, 1);
    this.told.delete(item);
    this.scheduleFlush();
    return true;
  }

  has(item: T): boolean {
    return this.items.includes(item);
  }

  positionOf(item: T): number {
    return this.items.indexOf(item);
  }

  peek(): T | undefined {
    return this.items[0];
  }

  /** Sends every pending update now: new positions and depth-only changes alike. */
  flush(): void {
    this.report(true);
  }

  private report(includeDepthOnly: boolean): void {
    this.flushScheduled = false;
    const depth = this.items.length;
    const changes: QueuePosition<T>[] = [];
    let depthPending = false;
    this.items.forEach((item, position) => {
      const last = this.told.get(item);
      if (last && last.position === position && last.depth === depth) return;
      if (last && last.position === position && !includeDepthOnly) {
        depthPending = true;
        return;
      }
      this.told.set(item, { position, depth });
      changes.push({ item, position, depth });
    });
    if (includeDepthOnly) {
      clearTimeout(this.depthTimer);
      this.depthTimer = undefined;
    } else if (depthPending && !this.depthTimer) {
      this.depthTimer = setTimeout(() => this.report(true), this.options.depthUpdateIntervalMs ?? 1000);
      this.depthTimer.unref();
    }
    if (changes.length > 0) this.options.onPositions?.(changes);
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    queueMicrotask(() => {
      if (this.flushScheduled) this.report((this.options.depthUpdateIntervalMs ?? 1000) === 0);
    });
  }
}
