import type { WorkerPool, WorkerSlot } from '../pool/index.js';
import { AdmissionQueue, QueueFull, type QueuePosition } from '../session/admission-queue.js';

/** Someone waiting for a worker: told its position as it changes. */
export interface AdmissionWaiter {
  readonly sessionId: string;
  onQueuePosition(position: number, depth: number): void;
}

export class AdmissionTimeout extends Error {
  override readonly name = 'AdmissionTimeout';
}

export { QueueFull };

interface Pending {
  waiter: AdmissionWaiter;
  resolve(slot: WorkerSlot): void;
}

/**
 * Binds sessions to workers: at once when one is free and nobody waits, otherwise in
 * FIFO order as workers are released. Composes the session layer's queue with the pool.
 */
export class Admission {
  private readonly queue: AdmissionQueue<Pending>;

  constructor(
    private readonly pool: WorkerPool,
    maxQueue: number,
    depthUpdateIntervalMs?: number,
  ) {
    this.queue = new AdmissionQueue<Pending>({
      maxSize: maxQueue,
      depthUpdateIntervalMs,
      onPositions: (changes: QueuePosition<Pending>[]) => {
        for (const { item, position, depth } of changes) item.waiter.onQueuePosition(position, depth);
      },
    });
    pool.onWorkerFree(() => this.grant());
  }

  get queueDepth(): number {
    return this.queue.depth;
  }

  /**
   * Resolves with a bound worker. `onQueued` runs synchronously if the waiter has to wait.
   * Rejects with `QueueFull` (no room), `AdmissionTimeout` (waited `timeoutMs`), or the
   * signal's reason (the session ended while waiting); in every case it has left the queue.
   */
  admit(waiter: AdmissionWaiter, signal: AbortSignal, timeoutMs: number, onQueued: () => void): Promise<WorkerSlot> {
    if (signal.aborted) return Promise.reject(signal.reason);
    if (this.queue.depth === 0) {
      const slot = this.pool.tryAcquire(waiter.sessionId);
      if (slot) return Promise.resolve(slot);
    }
    return new Promise<WorkerSlot>((resolve, reject) => {
      const leave = (reason: unknown): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        this.queue.remove(pending);
        reject(reason);
      };
      const onAbort = (): void => leave(signal.reason);
      const pending: Pending = {
        waiter,
        resolve: (slot) => {
          clearTimeout(timer);
          signal.removeEventListener('abort', onAbort);
          resolve(slot);
        },
      };
      const timer = setTimeout(
        () => leave(new AdmissionTimeout(`no worker became free within ${Math.round(timeoutMs / 1000)} s`)),
        timeoutMs,
      );
      try {
        this.queue.enqueue(pending);
      } catch (err) {
        clearTimeout(timer);
        reject(err);
        return;
      }
      signal.addEventListener('abort', onAbort, { once: true });
      onQueued();
      // A worker may have been released between the check above and now.
      this.grant();
    });
  }

  /** Gives free workers to the front of the queue. */
  private grant(): void {
    while (this.queue.depth > 0) {
      const head = this.queue.peek();
      if (!head) return;
      const slot = this.pool.tryAcquire(head.waiter.sessionId);
      if (!slot) return;
      this.queue.shift();
      head.resolve(slot);
    }
  }
}
