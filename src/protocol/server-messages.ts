import { z } from 'zod';
import { ERROR_CODES } from './codes.js';
import { ContinuationStateSchema, PROMPT_SOURCES, STREAM_MODES } from './client-messages.js';

/**
 * Server → client frames (PROTOCOL.md "Server → client"). Fields without a value are
 * omitted, never `null`. Clients must ignore unknown types and fields, so these schemas
 * are loose for reading (the SDK) while the builders below emit exactly these fields.
 */

const nonNegativeInt = z.number().int().min(0);

export const QueueStatusSchema = z.object({
  type: z.literal('queue_status'),
  position: nonNegativeInt,
  queue_depth: nonNegativeInt,
});

export const GpuAssignedSchema = z.object({
  type: z.literal('gpu_assigned'),
  gpu_id: z.number().int(),
  session_timeout: z.number(),
  model_id: z.string().optional(),
  /** Additive: an unguessable token a later `session_init_v2.resume_token` continues this story with. */
  resume_token: z.string().optional(),
});

export const Ltx2StreamStartSchema = z.object({
  type: z.literal('ltx2_stream_start'),
  preset: z.string().optional(),
  width: z.number().int().positive(),
  height: z.number().int().positive(),
  fps: z.number().positive(),
  num_frames: z.number().int().positive(),
});

export const Ltx2SegmentStartSchema = z.object({
  type: z.literal('ltx2_segment_start'),
  segment_idx: nonNegativeInt,
  prompt: z.string(),
  total_steps: nonNegativeInt,
  source: z.enum(PROMPT_SOURCES).optional(),
  /**
   * Additive, when an LLM had a hand in the prompt (enhancement, auto-extension): what it
   * replaced, who wrote it, how long it took, and whether the LLM failed (`fallback_used`:
   * `prompt` is then the original, and `prompt_error` says why).
   */
  original_prompt: z.string().optional(),
  prompt_provider: z.string().optional(),
  prompt_model: z.string().optional(),
  prompt_latency_ms: z.number().min(0).optional(),
  fallback_used: z.boolean().optional(),
  prompt_error: z.string().optional(),
});

export const StepCompleteSchema = z.object({
  type: z.literal('step_complete'),
  segment_idx: nonNegativeInt,
  step: nonNegativeInt,
  total_steps: nonNegativeInt,
  stage: z.literal('denoise'),
  timings: z.object({ step_ms: z.number(), elapsed_ms: z.number() }).optional(),
});

export const DEFAULT_MEDIA_MIME = 'video/mp4; codecs="avc1.64001f, mp4a.40.2"';

export const MediaInitSchema = z.object({
  type: z.literal('media_init'),
  segment_idx: nonNegativeInt,
  mime: z.string().default(DEFAULT_MEDIA_MIME),
  stream_id: z.string(),
  mode: z.enum(STREAM_MODES).default('av_fmp4'),
});

export const MediaSegmentCompleteSchema = z.object({
  type: z.literal('media_segment_complete'),
  segment_idx: nonNegativeInt,
  stream_id: z.string(),
  chunks: nonNegativeInt,
  bytes: nonNegativeInt.optional(),
  duration_ms: z.number().min(0).optional(),
  pts_base_ms: z.number().min(0).optional(),
});

export const Ltx2SegmentCompleteSchema = z.object({
  type: z.literal('ltx2_segment_complete'),
  segment_idx: nonNegativeInt,
  generation_time_ms: z.number().min(0),
  e2e_latency_ms: z.number().min(0).optional(),
});

export const Ltx2StreamCompleteSchema = z.object({
  type: z.literal('ltx2_stream_complete'),
  reason: z.enum(['segment_cap', 'stop_requested', 'error']),
});

export const SessionTimeoutSchema = z.object({
  type: z.literal('session_timeout'),
  timeout_seconds: z.number(),
});

export const ContinuationStateSnapshotSchema = z.object({
  type: z.literal('continuation_state_snapshot'),
  state: ContinuationStateSchema,
  kind: z.string().optional(),
  payload: z.record(z.string(), z.unknown()).optional(),
});

export const ErrorMessageSchema = z.object({
  type: z.literal('error'),
  code: z.enum(ERROR_CODES),
  message: z.string(),
  retryable: z.boolean().default(false),
  /** Additive: why, when the code alone does not say (`prompt_blocked`: the safety filter refused a prompt). */
  reason: z.enum(['prompt_blocked']).optional(),
  /** Additive, with `prompt_blocked` for a segment request: the prompt that was refused. */
  prompt: z.string().optional(),
});

/**
 * Additive (cluster): the session moved to another replica on the same socket (its
 * replica died, or is draining). The segment that was running is generated again from
 * `segment_idx`; a client drops that segment's partial media. `resume_token` replaces
 * the one `gpu_assigned` gave.
 */
export const SessionMigratedSchema = z.object({
  type: z.literal('session_migrated'),
  from_replica: z.string(),
  to_replica: z.string(),
  gpu_id: z.number().int(),
  segment_idx: nonNegativeInt,
  reason: z.enum(['replica_lost', 'replica_draining']),
  resume_token: z.string().optional(),
});

export const ServerMessageSchema = z.discriminatedUnion('type', [
  QueueStatusSchema,
  GpuAssignedSchema,
  Ltx2StreamStartSchema,
  Ltx2SegmentStartSchema,
  StepCompleteSchema,
  MediaInitSchema,
  MediaSegmentCompleteSchema,
  Ltx2SegmentCompleteSchema,
  Ltx2StreamCompleteSchema,
  SessionTimeoutSchema,
  ContinuationStateSnapshotSchema,
  ErrorMessageSchema,
  SessionMigratedSchema,
]);

export type ServerMessage = z.infer<typeof ServerMessageSchema>;
export type ServerMessageType = ServerMessage['type'];
export const SERVER_MESSAGE_TYPES = ServerMessageSchema.options.map((o) => o.shape.type.value) as ServerMessageType[];
export type QueueStatus = z.infer<typeof QueueStatusSchema>;
export type GpuAssigned = z.infer<typeof GpuAssignedSchema>;
export type Ltx2StreamStart = z.infer<typeof Ltx2StreamStartSchema>;
export type Ltx2SegmentStart = z.infer<typeof Ltx2SegmentStartSchema>;
export type StepComplete = z.infer<typeof StepCompleteSchema>;
export type MediaInit = z.infer<typeof MediaInitSchema>;
export type MediaSegmentComplete = z.infer<typeof MediaSegmentCompleteSchema>;
export type Ltx2SegmentComplete = z.infer<typeof Ltx2SegmentCompleteSchema>;
export type Ltx2StreamComplete = z.infer<typeof Ltx2StreamCompleteSchema>;
export type SessionTimeout = z.infer<typeof SessionTimeoutSchema>;
export type ContinuationStateSnapshot = z.infer<typeof ContinuationStateSnapshotSchema>;
export type ErrorMessage = z.infer<typeof ErrorMessageSchema>;
export type SessionMigrated = z.infer<typeof SessionMigratedSchema>;
export type ServerMessageOf<T extends ServerMessageType> = Extract<ServerMessage, { type: T }>;
/** A message of one type as a builder takes it: defaults may be left out, `type` is implied. */
export type ServerMessageFields<T extends ServerMessageType> = Omit<
  Extract<z.input<typeof ServerMessageSchema>, { type: T }>,
  'type'
>;
