import type { ContinuationState } from '../generation/types.js';

/**
 * Where a session's continuation state lives between segments and for `snapshot_state`.
 * An interface so a shared (Redis) store can replace the in-process default for scale-out.
 */
export interface ContinuationStore {
  get(sessionId: string): Promise<ContinuationState | undefined>;
  put(sessionId: string, state: ContinuationState): Promise<void>;
  delete(sessionId: string): Promise<void>;
  /** Entries held now (for leak checks and metrics). */
  size(): Promise<number>;
}

/** In-process store: the default for a single node. */
export class MemoryContinuationStore implements ContinuationStore {
  private readonly states = new Map<string, ContinuationState>();

  async get(sessionId: string): Promise<ContinuationState | undefined> {
    return this.states.get(sessionId);
  }

  async put(sessionId: string, state: ContinuationState): Promise<void> {
    // Stored as given; callers hand over ownership of the object.
    this.states.set(sessionId, state);
  }

  async delete(sessionId: string): Promise<void> {
    this.states.delete(sessionId);
  }

  async size(): Promise<number> {
    return this.states.size;
  }
}
