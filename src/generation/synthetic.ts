/**
 * The embedded generator: a deterministic animation with a tone, paced like a model's
 * denoise steps, whose continuation state makes the next segment carry on seamlessly.
 * Frame indices are drawn into every frame, so continuation is visible in the pixels.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { FrameBufferPool, type FrameSource } from './frame-pool.js';
import type { AudioFormat, ContinuationState, GenerationEvent, Generator, SegmentRequest } from './types.js';
import { ContinuationStateError, InvalidSegmentRequestError, describeValue } from './errors.js';
import { abortableDelay, waitUntil, yieldToEventLoop } from './pacing.js';
import { SineTone, audioClockFor, samplesBeforeFrame } from './synthetic-audio.js';
import {
  SYNTHETIC_CONTINUATION_KIND,
  SYNTHETIC_CONTINUATION_SCHEMA,
  type SyntheticContinuation,
  decodeSyntheticContinuation,
  encodeSyntheticContinuation,
} from './synthetic-continuation.js';
import { type Rgb, SyntheticScene, mix32, promptToneHz } from './synthetic-scene.js';

export interface SyntheticGeneratorOptions {
  /** `fast`: frames as fast as they render. `realtime`: frame k of a segment no earlier than k/fps after the first. */
  pace?: 'fast' | 'realtime';
  /** Delay per denoise step in ms (default 0 when fast, 50 when realtime). */
  stepMs?: number;
  /** Audio to yield, or null for silent video (default 48 kHz mono). */
  audio?: AudioFormat | null;
  /** Reported as the model id (default `livegen/synthetic`). */
  modelId?: string;
}

export const SYNTHETIC_DEFAULT_MODEL_ID = 'livegen/synthetic';
const DEFAULT_REALTIME_STEP_MS = 50;
/** In fast pace, give the event loop a turn this often so the server stays responsive. */
const FAST_FRAMES_PER_TURN = 4;
const FAST_STEPS_PER_TURN = 8;

const LIMITS = { minWidth: 64, maxWidth: 7680, minHeight: 32, maxHeight: 4320, maxFps: 240 } as const;

export class SyntheticGenerator implements Generator {
  readonly continuationKind = SYNTHETIC_CONTINUATION_KIND;
  readonly continuationSchema = SYNTHETIC_CONTINUATION_SCHEMA;
  readonly modelId: string;
  readonly audio: AudioFormat | null;
  readonly pace: 'fast' | 'realtime';
  readonly stepMs: number;
  private readonly frames: FrameSource;

  /** `frames`: where frames are rendered (default: a pool recycling what the consumer releases). */
  constructor(options: SyntheticGeneratorOptions = {}, frames: FrameSource = new FrameBufferPool()) {
    this.frames = frames;
    this.pace = options.pace ?? 'fast';
    if (this.pace !== 'fast' && this.pace !== 'realtime') {
      throw new InvalidSegmentRequestError('pace', `must be "fast" or "realtime", got ${describeValue(this.pace)}`);
    }
    this.stepMs = options.stepMs ?? (this.pace === 'realtime' ? DEFAULT_REALTIME_STEP_MS : 0);
    if (!Number.isFinite(this.stepMs) || this.stepMs < 0) {
      throw new InvalidSegmentRequestError('stepMs', `must be a non-negative number, got ${describeValue(this.stepMs)}`);
    }
    const audio = options.audio === undefined ? { sampleRate: 48_000, channels: 1 } : options.audio;
    if (audio !== null) {
      if (!Number.isInteger(audio.sampleRate) || audio.sampleRate < 1000 || audio.sampleRate > 384_000) {
        throw new InvalidSegmentRequestError(
          'audio.sampleRate',
          `must be an integer in [1000, 384000], got ${describeValue(audio.sampleRate)}`,
        );
      }
      if (!Number.isInteger(audio.channels) || audio.channels < 1 || audio.channels > 8) {
        throw new InvalidSegmentRequestError('audio.channels', `must be an integer in [1, 8], got ${describeValue(audio.channels)}`);
      }
    }
    this.audio = audio === null ? null : { sampleRate: audio.sampleRate, channels: audio.channels };
    this.modelId = options.modelId ?? SYNTHETIC_DEFAULT_MODEL_ID;
  }

  checkContinuation(state: ContinuationState): string | undefined {
    try {
      decodeSyntheticContinuation(state);
      return undefined;
    } catch (err) {
      if (err instanceof ContinuationStateError) return err.message.replace(/^continuationState\.?/, '');
      throw err;
    }
  }

  async *generate(request: SegmentRequest, signal: AbortSignal): AsyncGenerator<GenerationEvent> {
    signal.throwIfAborted();
    validateSegmentRequest(request);
    const previous =
      request.continuationState === undefined ? undefined : decodeSyntheticContinuation(request.continuationState);
    const imagePatch = request.initImagePath === undefined ? null : await initImageColour(request.initImagePath, signal);
    signal.throwIfAborted();

    const started = performance.now();
    for (let step = 1; step <= request.numInferenceSteps; step++) {
      const stepStarted = performance.now();
      if (this.stepMs > 0) await abortableDelay(this.stepMs, signal);
      else if (step % FAST_STEPS_PER_TURN === 0) await yieldToEventLoop();
      signal.throwIfAborted();
      const now = performance.now();
      yield {
        type: 'step',
        step,
        totalSteps: request.numInferenceSteps,
        stepMs: now - stepStarted,
        elapsedMs: now - started,
      };
    }

    const { width, height, fps, numFrames, prompt } = request;
    const firstFrame = previous?.nextFrameIndex ?? 0;
    const motionSeed = previous?.motionSeed ?? motionSeedOf(request.seed);
    const scene = new SyntheticScene({ width, height, prompt, motionSeed, imagePatch });
    const audio = this.audio;
    const clock = audio ? audioClockFor(previous, firstFrame, fps, audio.sampleRate) : null;
    const tone = audio
      ? new SineTone(promptToneHz(prompt), audio.sampleRate, audio.channels, previous?.audioPhase ?? 0)
      : null;

    let firstFrameAt = 0;
    for (let i = 0; i < numFrames; i++) {
      signal.throwIfAborted();
      const index = firstFrame + i;
      const { buffer, release } = this.frames.take(request.width * request.height * 3);
      const frame = scene.render(index, buffer);
      if (i > 0) {
        if (this.pace === 'realtime') await waitUntil(firstFrameAt + (i * 1000) / fps, signal);
        else if (i % FAST_FRAMES_PER_TURN === 0) await yieldToEventLoop();
      }
      signal.throwIfAborted();
      if (i === 0) firstFrameAt = performance.now();
      yield { type: 'video', frame, release };

      if (clock && tone) {
        const count = samplesBeforeFrame(clock, index + 1) - samplesBeforeFrame(clock, index);
        if (count > 0) {
          const samples = tone.render(count);
          signal.throwIfAborted();
          yield { type: 'audio', samples };
        }
      }
    }

    signal.throwIfAborted();
    const next: SyntheticContinuation = {
      nextFrameIndex: firstFrame + numFrames,
      fps,
      sampleRate: audio?.sampleRate ?? null,
      audioPhase: tone?.phase ?? previous?.audioPhase ?? 0,
      audioOriginFrame: clock?.originFrame ?? 0,
      audioOriginSample: clock?.originSample ?? 0,
      motionSeed,
      prompt,
    };
    const continuationState: ContinuationState = encodeSyntheticContinuation(next);
    yield { type: 'done', continuationState };
  }
}

/** A 32-bit motion seed from any safe-integer seed (uint32 seeds map to themselves). */
function motionSeedOf(seed: number): number {
  const high = Math.floor(seed / 2 ** 32) >>> 0;
  return ((seed >>> 0) ^ (high === 0 ? 0 : mix32(high))) >>> 0;
}

/** The init image's patch colour: the first bytes of its SHA-256, so any change to the file shows. */
async function initImageColour(path: string, signal: AbortSignal): Promise<Rgb> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path, { signal });
  } catch (error) {
    signal.throwIfAborted();
    const reason = error instanceof Error ? error.message : String(error);
    throw new InvalidSegmentRequestError('initImagePath', `cannot read init image ${JSON.stringify(path)}: ${reason}`, {
      cause: error,
    });
  }
  if (bytes.length === 0) {
    throw new InvalidSegmentRequestError('initImagePath', `init image ${JSON.stringify(path)} is empty`);
  }
  const digest = createHash('sha256').update(bytes).digest();
  return [digest[0]!, digest[1]!, digest[2]!];
}

/** Throws InvalidSegmentRequestError naming the first field the generator cannot honour. */
export function validateSegmentRequest(request: SegmentRequest): void {
  const fail = (field: string, expected: string): never => {
    throw new InvalidSegmentRequestError(
      field,
      `must be ${expected}, got ${describeValue((request as unknown as Record<string, unknown>)[field])}`,
    );
  };
  const isEvenIn = (v: number, min: number, max: number) => Number.isInteger(v) && v % 2 === 0 && v >= min && v <= max;

  if (typeof request.prompt !== 'string') fail('prompt', 'a string');
  if (request.negativePrompt !== undefined && typeof request.negativePrompt !== 'string') {
    fail('negativePrompt', 'a string');
  }
  if (!Number.isSafeInteger(request.seed)) fail('seed', 'a safe integer');
  if (!Number.isSafeInteger(request.numInferenceSteps) || request.numInferenceSteps < 0) {
    fail('numInferenceSteps', 'a non-negative integer');
  }
  if (typeof request.guidanceScale !== 'number' || !Number.isFinite(request.guidanceScale)) {
    fail('guidanceScale', 'a finite number');
  }
  if (!isEvenIn(request.width, LIMITS.minWidth, LIMITS.maxWidth)) {
    fail('width', `an even integer in [${LIMITS.minWidth}, ${LIMITS.maxWidth}] (yuv420p needs even sizes)`);
  }
  if (!isEvenIn(request.height, LIMITS.minHeight, LIMITS.maxHeight)) {
    fail('height', `an even integer in [${LIMITS.minHeight}, ${LIMITS.maxHeight}] (yuv420p needs even sizes)`);
  }
  if (typeof request.fps !== 'number' || !(request.fps > 0 && request.fps <= LIMITS.maxFps)) {
    fail('fps', `a number in (0, ${LIMITS.maxFps}]`);
  }
  if (!Number.isSafeInteger(request.numFrames) || request.numFrames < 1) fail('numFrames', 'a positive integer');
  if (request.initImagePath !== undefined && (typeof request.initImagePath !== 'string' || request.initImagePath === '')) {
    fail('initImagePath', 'a non-empty path');
  }
}
