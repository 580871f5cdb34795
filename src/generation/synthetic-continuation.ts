/**
 * The synthetic generator's continuation state: everything the next segment needs to
 * go on exactly where the last one stopped. It travels through clients and stores as
 * JSON, so reading it checks every field.
 */
import { z } from 'zod';
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

/**
 * What each payload field must be: one rule per field, read both by
 * `decodeSyntheticContinuation` (which words its own messages, naming the field) and by
 * the JSON Schema below, so the in-process check and a worker's declared schema agree.
 */
const FIELDS: { [K in keyof SyntheticContinuation]: { rule: z.ZodType; expected: string } } = {
  nextFrameIndex: { rule: z.int().min(0).max(MAX_FRAME_INDEX), expected: 'an integer in [0, 2^40]' },
  fps: { rule: z.number().positive(), expected: 'a positive number' },
  sampleRate: { rule: z.int().positive().nullable(), expected: 'a positive integer or null' },
  audioPhase: { rule: z.number().min(0).lt(1), expected: 'a number in [0, 1) (cycles)' },
  audioOriginFrame: { rule: z.int().min(0).max(MAX_FRAME_INDEX), expected: 'an integer in [0, 2^40]' },
  audioOriginSample: { rule: z.int().min(0), expected: 'a non-negative integer' },
  motionSeed: { rule: z.int().min(0).lt(2 ** 32), expected: 'a 32-bit unsigned integer' },
  prompt: { rule: z.string(), expected: 'a string' },
};
const FIELD_NAMES = Object.keys(FIELDS) as (keyof SyntheticContinuation)[];

/**
 * JSON Schema of the payload, which the synthetic worker declares in `ready` so livegen
 * can refuse a damaged state before a session starts. Unknown fields are allowed, as the
 * decoder ignores them. One rule is beyond JSON Schema (`audioOriginFrame` not after
 * `nextFrameIndex`); the decoder enforces it when a segment starts.
 */
export const SYNTHETIC_CONTINUATION_SCHEMA: Record<string, unknown> = z.toJSONSchema(
  z.looseObject(Object.fromEntries(FIELD_NAMES.map((name) => [name, FIELDS[name].rule]))),
  { io: 'input' },
);

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

  for (const name of FIELD_NAMES) {
    const value = payload[name];
    if (!FIELDS[name].rule.safeParse(value).success) {
      throw new ContinuationStateError(
        `continuationState.payload.${name}`,
        `must be ${FIELDS[name].expected}, got ${describeValue(value)}`,
      );
    }
  }
  // Every field was just checked against its rule, so the casts below hold.
  const decoded: SyntheticContinuation = {
    nextFrameIndex: payload.nextFrameIndex as number,
    fps: payload.fps as number,
    sampleRate: payload.sampleRate as number | null,
    audioPhase: payload.audioPhase as number,
    audioOriginFrame: payload.audioOriginFrame as number,
    audioOriginSample: payload.audioOriginSample as number,
    motionSeed: payload.motionSeed as number,
    prompt: payload.prompt as string,
  };
  if (decoded.audioOriginFrame > decoded.nextFrameIndex) {
    throw new ContinuationStateError(
      'continuationState.payload.audioOriginFrame',
      `must not be after nextFrameIndex (${decoded.audioOriginFrame} > ${decoded.nextFrameIndex})`,
    );
  }
  return decoded;
}
