/**
 * A replica's membership in the cluster: it announces itself every heartbeat with what
 * `/status` knows (workers, free ones, preset, model, draining), and again at once when a
 * worker frees, so routers place the next waiter without waiting for the beat. When its
 * free workers grew, it says so on the queue's channel, which wakes the router whose
 * waiter is at the head.
 */
import type { Redis } from 'ioredis';
import type { ReplicaRecord, ReplicaRegistry } from './replicas.js';

export interface ReplicaAgentOptions {
  /** The record as it is now (everything but `beat_at`). */
  describe(): Omit<ReplicaRecord, 'beat_at'>;
  heartbeatMs: number;
  presenceTtlMs: number;
  /** Where capacity news goes (the admission queue's channel). */
  channel: string;
  onError?: (err: unknown) => void;
}

/**
 * Delay of a beat caused by a change (not by the timer): short, because a router waits
 * for it to place the next waiter on a freed worker; changes within it share one beat.
 */
const NUDGE_MS = 5;

export class ReplicaAgent {
  private readonly timer: NodeJS.Timeout;
  private nudgeTimer: NodeJS.Timeout | undefined;
  private lastAvailable = 0;
  private draining = false;
  private closed = false;
  private failing = false;

  constructor(
    private readonly client: Redis,
    private readonly registry: ReplicaRegistry,
    private readonly options: ReplicaAgentOptions,
  ) {
    this.timer = setInterval(() => void this.beat(), options.heartbeatMs);
    this.timer.unref();
    void this.beat();
  }

  /** Something changed (a worker freed or was taken): beat soon, not at the next tick. */
  nudge(): void {
    if (this.closed || this.nudgeTimer) return;
    this.nudgeTimer = setTimeout(() => {
      this.nudgeTimer = undefined;
      void this.beat();
    }, NUDGE_MS);
    this.nudgeTimer.unref();
  }

  /** Stops taking new sessions: announced at once, so no router places here any more. */
  async drain(): Promise<void> {
    this.draining = true;
    await this.beat();
  }

  /** Leaves the cluster (a clean exit): the record goes at once. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    clearTimeout(this.nudgeTimer);
    const id = this.options.describe().id;
    await this.registry.withdraw(id).catch(() => undefined);
  }

  private async beat(): Promise<void> {
    if (this.closed) return;
    const record: ReplicaRecord = { ...this.options.describe(), beat_at: Date.now() };
    if (this.draining) record.draining = true;
    try {
      await this.registry.announce(record, this.options.presenceTtlMs);
      if (record.available > this.lastAvailable && !record.draining) await this.client.publish(this.options.channel, 'c');
      this.lastAvailable = record.available;
      this.failing = false;
    } catch (err) {
      // Redis down: the record lapses and routers stop placing here; the next beat after it is back restores it.
      if (!this.failing) this.options.onError?.(err);
      this.failing = true;
    }
  }
}
