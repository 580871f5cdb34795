/**
 * The contract between livegen and anything that makes video: one segment request in,
 * a stream of events out. Frames are yielded as they are made so encoding and sending
 * overlap generation.
 */

import type { ContinuationState } from '../core/index.js';

// Defined once in core; re-exported so the generation layer's importers keep one entry point.
export type { ContinuationState };

/** Interleaved little-endian float32 PCM, the format models produce natively. */
export interface AudioFormat {
  sampleRate: number;
  channels: number;
}

export interface SegmentRequest {
  prompt: string;
  negativePrompt?: string;
  seed: number;
  numInferenceSteps: number;
  guidanceScale: number;
  width: number;
  height: number;
  fps: number;
  numFrames: number;
  /** Path of a private temp file holding the session's initial image, if any. */
  initImagePath?: string;
  /** State returned by the previous segment (or hydrated from a snapshot); absent for a fresh clip. */
  continuationState?: ContinuationState;
}

export type GenerationEvent =
  /** One denoising step finished. `step` counts from 1 to `totalSteps`. */
  | { type: 'step'; step: number; totalSteps: number; stepMs: number; elapsedMs: number }
  /**
   * One RGB24 frame, `width * height * 3` bytes, row-major, no padding. A generator that
   * recycles frame buffers sets `release`; the consumer calls it once it no longer holds
   * the bytes (a consumer that never calls it only costs the generator an allocation).
   */
  | { type: 'video'; frame: Buffer; release?: () => void }
  /** Audio belonging with the frames yielded so far, f32le interleaved in `Generator.audio` format. */
  | { type: 'audio'; samples: Buffer }
  /** Last event: the state that lets the next segment continue this one. */
  | { type: 'done'; continuationState?: ContinuationState };

export interface Generator {
  /** Model identity reported to clients (`gpu_assigned.model_id`). */
  readonly modelId: string;
  /** Audio the generator yields, or null for silent video. Known before any request so encoders can start early. */
  readonly audio: AudioFormat | null;
  /** The only `ContinuationState.kind` it accepts, when it declares one (checked at session init). */
  readonly continuationKind?: string;
  /**
   * Checks a state a client wants to resume from, before any segment runs: returns why
   * it cannot be used, as `field.path: reason` relative to the state (`payload.x: …`),
   * or undefined when it can.
   */
  checkContinuation?(state: ContinuationState): string | undefined;
  /**
   * JSON Schema of the `payload` of the states it accepts. A worker process cannot be
   * asked `checkContinuation` synchronously, so the worker runtime sends this in `ready`
   * (`continuation_schema`) and livegen checks states against it before a session starts.
   */
  readonly continuationSchema?: Record<string, unknown>;
  /**
   * Generate one segment. Must stop promptly (and end the iterator, or throw an AbortError)
   * once `signal` aborts. A `ContinuationStateError` says the request's state cannot be
   * read (the client's mistake); throwing any other error is a generation failure.
   */
  generate(request: SegmentRequest, signal: AbortSignal): AsyncIterable<GenerationEvent>;
  /** Releases what the generator holds (a thread, a process), at server shutdown. */
  close?(): Promise<void>;
}
