import type { Generator } from '../generation/types.js';
import type { PoolWorker, WorkerHealth } from './pool-worker.js';

/** What `/status` reports for one worker (PROTOCOL.md `gpu_status` entries). */
export interface WorkerStatus extends Omit<WorkerHealth, 'restarts' | 'pid'> {
  available: boolean;
  client_count: number;
  /** livegen addition: the bound session, restarts and process id. */
  current_session: string | null;
  restarts: number;
  pid: number | null;
}

/** One worker bound to one session. */
export interface WorkerSlot {
  /** Worker id = GPU id, reported as `gpu_assigned.gpu_id`. */
  readonly id: number;
  readonly generator: Generator;
  readonly sessionId: string | undefined;
}

interface SlotEntry extends WorkerSlot {
  readonly worker: PoolWorker;
  sessionId: string | undefined;
}

/**
 * The workers and who holds them. A session holds its worker from binding until it ends
 * (continuation state stays hot there, as in FastVideo); only workers that accept work
 * (up, warmed, idle) are bound. Listeners hear when a worker may have become free, so
 * the admission queue can bind the next waiter.
 */
export class WorkerPool {
  private readonly slots: SlotEntry[];
  private readonly freeListeners = new Set<() => void>();

  constructor(workers: PoolWorker[]) {
    if (workers.length === 0) throw new RangeError('a pool needs at least one worker');
    this.slots = workers.map((worker) => ({ id: worker.id, generator: worker.generator, worker, sessionId: undefined }));
    for (const worker of workers) worker.onChange(() => this.notify());
  }

  /** Starts every worker (spawning processes where there are any); does not wait for them. */
  start(): void {
    for (const slot of this.slots) slot.worker.start();
  }

  async stop(graceMs: number): Promise<void> {
    await Promise.allSettled(this.slots.map((slot) => slot.worker.stop(graceMs)));
  }

  get total(): number {
    return this.slots.length;
  }

  /** Workers that could take a session now. */
  get available(): number {
    return this.slots.filter((s) => s.sessionId === undefined && s.worker.acceptsWork).length;
  }

  /** Workers up and warmed, bound or not. */
  get ready(): number {
    return this.slots.filter((s) => s.worker.health().ready).length;
  }

  /** Binds a free, ready worker to `sessionId`, or returns undefined when none is. */
  tryAcquire(sessionId: string): WorkerSlot | undefined {
    const slot = this.slots.find((s) => s.sessionId === undefined && s.worker.acceptsWork);
    if (!slot) return undefined;
    slot.sessionId = sessionId;
    return slot;
  }

  /** Unbinds the slot (idempotent) and wakes whoever waits for a worker. */
  release(slot: WorkerSlot): void {
    const entry = this.slots.find((s) => s === slot);
    if (!entry || entry.sessionId === undefined) return;
    entry.sessionId = undefined;
    this.notify();
  }

  /** `listener` runs whenever a worker may have become bindable (released, restarted, idle again). */
  onWorkerFree(listener: () => void): () => void {
    this.freeListeners.add(listener);
    return () => this.freeListeners.delete(listener);
  }

  status(): Record<string, WorkerStatus> {
    const out: Record<string, WorkerStatus> = {};
    for (const slot of this.slots) {
      const health = slot.worker.health();
      out[String(slot.id)] = {
        ...health,
        available: slot.sessionId === undefined && slot.worker.acceptsWork,
        client_count: slot.sessionId === undefined ? 0 : 1,
        current_session: slot.sessionId ?? null,
      };
    }
    return out;
  }

  private notify(): void {
    for (const listener of this.freeListeners) listener();
  }
}
