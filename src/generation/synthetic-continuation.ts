/**
 * The synthetic generator's continuation state: everything the next segment needs to
 * go on exactly where the last one stopped. It travels through clients and stores as
 * JSON, so reading it checks every field.
 */
import type { ContinuationState } from './types.js';
import { ContinuationStateError, describeValue } from './errors.js';

export const SYNTHETIC_CONTINUATION_KIND = 'livegen.synthetic.v1';

/** Frame indices beyond this would lose precision in the motion and audio arithmetic. */
const MAX_FRAME_INDEX = 2 ** 40;

export interface SyntheticContinuation {
  /** Global index of the next frame (the strip shows it modulo 2^24). */
  nextFrameIndex: number;
  /** Frame rate of the segment that wrote the state. */
  fps: number;
  /** Sample rate of its audio, or null if it was silent. */
  sampleRate: number | null;
  /** Phase of the tone at the next sample, in cycles, in [0, 1). */
  audioPhase: number;
  /**
   * Anchor of the audio clock: the samples before global frame k are
   * `audioOriginSample + floor((k - audioOriginFrame) * sampleRate / fps)`. (0, 0) for a
   * clip at one frame rate; moved when the frame rate or sample rate changes.
   */
  audioOriginFrame: number;
  audioOriginSample: number;
  /** Seed of the clip's motion, fixed when the clip started. */
  motionSeed: number;
  /** Prompt of the segment that wrote the state. */
  prompt: string;
}

export function encodeSyntheticContinuation(state: SyntheticContinuation): ContinuationState {
  return { kind: SYNTHETIC_CONTINUATION_KIND, payload: { ...state } };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Read a state written by `encodeSyntheticContinuation`; throws ContinuationStateError naming the bad field. */
export function decodeSyntheticContinuation(state: unknown): SyntheticContinuation {
  if (!isRecord(state)) {
    throw new ContinuationStateError('continuationState', `must be {kind, payload}, got ${describeValue(state)}`);
  }
  if (state.kind !== SYNTHETIC_CONTINUATION_KIND) {
    throw new ContinuationStateError(
      'continuationState.kind',
      `expected "${SYNTHETIC_CONTINUATION_KIND}", got ${describeValue(state.kind)}: this state was not written by the synthetic generator`,
    );
  }
  const payload = state.payload;
  if (!isRecord(payload)) {
    throw new ContinuationStateError('continuationState.payload', `must be an object, got ${describeValue(payload)}`);
  }

  const field = (name: keyof SyntheticContinuation, ok: (v: unknown) => boolean, expected: string): unknown => {
    const value = payload[name];
    if (!ok(value)) {
      throw new ContinuationStateError(
        `continuationState.payload.${name}`,
        `must be ${expected}, got ${describeValue(value)}`,
      );
    }
    return value;
  };
  const isIndex = (v: unknown) => Number.isInteger(v) && (v as number) >= 0 && (v as number) <= MAX_FRAME_INDEX;
  const isCount = (v: unknown) => Number.isSafeInteger(v) && (v as number) >= 0;
  const isRate = (v: unknown) => typeof v === 'number' && Number.isFinite(v) && v > 0;

  const decoded: SyntheticContinuation = {
    nextFrameIndex: field('nextFrameIndex', isIndex, `an integer in [0, 2^40]`) as number,
    fps: field('fps', isRate, 'a positive number') as number,
    sampleRate: field('sampleRate', (v) => v === null || (Number.isInteger(v) && isRate(v)), 'a positive integer or null') as
      | number
      | null,
    audioPhase: field(
      'audioPhase',
      (v) => typeof v === 'number' && v >= 0 && v < 1,
      'a number in [0, 1) (cycles)',
    ) as number,
    audioOriginFrame: field('audioOriginFrame', isIndex, 'an integer in [0, 2^40]') as number,
    audioOriginSample: field('audioOriginSample', isCount, 'a non-negative integer') as number,
    motionSeed: field('motionSeed', (v) => Number.isInteger(v) && (v as number) >= 0 && (v as number) < 2 ** 32, 'a 32-bit unsigned integer') as number,
    prompt: field('prompt', (v) => typeof v === 'string', 'a string') as string,
  };
  if (decoded.audioOriginFrame > decoded.nextFrameIndex) {
    throw new ContinuationStateError(
      'continuationState.payload.audioOriginFrame',
      `must not be after nextFrameIndex (${decoded.audioOriginFrame} > ${decoded.nextFrameIndex})`,
    );
  }
  return decoded;
}
