/**
 * The words every layer shares, defined once: the protocol parses into them, sessions
 * hold them, generators read and write them. This module imports nothing.
 */

/** How a session's media travels: fragmented MP4 (video + audio) or one JPEG per frame. */
export const STREAM_MODES = ['av_fmp4', 'legacy_jpeg'] as const;
export type StreamMode = (typeof STREAM_MODES)[number];

/**
 * Opaque state a generator hands back after a segment so the next one continues the
 * story; clients snapshot it and resume from it. `kind` names the generator's format.
 */
export interface ContinuationState {
  kind: string;
  payload: Record<string, unknown>;
}
