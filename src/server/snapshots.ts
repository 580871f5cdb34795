import type { ContinuationState } from '../core/index.js';

/**
 * `continuation_state_snapshot` frames by state object, encoded once and kept as bytes.
 *
 * A state can be megabytes. The frame carries the payload twice (nested as `state`, and
 * flat for FastVideo's contract document), so it is written from one `JSON.stringify` of
 * the payload; and it is kept as a Buffer, so each send hands the socket the same bytes
 * without converting or measuring a string again (sends of one frame share its memory).
 * A session replaces its state, never changes it, so a state's bytes never go stale.
 * The payload passes through untouched: a snapshot returns exactly what was stored.
 */
const frames = new WeakMap<ContinuationState, Buffer>();

export function encodedSnapshot(state: ContinuationState): Buffer {
  let bytes = frames.get(state);
  if (bytes === undefined) {
    bytes = snapshotBytes(state).frame;
    frames.set(state, bytes);
  }
  return bytes;
}

/** Remembers a frame encoded elsewhere (the opening-frame thread) for `state`. */
export function rememberSnapshot(state: ContinuationState, frame: Buffer): void {
  frames.set(state, frame);
}

/** Encodes a state's snapshot frame, and the size of the state alone as JSON. */
export function snapshotBytes(state: ContinuationState): { frame: Buffer; stateBytes: number } {
  const kind = JSON.stringify(state.kind);
  const payload = JSON.stringify(state.payload);
  const text = `{"type":"continuation_state_snapshot","state":{"kind":${kind},"payload":${payload}},"kind":${kind},"payload":${payload}}`;
  const frame = Buffer.from(text);
  // {"kind":K,"payload":P} is 22 bytes of syntax around K and P.
  const stateBytes = Buffer.byteLength(kind) + Buffer.byteLength(payload) + 22;
  return { frame, stateBytes };
}
