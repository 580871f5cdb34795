/**
 * Messages between a `ThreadedGenerator` and the worker thread that runs its generator.
 * Frames travel as transferred buffers (no copy on either side of the post); the main
 * side hands each buffer back when the encoder has written it, so the thread reuses it.
 */
import type { SegmentRequest } from './types.js';

export type ToThread =
  /** Generate one segment. */
  | { type: 'job'; id: number; request: SegmentRequest }
  /** The consumer took one more frame: the thread may have one more in flight. */
  | { type: 'credit'; id: number }
  /** A frame's buffer, written and free for reuse. */
  | { type: 'buffer'; buffer: ArrayBuffer }
  /** Stop the job (the session ended, or the consumer stopped reading). */
  | { type: 'cancel'; id: number };

/** An error crossing the thread boundary: enough to rebuild the generation layer's typed errors. */
export interface ThreadError {
  name: string;
  message: string;
  field?: string;
}

export type FromThread =
  | { type: 'step'; id: number; step: number; totalSteps: number; stepMs: number; elapsedMs: number }
  | { type: 'video'; id: number; frame: Uint8Array }
  | { type: 'audio'; id: number; samples: Uint8Array }
  | { type: 'done'; id: number; continuationState?: SegmentRequest['continuationState'] }
  /** The job ended (after `done`, after a cancel, or after an error). */
  | { type: 'end'; id: number; error?: ThreadError };

/** Frames a thread may have sent that the consumer has not taken yet. */
export const FRAME_CREDITS = 3;
