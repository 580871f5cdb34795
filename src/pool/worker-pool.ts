import type { Generator } from '../generation/types.js';

/** What `/status` reports for one worker (PROTOCOL.md `gpu_status` entries). */
export interface WorkerStatus {
  ready: boolean;
  available: boolean;
  client_count: number;
  current_model_id: string | null;
  process_alive: boolean;
  warmup_enabled: boolean;
  warmup_success: boolean;
  warmup_error: string | null;
  warmup_timings: Record<string, number>;
  current_session: string | null;
}

/** One generation slot: a GPU's worth of capacity that one session holds at a time. */
export interface WorkerSlot {
  /** Worker id, reported as `gpu_assigned.gpu_id`. */
  readonly id: number;
  readonly generator: Generator;
  /** Session bound to it, if any. */
  readonly sessionId: string | undefined;
}

interface SlotEntry extends WorkerSlot {
  sessionId: string | undefined;
}

/**
 * Worker slots for in-process generators. A session holds its slot from binding until
 * it ends (continuation state stays hot on that worker); `release` hands it back and
 * tells listeners so the admission queue can bind the next waiter.
 */
export class WorkerPool {
  private readonly slots: SlotEntry[];
  private readonly releaseListeners = new Set<() => void>();

  constructor(workers: { id: number; generator: Generator }[]) {
    if (workers.length === 0) throw new RangeError('a pool needs at least one worker');
    this.slots = workers.map((w) => ({ id: w.id, generator: w.generator, sessionId: undefined }));
  }

  get total(): number {
    return this.slots.length;
  }

  get available(): number {
    return this.slots.filter((s) => s.sessionId === undefined).length;
  }

  /** Ready workers; in-process generators are ready from the start. */
  get ready(): number {
    return this.slots.length;
  }

  /** Binds a free slot to `sessionId`, or returns undefined when none is free. */
  tryAcquire(sessionId: string): WorkerSlot | undefined {
    const slot = this.slots.find((s) => s.sessionId === undefined);
    if (!slot) return undefined;
    slot.sessionId = sessionId;
    return slot;
  }

  /** Frees the slot (idempotent) and wakes whoever waits for one. */
  release(slot: WorkerSlot): void {
    const entry = this.slots.find((s) => s === slot);
    if (!entry || entry.sessionId === undefined) return;
    entry.sessionId = undefined;
    for (const listener of this.releaseListeners) listener();
  }

  onRelease(listener: () => void): () => void {
    this.releaseListeners.add(listener);
    return () => this.releaseListeners.delete(listener);
  }

  status(): Record<string, WorkerStatus> {
    const out: Record<string, WorkerStatus> = {};
    for (const slot of this.slots) {
      out[String(slot.id)] = {
        ready: true,
        available: slot.sessionId === undefined,
        client_count: slot.sessionId === undefined ? 0 : 1,
        current_model_id: slot.generator.modelId,
        process_alive: true,
        warmup_enabled: false,
        warmup_success: false,
        warmup_error: null,
        warmup_timings: {},
        current_session: slot.sessionId ?? null,
      };
    }
    return out;
  }
}
