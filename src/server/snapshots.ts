import type { ContinuationState } from '../core/index.js';
import { encodeServerMessage, snapshotMessage } from '../protocol/index.js';

/**
 * `continuation_state_snapshot` frames by state object. A session replaces its state,
 * never changes it, so a state's text never goes stale: a client asking for a large
 * state many times costs one encoding (and the frames share one string).
 */
const frames = new WeakMap<ContinuationState, string>();

export function encodedSnapshot(state: ContinuationState): string {
  let text = frames.get(state);
  if (text === undefined) {
    text = encodeServerMessage(snapshotMessage(state));
    frames.set(state, text);
  }
  return text;
}
