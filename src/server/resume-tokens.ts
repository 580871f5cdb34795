/**
 * Resume tokens: `gpu_assigned.resume_token` names the state the server keeps for a
 * session (after every segment, for `streaming.resume_ttl_seconds`), so a client that
 * lost its connection, or hit the segment cap, continues the story by sending the token
 * in a new `session_init_v2`, without having kept the state itself.
 *
 * - A token is 256 random bits: unguessable, and it names nothing but the state.
 * - It is bound to the API key the session used (when auth is on): another key's lookup
 *   lands on another store entry and finds nothing.
 * - One token continues one session: a session that claims it holds it while it waits,
 *   and once it is active the old token is gone (the session has its own). A session that
 *   ends before it is active gives the token back unused.
 * - The states kept are bounded in bytes (`limits.max_resume_bytes`): past it the least
 *   recently written are dropped, so sessions that ended cannot pile states up.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { ContinuationState } from '../core/index.js';
import type { ContinuationStore } from '../store/index.js';

/** A token a session is resuming from, until it settles (active) or abandons it (ended first). */
export interface ResumeClaim {
  readonly state: ContinuationState;
  /** The session is active under its own token: the old one is deleted. */
  settle(): Promise<void>;
  /** The session ended before it was active: the token works again. */
  abandon(): void;
}

/**
 * Who holds a token between its claim and its settling: one process (a Set), or the whole
 * cluster (Redis), so two routers' sessions cannot both resume from one token.
 */
export interface ClaimLock {
  /** Takes `key` for one claimant; false when another holds it. */
  take(key: string): Promise<boolean>;
  /** Gives `key` back (idempotent). */
  give(key: string): Promise<void>;
}

/** Claims within this process. */
export class LocalClaimLock implements ClaimLock {
  private readonly held = new Set<string>();

  take(key: string): Promise<boolean> {
    if (this.held.has(key)) return Promise.resolve(false);
    this.held.add(key);
    return Promise.resolve(true);
  }

  give(key: string): Promise<void> {
    this.held.delete(key);
    return Promise.resolve();
  }
}

export interface ResumeTokensOptions {
  /** How long a state is kept after its last write; 0 = no tokens. */
  ttlMs: number;
  /** Bytes of states kept at most, over all tokens. */
  maxBytes: number;
  /** A state's size in bytes (its serialised size). */
  sizeOf(state: ContinuationState): number;
  /** Monotonic clock in ms (default performance.now). */
  now?: () => number;
  /** Where claims are held (default: this process). */
  claims?: ClaimLock;
}

export class ResumeTokens {
  /** Holds the store keys claimed by a session that is not active yet. */
  private readonly claims: ClaimLock;
  /** What is kept, least recently written first: bytes and when it expires. */
  private readonly held = new Map<string, { bytes: number; expiresAt: number }>();
  private heldBytes = 0;
  private readonly ttlMs: number;
  private readonly now: () => number;

  constructor(
    private readonly store: ContinuationStore,
    private readonly options: ResumeTokensOptions,
  ) {
    this.ttlMs = options.ttlMs;
    this.now = options.now ?? (() => performance.now());
    this.claims = options.claims ?? new LocalClaimLock();
  }

  get enabled(): boolean {
    return this.ttlMs > 0;
  }

  issue(): string {
    return randomBytes(32).toString('base64url');
  }

  /** Keeps `state` under `token` for the TTL (from now), dropping the oldest states over the byte budget. */
  async save(token: string, keyId: string | undefined, state: ContinuationState): Promise<void> {
    const key = this.storeKey(token, keyId);
    const now = this.now();
    this.forget(key);
    const bytes = this.options.sizeOf(state);
    this.held.set(key, { bytes, expiresAt: now + this.ttlMs });
    this.heldBytes += bytes;
    const dropped: string[] = [];
    for (const [oldest, entry] of this.held) {
      if (this.heldBytes <= this.options.maxBytes && entry.expiresAt > now) break;
      this.forget(oldest);
      // An expired one is gone from the store already; an evicted one is deleted.
      if (entry.expiresAt > now) dropped.push(oldest);
    }
    // A state larger than the whole budget alone is not kept (and its older one is dropped).
    const keep = this.held.has(key);
    await Promise.all([...(keep ? [this.store.put(key, state, { ttlMs: this.ttlMs })] : []), ...dropped.map((k) => this.store.delete(k))]);
  }

  /** Bytes of states kept now (expired ones not yet noticed included). */
  get bytes(): number {
    return this.heldBytes;
  }

  /**
   * The state `token` names, claimed for one session; undefined when the token is unknown,
   * expired, bound to another API key, or claimed by a session still waiting.
   */
  async claim(token: string, keyId: string | undefined): Promise<ResumeClaim | undefined> {
    const key = this.storeKey(token, keyId);
    if (!(await this.claims.take(key))) return undefined;
    let state: ContinuationState | undefined;
    try {
      state = await this.store.get(key);
    } catch (err) {
      await this.claims.give(key).catch(() => undefined);
      throw err;
    }
    if (!state) {
      await this.claims.give(key);
      return undefined;
    }
    let open = true;
    return {
      state,
      settle: async () => {
        if (!open) return;
        open = false;
        this.forget(key);
        await this.store.delete(key);
        await this.claims.give(key);
      },
      abandon: () => {
        if (!open) return;
        open = false;
        this.claims.give(key).catch(() => undefined);
      },
    };
  }

  close(): Promise<void> {
    return this.store.close();
  }

  private forget(key: string): void {
    const entry = this.held.get(key);
    if (!entry) return;
    this.held.delete(key);
    this.heldBytes -= entry.bytes;
  }

  private storeKey(token: string, keyId: string | undefined): string {
    // The API key itself never goes into a store key (a shared store is readable by operators).
    const owner = keyId === undefined ? '-' : createHash('sha256').update(keyId).digest('base64url');
    return `resume:${owner}:${token}`;
  }
}
