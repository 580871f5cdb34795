import { DEFAULT_IMAGE_LIMITS, type ImageLimits } from '../media/index.js';
import { MAX_INITIAL_IMAGE_BYTES } from '../protocol/index.js';
import type { ServeConfig } from './config.js';

/** What a segment is generated with when the client's request does not say. */
export interface SamplingDefaults {
  width: number;
  height: number;
  fps: number;
  numFrames: number;
  numInferenceSteps: number;
  guidanceScale: number;
  seed: number;
  negativePrompt: string | undefined;
}

/** Bounds on what one client may send. */
export interface FrameLimits {
  /** The opening frame may carry the initial image: 32 MiB as base64 plus 1 MiB for the rest. */
  initFrameBytes: number;
  /** Every later frame. */
  controlFrameBytes: number;
  /** JSON structure tokens (`,` `:` `[` `{`) in the opening frame: bounds parse and validation work. */
  initJsonTokens: number;
  /** The same for every later frame. */
  controlJsonTokens: number;
  /** Serialised size of a continuation state handed in with the init. */
  continuationStateBytes: number;
  /** Dimensions an initial image's header may declare. */
  image: ImageLimits;
}

/**
 * Everything that decides how one session behaves, computed once from the config and
 * handed to every session: the driver reads no raw config.
 */
export interface SessionPolicy {
  segmentCap: number;
  sessionTimeoutSeconds: number;
  initTimeoutSeconds: number;
  queueTimeoutMs: number;
  maxPendingRequests: number;
  /** When set, an init naming another preset gets `preset_mismatch`. */
  preset: string | undefined;
  sampling: SamplingDefaults;
  frames: FrameLimits;
  /** How long a client that will not complete the close handshake keeps its TCP connection. */
  closeGraceMs: number;
  /** Lifetime of a resume token's state after it was last written; 0 = no resume tokens. */
  resumeTtlMs: number;
}

/** The opening frame may carry a 32 MiB image as base64 (4/3 larger) plus the other fields. */
export const MAX_INIT_FRAME_BYTES = Math.ceil((MAX_INITIAL_IMAGE_BYTES * 4) / 3) + 1024 * 1024;

export function sessionPolicyFrom(config: ServeConfig): SessionPolicy {
  const { streaming, limits } = config;
  const s = config.default_request.sampling;
  return {
    segmentCap: streaming.generation_segment_cap,
    sessionTimeoutSeconds: streaming.session_timeout_seconds,
    initTimeoutSeconds: limits.init_timeout_seconds,
    queueTimeoutMs: streaming.queue_timeout_seconds * 1000,
    maxPendingRequests: streaming.max_pending_requests,
    preset: streaming.preset,
    resumeTtlMs: streaming.resume_ttl_seconds * 1000,
    sampling: {
      width: s.width,
      height: s.height,
      fps: s.fps,
      numFrames: s.num_frames,
      numInferenceSteps: s.num_inference_steps,
      guidanceScale: s.guidance_scale,
      seed: s.seed,
      negativePrompt: s.negative_prompt || undefined,
    },
    frames: {
      initFrameBytes: MAX_INIT_FRAME_BYTES,
      controlFrameBytes: limits.max_control_frame_bytes,
      initJsonTokens: 100_000,
      controlJsonTokens: 10_000,
      continuationStateBytes: limits.max_continuation_state_bytes,
      // 64 Mpx: beyond what image loaders in model pipelines accept without warnings.
      image: { ...DEFAULT_IMAGE_LIMITS, maxPixels: 2 ** 26 },
    },
    closeGraceMs: 2000,
  };
}
