/**
 * One FIFO admission queue shared by every router of a cluster, in Redis: a sorted set of
 * tickets (score = arrival order) and Lua scripts that enqueue, take and prune atomically.
 * It keeps the same `AdmissionBackend` contract as `LocalAdmission` (the contract suite
 * runs against both), so a router's sessions wait exactly as a single server's do, with
 * positions that count every router's waiters.
 *
 * - **Who grants.** Only the owner of the ticket at the head of the queue places it, and
 *   it takes the ticket off the queue only after placement succeeded, so placements are
 *   serialised across the cluster without a lock: two routers never hand out the same
 *   capacity from stale views.
 * - **No ghosts.** A ticket is `<owner>|<ticket>`; each owner keeps a presence key alive
 *   with its heartbeat. Every heartbeat, each owner prunes tickets whose owner's presence
 *   expired, so a router killed with waiters stops holding places within
 *   `presenceTtlMs` + one heartbeat.
 * - **Live positions.** Every change publishes on a channel; owners re-read the queue
 *   (coalesced: one read in flight, one pending) and tell their waiters their new place.
 *   A poll every `pollMs` covers a lost message.
 * - **Redis restarted empty.** A waiter whose ticket vanished without being granted is
 *   queued again (behind the others, in its old order among this owner's waiters).
 * - **Redis down.** Waiters keep waiting, and so does a new ticket until Redis is back; the
 *   ticket's timeout and signal still run, so the wait ends with `AdmissionTimeout` at most.
 */
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { AdmissionClosed, AdmissionTimeout, QueueFull, type AdmissionBackend, type AdmissionTicket, type AdmitOptions } from '../session/index.js';
import { call } from '../store/redis.js';

/** Capacity the queue admits to; unlike the in-process `Placement`, it may answer asynchronously. */
export interface AsyncPlacement<L> {
  /** Takes capacity for `sessionId`, or undefined when there is none now. */
  tryPlace(sessionId: string): L | undefined | Promise<L | undefined>;
  release(lease: L): void;
  /** `listener` runs whenever capacity may have become free; returns the unsubscribe. */
  onCapacity(listener: () => void): () => void;
}

export interface RedisAdmissionOptions {
  /** Key prefix, e.g. `livegen:`. */
  namespace: string;
  /** This process's name among the queue's owners (unique per live router). */
  ownerId: string;
  /** Tickets that may wait at most, over the whole cluster; past it `admit` rejects with `QueueFull`. */
  maxQueue: number;
  /** Longest delay before a depth-only change is reported (default 1000 ms; 0 = at once). */
  depthUpdateIntervalMs?: number;
  /** How long this owner's tickets outlive its last heartbeat (default 3000 ms). */
  presenceTtlMs?: number;
  /** Heartbeat: presence renewed and dead owners' tickets pruned (default 1000 ms). */
  heartbeatMs?: number;
  /** Positions re-read and the head retried at least this often (default 500 ms). */
  pollMs?: number;
  /** Whether `close()` also closes the client (default false). */
  ownsClient?: boolean;
}

/** Options of one admit beyond the contract's. */
export interface ClusterAdmitOptions extends AdmitOptions {
  /** Goes ahead of every ordinary ticket (a session moving off a failed replica), and past `maxQueue`. */
  front?: boolean;
}

type Stage = 'waiting' | 'placing' | 'done';

interface Waiter<L> {
  readonly ticket: AdmissionTicket;
  readonly member: string;
  readonly signal: AbortSignal;
  readonly front: boolean;
  stage: Stage;
  /** Known to be in the queue (false until its enqueue answered, and after it vanished). */
  queued: boolean;
  told: { position: number; depth: number } | undefined;
  toldAt: number;
  onQueued: (() => void) | undefined;
  grant(lease: L): void;
  leave(reason: unknown): void;
  /** Rejects without touching the queue: it never got a place. */
  refuse(reason: unknown): void;
}

// Tickets of owners whose presence key is gone leave the queue (KEYS: queue; ARGV: presence prefix, channel).
const PRUNE = `
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
local alive = {}
local removed = 0
for _, m in ipairs(members) do
  local owner = string.match(m, '^(.-)|')
  if owner then
    if alive[owner] == nil then alive[owner] = redis.call('EXISTS', ARGV[1] .. owner) == 1 end
    if not alive[owner] then
      redis.call('ZREM', KEYS[1], m)
      removed = removed + 1
    end
  end
end
if removed > 0 then redis.call('PUBLISH', ARGV[2], 'q') end
return removed
`;

// Enqueue (KEYS: queue, seq; ARGV: member, maxQueue, front, channel) -> {rank, depth}, or {-1, depth} when full.
const ENQUEUE = `
local depth = redis.call('ZCARD', KEYS[1])
if ARGV[3] ~= '1' and depth > 0 and depth >= tonumber(ARGV[2]) then return {-1, depth} end
local seq = redis.call('INCR', KEYS[2])
local score = seq
if ARGV[3] == '1' then score = seq - 1e15 end
redis.call('ZADD', KEYS[1], 'NX', score, ARGV[1])
redis.call('PUBLISH', ARGV[4], 'q')
return {redis.call('ZRANK', KEYS[1], ARGV[1]), depth + 1}
`;

// Leave or take (KEYS: queue; ARGV: member, channel) -> {removed, depth}.
const REMOVE = `
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
if removed == 1 then redis.call('PUBLISH', ARGV[2], 'q') end
return {removed, redis.call('ZCARD', KEYS[1])}
`;

const MAX_TIMER_MS = 2 ** 31 - 1;
/** How soon an enqueue that could not reach Redis is tried again. */
const ENQUEUE_RETRY_MS = 250;

/**
 * Runs an async task one at a time: asked while it runs, it runs once more afterwards
 * (any number of asks in between make one rerun). A failed run ends the round; the next
 * ask starts again.
 */
class Coalesced {
  private running = false;
  private again = false;

  constructor(
    private readonly task: () => Promise<void>,
    private readonly stopped: () => boolean,
  ) {}

  request(): void {
    if (this.stopped()) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    void this.loop();
  }

  private async loop(): Promise<void> {
    try {
      do {
        this.again = false;
        await this.task();
      } while (this.again && !this.stopped());
    } catch {
      // Redis unavailable: the next poll, message or release asks again.
    } finally {
      this.running = false;
    }
  }
}

/** Whether a waiter has settled; read after awaits, where its stage may have changed meanwhile. */
function left(waiter: { stage: Stage }): boolean {
  return waiter.stage === 'done';
}

export class RedisAdmission<L> implements AdmissionBackend<L> {
  private readonly queueKey: string;
  private readonly seqKey: string;
  private readonly presencePrefix: string;
  private readonly channel: string;
  private readonly maxQueue: number;
  private readonly depthIntervalMs: number;
  private readonly presenceTtlMs: number;
  /** Waiters of this owner by session id (one ticket per session at a time). */
  private readonly bySession = new Map<string, Waiter<L>>();
  private readonly byMember = new Map<string, Waiter<L>>();
  private readonly subscriber: Redis;
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly unsubscribe: () => void;
  private depth = 0;
  private closed = false;
  /** Tries the head of the queue when it is ours: one placement at a time, again while capacity lasts. */
  private readonly pumper = new Coalesced(() => this.pumpOnce(), () => this.closed);
  /** Re-reads positions: one read in flight, one pending. */
  private readonly refresher = new Coalesced(() => this.refreshOnce(), () => this.closed || this.byMember.size === 0);
  private depthTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly client: Redis,
    private readonly placement: AsyncPlacement<L>,
    private readonly options: RedisAdmissionOptions,
  ) {
    if (!Number.isInteger(options.maxQueue) || options.maxQueue < 0) throw new RangeError(`maxQueue must be a non-negative integer, got ${options.maxQueue}`);
    const ns = options.namespace;
    this.queueKey = `${ns}queue`;
    this.seqKey = `${ns}queue:seq`;
    this.presencePrefix = `${ns}owner:`;
    this.channel = `${ns}queue:events`;
    this.maxQueue = options.maxQueue;
    this.depthIntervalMs = options.depthUpdateIntervalMs ?? 1000;
    this.presenceTtlMs = options.presenceTtlMs ?? 3000;
    const heartbeatMs = options.heartbeatMs ?? 1000;
    this.unsubscribe = placement.onCapacity(() => this.pump());

    // Changes made by any owner reach every owner: re-read positions, and try the head.
    this.subscriber = client.duplicate();
    this.subscriber.on('error', () => undefined);
    this.subscriber.on('message', () => {
      this.refresh();
      this.pump();
    });
    // Subscribed again by ioredis itself after a reconnect.
    this.subscriber.subscribe(this.channel).catch(() => undefined);

    this.beat();
    this.timers.push(setInterval(() => this.beat(), heartbeatMs));
    this.timers.push(
      setInterval(() => {
        this.refresh();
        this.pump();
      }, options.pollMs ?? 500),
    );
    for (const t of this.timers) t.unref();
  }

  /** Tickets waiting now, over the whole cluster, as last read from Redis. */
  get queueDepth(): number {
    return this.depth;
  }

  admit(ticket: AdmissionTicket, options: ClusterAdmitOptions): Promise<L> {
    return new Promise<L>((resolve, reject) => {
      const { signal, timeoutMs } = options;
      if (this.closed) return reject(new AdmissionClosed('admission is closed'));
      if (signal.aborted) return reject(signal.reason);
      if (this.bySession.has(ticket.sessionId)) return reject(new Error(`session ${ticket.sessionId} is already waiting for admission`));

      let timer: NodeJS.Timeout | undefined;
      const settle = (): boolean => {
        if (waiter.stage === 'done') return false;
        waiter.stage = 'done';
        this.bySession.delete(ticket.sessionId);
        this.byMember.delete(waiter.member);
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        return true;
      };
      const waiter: Waiter<L> = {
        ticket,
        member: `${this.options.ownerId}|${randomUUID()}`,
        signal,
        front: options.front ?? false,
        stage: 'waiting',
        queued: false,
        told: undefined,
        toldAt: 0,
        onQueued: options.onQueued,
        grant: (lease) => {
          if (settle()) resolve(lease);
        },
        refuse: (reason) => {
          if (settle()) reject(reason);
        },
        // Leaves the Redis queue before rejecting, so a rejected ticket holds no place.
        leave: (reason) => {
          if (waiter.stage === 'done') return;
          const wasQueued = waiter.queued || waiter.stage === 'placing';
          settle();
          if (!wasQueued && !this.pendingEnqueue.has(waiter)) return reject(reason);
          this.pendingEnqueue.delete(waiter);
          this.remove(waiter.member).then(
            () => reject(reason),
            () => reject(reason),
          );
        },
      };
      const onAbort = (): void => {
        // A placement in flight decides when it answers (its capacity goes back then).
        if (waiter.stage === 'placing') return;
        waiter.leave(signal.reason);
      };
      this.bySession.set(ticket.sessionId, waiter);
      this.byMember.set(waiter.member, waiter);
      signal.addEventListener('abort', onAbort, { once: true });
      if (timeoutMs < MAX_TIMER_MS) timer = setTimeout(() => waiter.leave(new AdmissionTimeout(timeoutMs)), Math.max(0, timeoutMs));
      this.enqueue(waiter);
    });
  }

  release(lease: L): void {
    this.placement.release(lease);
    this.pump();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.unsubscribe();
    for (const t of this.timers) clearInterval(t);
    clearTimeout(this.depthTimer);
    const error = new AdmissionClosed('admission closed while waiting');
    for (const waiter of [...this.bySession.values()]) waiter.leave(error);
    this.depth = 0;
    this.subscriber.disconnect();
    // Our presence goes now, so any ticket left behind is pruned at the next beat of another owner.
    const gone = this.client.status === 'ready' ? this.client.del(this.presencePrefix + this.options.ownerId).catch(() => undefined) : Promise.resolve();
    if (this.options.ownsClient) void gone.finally(() => this.client.disconnect());
  }

  // ------------------------------------------------------------------ inside

  /** Waiters whose enqueue has not answered yet. */
  private readonly pendingEnqueue = new Set<Waiter<L>>();

  private enqueue(waiter: Waiter<L>): void {
    this.pendingEnqueue.add(waiter);
    call(this.client, 'admission enqueue', async () => {
      await this.ensurePresence();
      return (await this.client.eval(ENQUEUE, 2, this.queueKey, this.seqKey, waiter.member, this.maxQueue, waiter.front ? '1' : '0', this.channel)) as [number, number];
    }).then(
      ([rank, depth]) => {
        const wasPending = this.pendingEnqueue.delete(waiter);
        if (rank < 0) {
          // Never queued: nothing to undo, and nobody was told anything.
          waiter.refuse(new QueueFull(`the queue is full: ${depth} sessions wait, at most ${this.maxQueue}`));
          return;
        }
        this.depth = depth;
        if (!wasPending || waiter.stage === 'done') {
          // It left while its enqueue was in flight: take the place back.
          void this.remove(waiter.member).catch(() => undefined);
          return;
        }
        waiter.queued = true;
        if (rank === 0) void this.placeHead(waiter, depth);
        else this.markQueued(waiter, rank, depth);
      },
      () => {
        // Redis unreachable: the ticket waits for it (its timeout and signal still run).
        if (waiter.stage === 'done' || this.closed) {
          this.pendingEnqueue.delete(waiter);
          return;
        }
        setTimeout(() => {
          if (waiter.stage === 'done' || this.closed) this.pendingEnqueue.delete(waiter);
          else this.enqueue(waiter);
        }, ENQUEUE_RETRY_MS).unref();
      },
    );
  }

  /** The ticket had to wait: `onQueued` once, then its first place. */
  private markQueued(waiter: Waiter<L>, position: number, depth: number): void {
    if (waiter.stage === 'done') return;
    if (waiter.onQueued) {
      const onQueued = waiter.onQueued;
      waiter.onQueued = undefined;
      try {
        onQueued();
      } catch (err) {
        waiter.leave(err);
        return;
      }
    }
    this.tell(waiter, position, depth);
  }

  private tell(waiter: Waiter<L>, position: number, depth: number, force = false): void {
    if (waiter.stage === 'done' || waiter.onQueued) return;
    const last = waiter.told;
    if (last && last.position === position && last.depth === depth) return;
    const now = performance.now();
    const depthOnly = last !== undefined && last.position === position;
    if (depthOnly && !force && now - waiter.toldAt < this.depthIntervalMs) {
      // Depth-only changes go out at most once per interval; a re-read then reports the latest.
      this.depthTimer ??= setTimeout(() => {
        this.depthTimer = undefined;
        this.refresh();
      }, this.depthIntervalMs - (now - waiter.toldAt));
      return;
    }
    waiter.told = { position, depth };
    waiter.toldAt = now;
    try {
      waiter.ticket.onPosition(position, depth);
    } catch {
      // onPosition must not throw; a broken reporter does not stall the queue.
    }
  }

  private pump(): void {
    this.pumper.request();
  }

  private async pumpOnce(): Promise<void> {
    const head = await this.head();
    const waiter = head === undefined ? undefined : this.byMember.get(head);
    // Placed (or capacity given back): the next head may be placeable too.
    if (waiter && waiter.stage === 'waiting' && waiter.queued && (await this.placeHead(waiter))) this.pumper.request();
  }

  private async head(): Promise<string | undefined> {
    if (this.byMember.size === 0) return undefined;
    const [first] = await call(this.client, 'admission head', () => this.client.zrange(this.queueKey, 0, 0));
    return first;
  }

  /**
   * Places `waiter`, which is at the head: on success it leaves the queue granted. A
   * fresh ticket (`enqueuedDepth` = the depth its enqueue saw) that cannot be placed is
   * queued and told so; resolves whether capacity was handed out or given back.
   */
  private async placeHead(waiter: Waiter<L>, enqueuedDepth?: number): Promise<boolean> {
    if (waiter.stage !== 'waiting') return false;
    waiter.stage = 'placing';
    let lease: L | undefined;
    try {
      lease = await this.placement.tryPlace(waiter.ticket.sessionId);
    } catch (err) {
      waiter.stage = 'waiting';
      waiter.leave(err);
      return false;
    }
    if (lease === undefined) {
      if (left(waiter)) return false; // it timed out meanwhile and has left
      waiter.stage = 'waiting';
      if (waiter.signal.aborted) {
        waiter.leave(waiter.signal.reason);
        return false;
      }
      if (enqueuedDepth !== undefined) {
        // maxQueue 0: a ticket that cannot be granted at once may not wait.
        if (this.maxQueue === 0 && !waiter.front) {
          waiter.leave(new QueueFull('the queue is full: no session may wait (max_queue 0)'));
          return false;
        }
        // The depth its own enqueue saw: later arrivals hear of each other in one refresh, together.
        this.markQueued(waiter, 0, enqueuedDepth);
      }
      return false;
    }
    if (left(waiter)) {
      this.placement.release(lease);
      return true;
    }
    let removed = 0;
    try {
      [removed] = await this.remove(waiter.member);
    } catch {
      // Redis unavailable: it stays queued, and the capacity goes back below.
    }
    if (removed !== 1 || waiter.signal.aborted || this.closed || left(waiter)) {
      // It left, timed out, or vanished while being placed: the capacity goes back.
      this.placement.release(lease);
      if (left(waiter)) return true;
      waiter.stage = 'waiting';
      if (waiter.signal.aborted) waiter.leave(waiter.signal.reason);
      else if (this.closed) waiter.leave(new AdmissionClosed('admission closed while waiting'));
      else this.refresh(); // vanished: the refresh queues it again
      return true;
    }
    waiter.queued = false;
    waiter.grant(lease);
    return true;
  }

  private async remove(member: string): Promise<[number, number]> {
    const [removed, depth] = (await call(this.client, 'admission remove', () => this.client.eval(REMOVE, 1, this.queueKey, member, this.channel))) as [number, number];
    this.depth = depth;
    return [removed, depth];
  }

  private refresh(): void {
    this.refresher.request();
  }

  /** Re-reads the queue and tells this owner's waiters their places; re-queues waiters that vanished. */
  private async refreshOnce(): Promise<void> {
    const members = await call(this.client, 'admission positions', () => this.client.zrange(this.queueKey, 0, -1));
    this.depth = members.length;
    const seen = new Set<string>();
    members.forEach((member, position) => {
      const waiter = this.byMember.get(member);
      if (!waiter) return;
      seen.add(member);
      if (waiter.stage === 'waiting' && waiter.queued) this.tell(waiter, position, members.length);
    });
    const lost = [...this.byMember.values()].filter((w) => w.stage === 'waiting' && w.queued && !seen.has(w.member));
    if (lost.length > 0) await this.requeue(lost);
  }

  /** Tickets that vanished without a grant (Redis restarted empty, or our presence lapsed) go back in. */
  private async requeue(lost: Waiter<L>[]): Promise<void> {
    await this.ensurePresence();
    for (const waiter of lost) {
      if (waiter.stage !== 'waiting') continue;
      await call(this.client, 'admission requeue', () =>
        this.client.eval(ENQUEUE, 2, this.queueKey, this.seqKey, waiter.member, Number.MAX_SAFE_INTEGER, waiter.front ? '1' : '0', this.channel),
      );
    }
    // Their new places: read again once this read is done.
    this.refresher.request();
  }

  private async ensurePresence(): Promise<void> {
    await this.client.set(this.presencePrefix + this.options.ownerId, '1', 'PX', this.presenceTtlMs);
  }

  /** Renews this owner's presence and prunes the tickets of owners that are gone. */
  private beat(): void {
    if (this.closed || this.client.status !== 'ready') return;
    this.ensurePresence()
      .then(() => this.client.eval(PRUNE, 1, this.queueKey, this.presencePrefix, this.channel))
      .catch(() => undefined);
  }
}
