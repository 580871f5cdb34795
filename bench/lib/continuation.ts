/** A valid synthetic continuation state, so `snapshot_state` has something to return from the start. */
import { encodeSyntheticContinuation } from '../../src/generation/synthetic-continuation.js';

export function syntheticContinuation(prompt = 'bench'): { kind: string; payload: Record<string, unknown> } {
  return encodeSyntheticContinuation({
    nextFrameIndex: 0,
    fps: 24,
    sampleRate: 48_000,
    audioPhase: 0,
    audioOriginFrame: 0,
    audioOriginSample: 0,
    motionSeed: 1,
    prompt,
  });
}
