import { AdmissionQueue, QueueFull } from './admission-queue.js';

/**
 * Admission: who may start now, and in what order the others wait. The session layer
 * knows sessions, not what they are admitted to, so the lease `L` is opaque here and
 * capacity comes through a `Placement<L>` port (the server adapts its worker pool to
 * it). `AdmissionBackend` is the seam for more than one process: `LocalAdmission` keeps
 * the queue in memory; a shared backend (a Redis queue) implements the same contract.
 */

/** A session asking to be admitted: told its place while it waits. */
export interface AdmissionTicket {
  readonly sessionId: string;
  /** Its place (0 = next) and the queue depth, whenever either changed; must not throw. */
  onPosition(position: number, depth: number): void;
}

export interface AdmitOptions {
  /** Aborts when the session leaves: the ticket leaves the queue and `admit` rejects with the reason. */
  signal: AbortSignal;
  /** Longest wait in the queue before `admit` rejects with `AdmissionTimeout` (`Infinity` = no limit). */
  timeoutMs: number;
  /** Runs once, before any position is reported, when the ticket has to wait. */
  onQueued?: () => void;
}

/** Capacity to admit sessions to, as the backend sees it. */
export interface Placement<L> {
  /** Takes capacity for `sessionId`, or returns undefined when there is none now. */
  tryPlace(sessionId: string): L | undefined;
  /** Gives the capacity back. */
  release(lease: L): void;
  /** `listener` runs whenever capacity may have become free; returns the unsubscribe. */
  onCapacity(listener: () => void): () => void;
}

export interface AdmissionBackend<L> {
  /**
   * Resolves with a lease at once when capacity is free and nobody waits, otherwise when
   * the ticket reaches the front of the FIFO and capacity frees. Rejects with `QueueFull`
   * (no room to wait), `AdmissionTimeout` (waited `timeoutMs`), `AdmissionClosed`, or the
   * signal's reason; whenever it rejects, the ticket has left the queue and holds no
   * capacity. Once it resolves, the lease is the caller's to `release`, even if the signal
   * aborts in the meantime. One ticket per session id waits at a time.
   */
  admit(ticket: AdmissionTicket, options: AdmitOptions): Promise<L>;
  /** Frees the lease's capacity and admits the front of the queue if it can. */
  release(lease: L): void;
  /** Tickets waiting now. */
  readonly queueDepth: number;
  /** Stops admitting: waiting tickets reject with `AdmissionClosed`, and so does every later `admit`. */
  close(): void;
}

export { QueueFull };

export class AdmissionTimeout extends Error {
  override readonly name = 'AdmissionTimeout';
  constructor(readonly timeoutMs: number) {
    super(`no capacity became free within ${formatSeconds(timeoutMs)} s in the queue`);
  }
}

export class AdmissionClosed extends Error {
  override readonly name = 'AdmissionClosed';
}

export interface LocalAdmissionOptions {
  /** Tickets that may wait at most; past it `admit` rejects with `QueueFull`. */
  maxQueue: number;
  /** Longest delay before a depth-only change is reported (default 1000 ms; 0 = at once). */
  depthUpdateIntervalMs?: number;
}

interface Waiting<L> {
  readonly ticket: AdmissionTicket;
  readonly signal: AbortSignal;
  grant(lease: L): void;
  leave(reason: unknown): void;
}

/** Position reports sent per event-loop turn (see `LocalAdmission.tell`). */
const REPORTS_PER_TURN = 256;

/** Largest delay `setTimeout` honours; beyond it Node fires after 1 ms. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Admission within one process: an `AdmissionQueue` in front of a `Placement`. Grants
 * are synchronous (when capacity appears, the front is placed in the same call), so a
 * ticket leaves the queue either granted or rejected, never both.
 */
export class LocalAdmission<L> implements AdmissionBackend<L> {
  private readonly queue: AdmissionQueue<Waiting<L>>;
  /** The waiting ticket of each session, to refuse a second one. */
  private readonly bySession = new Map<string, Waiting<L>>();
  private readonly unsubscribe: () => void;
  private closed = false;
  private granting = false;
  private grantAgain = false;

  constructor(
    private readonly placement: Placement<L>,
    options: LocalAdmissionOptions,
  ) {
    if (!Number.isInteger(options.maxQueue) || options.maxQueue < 0) {
      throw new RangeError(`maxQueue must be a non-negative integer, got ${options.maxQueue}`);
    }
    const interval = options.depthUpdateIntervalMs;
    if (interval !== undefined && !(interval >= 0)) {
      throw new RangeError(`depthUpdateIntervalMs must be a non-negative number, got ${interval}`);
    }
    this.queue = new AdmissionQueue<Waiting<L>>({
      maxSize: options.maxQueue,
      depthUpdateIntervalMs: interval,
      onPositions: (changes) => {
        for (const { item, position, depth } of changes) this.tell(item, position, depth);
      },
    });
    this.unsubscribe = placement.onCapacity(() => this.grant());
  }

  /**
   * Position reports waiting to go out, latest per waiter. Each report is a socket write:
   * telling 10,000 waiters at once would hold the event loop for hundreds of milliseconds,
   * so they go out `REPORTS_PER_TURN` at a time, one batch per event-loop turn, and a
   * waiter whose position changes again before its turn hears only the newest.
   */
  private readonly unreported = new Map<Waiting<L>, { position: number; depth: number }>();
  private reportScheduled = false;

  private tell(waiting: Waiting<L>, position: number, depth: number): void {
    this.unreported.set(waiting, { position, depth });
    if (this.reportScheduled) return;
    this.reportScheduled = true;
    setImmediate(() => this.sendReports());
  }

  private sendReports(): void {
    this.reportScheduled = false;
    let sent = 0;
    for (const [waiting, { position, depth }] of this.unreported) {
      if (sent++ >= REPORTS_PER_TURN) break;
      this.unreported.delete(waiting);
      // A waiter that left (or was granted) meanwhile is no longer told.
      if (this.bySession.get(waiting.ticket.sessionId) === waiting) waiting.ticket.onPosition(position, depth);
    }
    if (this.unreported.size > 0 && !this.reportScheduled) {
      this.reportScheduled = true;
      setImmediate(() => this.sendReports());
    }
  }

  get queueDepth(): number {
    return this.queue.depth;
  }

  admit(ticket: AdmissionTicket, options: AdmitOptions): Promise<L> {
    return new Promise<L>((resolve, reject) => {
      const { signal, timeoutMs } = options;
      if (this.closed) return reject(new AdmissionClosed('admission is closed'));
      if (signal.aborted) return reject(signal.reason);
      if (this.bySession.has(ticket.sessionId)) {
        return reject(new Error(`session ${ticket.sessionId} is already waiting for admission`));
      }
      if (this.queue.depth === 0) {
        const lease = this.placement.tryPlace(ticket.sessionId);
        if (lease !== undefined) {
          resolve(lease);
          return;
        }
      }

      let timer: NodeJS.Timeout | undefined;
      const settle = (): boolean => {
        if (this.bySession.get(ticket.sessionId) !== waiting) return false;
        this.bySession.delete(ticket.sessionId);
        this.queue.remove(waiting);
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        return true;
      };
      const waiting: Waiting<L> = {
        ticket,
        signal,
        grant: (lease) => {
          if (settle()) resolve(lease);
        },
        leave: (reason) => {
          if (settle()) reject(reason);
        },
      };
      const onAbort = (): void => waiting.leave(signal.reason);

      try {
        this.queue.enqueue(waiting);
      } catch (err) {
        return reject(err); // QueueFull: it never waited, so there is nothing to undo
      }
      this.bySession.set(ticket.sessionId, waiting);
      signal.addEventListener('abort', onAbort, { once: true });
      if (timeoutMs < MAX_TIMER_MS) {
        timer = setTimeout(() => waiting.leave(new AdmissionTimeout(timeoutMs)), Math.max(0, timeoutMs));
      }
      try {
        options.onQueued?.();
      } catch (err) {
        return waiting.leave(err);
      }
      // Capacity may have freed without a notice (or `onQueued` released some): try now.
      this.grant();
    });
  }

  release(lease: L): void {
    this.placement.release(lease);
    // A placement that does not announce its own releases still gets its waiters served.
    this.grant();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.unsubscribe();
    const error = new AdmissionClosed('admission closed while waiting');
    for (const waiting of this.queue.clear()) waiting.leave(error);
  }

  /** Places the front of the queue while capacity lasts. */
  private grant(): void {
    // A placement may announce capacity from inside tryPlace/release: finish this loop, then rerun.
    if (this.granting) {
      this.grantAgain = true;
      return;
    }
    this.granting = true;
    try {
      do {
        this.grantAgain = false;
        this.grantFront();
      } while (this.grantAgain);
    } finally {
      this.granting = false;
    }
  }

  private grantFront(): void {
    for (let head = this.queue.peek(); head && !this.closed; head = this.queue.peek()) {
      // Its signal aborted but its own abort listener has not run yet (an earlier listener
      // on the same signal freed the capacity we are handing out): it has left.
      if (head.signal.aborted) {
        head.leave(head.signal.reason);
        continue;
      }
      let lease: L | undefined;
      try {
        lease = this.placement.tryPlace(head.ticket.sessionId);
      } catch (err) {
        head.leave(err); // a broken placement fails the waiter loudly rather than stalling the queue
        continue;
      }
      if (lease === undefined) return;
      head.grant(lease);
    }
  }
}

function formatSeconds(ms: number): string {
  return String(Math.round(ms / 100) / 10);
}
