/**
 * FIFO of sessions waiting for admission, with live positions. It only orders and
 * reports; who gets freed capacity is decided by the caller taking `shift()`.
 *
 * A waiter hears of a new position at the end of the event-loop turn that changed it,
 * in the check phase (`setImmediate`), so every join and leave of one turn — however
 * many I/O callbacks and microtask checkpoints it spans — costs one report pass and at
 * most one notification per waiter. A change of the queue depth alone (someone joined
 * or left behind it) is reported too, but coalesced over `depthUpdateIntervalMs`:
 * telling every waiter of every arrival at once would cost a quadratic number of frames
 * when thousands queue up.
 *
 * Waiters sit in a doubly linked list indexed by a Map, so joining, leaving from any
 * place and `has` are O(1). A report pass walks only the waiters whose position may
 * have changed (from the tail back to the earliest one affected), except when it must
 * also tell depth-only changes, which visits everyone.
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
  /** Called with each waiter whose position or the depth changed since it was last told, front to back. */
  onPositions?: (changes: QueuePosition<T>[]) => void;
  /** Longest delay before a depth-only change is reported (default 1000 ms; 0 = at once). */
  depthUpdateIntervalMs?: number;
}

interface Waiter<T> {
  readonly item: T;
  /** Arrival number: the queue never reorders, so comparing these compares places in O(1). */
  readonly arrival: number;
  prev: Waiter<T> | undefined;
  next: Waiter<T> | undefined;
  /** What this waiter was last told; position -1 = nothing yet. */
  toldPosition: number;
  toldDepth: number;
}

export class AdmissionQueue<T> {
  private readonly waiters = new Map<T, Waiter<T>>();
  private head: Waiter<T> | undefined;
  private tail: Waiter<T> | undefined;
  private arrivals = 0;
  /**
   * The earliest waiter whose position may differ from what it was told; everyone ahead
   * of it still holds the position it heard. Undefined when no position changed.
   */
  private firstMoved: Waiter<T> | undefined;
  /** The depth changed since the last pass that told everyone; some waiter may hold a stale depth. */
  private depthChanged = false;
  private reportImmediate: NodeJS.Immediate | undefined;
  private depthTimer: NodeJS.Timeout | undefined;
  private readonly depthUpdateIntervalMs: number;
  readonly maxSize: number;

  constructor(private readonly options: AdmissionQueueOptions<T>) {
    this.maxSize = options.maxSize;
    this.depthUpdateIntervalMs = options.depthUpdateIntervalMs ?? 1000;
  }

  get depth(): number {
    return this.waiters.size;
  }

  /** Adds a waiter at the back and returns its position. */
  enqueue(item: T): number {
    if (this.waiters.size >= this.maxSize) throw new QueueFull(`queue is full (${this.maxSize} waiting)`);
    if (this.waiters.has(item)) throw new Error('already queued');
    const waiter: Waiter<T> = {
      item,
      arrival: this.arrivals++,
      prev: this.tail,
      next: undefined,
      toldPosition: -1,
      toldDepth: 0,
    };
    if (this.tail) this.tail.next = waiter;
    else this.head = waiter;
    this.tail = waiter;
    this.waiters.set(item, waiter);
    // Everyone else is ahead of it, so an earlier mover stays the earliest.
    this.firstMoved ??= waiter;
    this.changed();
    return this.waiters.size - 1;
  }

  /** Takes the waiter at the front, if any. */
  shift(): T | undefined {
    const head = this.head;
    if (!head) return undefined;
    this.unlink(head);
    return head.item;
  }

  /** Removes a waiter wherever it stands (it left); the ones behind move up. */
  remove(item: T): boolean {
    const waiter = this.waiters.get(item);
    if (!waiter) return false;
    this.unlink(waiter);
    return true;
  }

  has(item: T): boolean {
    return this.waiters.has(item);
  }

  /** The waiter's place (0 = front), or -1. O(n): for inspection, nothing on a hot path calls it. */
  positionOf(item: T): number {
    const target = this.waiters.get(item);
    if (!target) return -1;
    let position = 0;
    for (let w = this.head; w && w !== target; w = w.next) position += 1;
    return position;
  }

  peek(): T | undefined {
    return this.head?.item;
  }

  /** Sends every pending update now: new positions and depth-only changes alike. */
  flush(): void {
    this.report(true);
  }

  /**
   * Empties the queue without telling anyone and cancels pending reports; returns the
   * waiters front to back (for a caller shutting down, which answers them itself).
   */
  clear(): T[] {
    const items = [...this.waiters.keys()];
    this.waiters.clear();
    this.head = this.tail = this.firstMoved = undefined;
    this.depthChanged = false;
    this.cancelReports();
    return items;
  }

  private unlink(waiter: Waiter<T>): void {
    const { prev, next } = waiter;
    if (prev) prev.next = next;
    else this.head = next;
    if (next) next.prev = prev;
    else this.tail = prev;
    waiter.prev = waiter.next = undefined;
    this.waiters.delete(waiter.item);
    // Those behind it moved up; the earliest of them may now be the earliest mover.
    if (!this.firstMoved || this.firstMoved.arrival >= waiter.arrival) this.firstMoved = next;
    this.changed();
  }

  private changed(): void {
    this.depthChanged = true;
    if (this.reportImmediate) return;
    this.reportImmediate = setImmediate(() => {
      this.reportImmediate = undefined;
      this.report(this.depthUpdateIntervalMs === 0);
    });
  }

  /** One pass: tells new positions, and depth-only changes too when `includeDepthOnly`. */
  private report(includeDepthOnly: boolean): void {
    if (this.reportImmediate) clearImmediate(this.reportImmediate);
    this.reportImmediate = undefined;
    const depth = this.waiters.size;
    const changes: QueuePosition<T>[] = [];
    const tell = (waiter: Waiter<T>, position: number): void => {
      waiter.toldPosition = position;
      waiter.toldDepth = depth;
      changes.push({ item: waiter.item, position, depth });
    };

    if (includeDepthOnly) {
      clearTimeout(this.depthTimer);
      this.depthTimer = undefined;
      let position = 0;
      for (let w = this.head; w; w = w.next, position += 1) {
        if (w.toldPosition !== position || w.toldDepth !== depth) tell(w, position);
      }
      this.depthChanged = false;
    } else {
      // Positions are known from the tail (depth - 1), so walk back from it to the
      // earliest mover; those ahead of it kept their place and can only hold a stale depth.
      const stop = this.firstMoved;
      let staleDepth = this.depthChanged && stop !== this.head;
      if (stop) {
        let position = depth - 1;
        for (let w = this.tail; w; w = w.prev, position -= 1) {
          if (w.toldPosition !== position) tell(w, position);
          else if (w.toldDepth !== depth) staleDepth = true;
          if (w === stop) break;
        }
        changes.reverse();
      }
      if (staleDepth && !this.depthTimer) {
        this.depthTimer = setTimeout(() => {
          this.depthTimer = undefined;
          this.report(true);
        }, this.depthUpdateIntervalMs);
        this.depthTimer.unref();
      }
    }
    this.firstMoved = undefined;
    if (changes.length > 0) this.options.onPositions?.(changes);
  }

  private cancelReports(): void {
    if (this.reportImmediate) clearImmediate(this.reportImmediate);
    this.reportImmediate = undefined;
    clearTimeout(this.depthTimer);
    this.depthTimer = undefined;
  }
}
