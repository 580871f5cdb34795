import { z } from 'zod';
import { STREAM_MODES, type ContinuationState as CoreContinuationState } from '../core/index.js';

/**
 * Client → server frames (PROTOCOL.md "Client → server"). Optional fields also accept
 * `null`, as FastVideo's pydantic models do (`str | None`), so its clients work unchanged;
 * `null` is treated as absent.
 */

export const INITIAL_IMAGE_MIMES = ['image/png', 'image/jpeg', 'image/jpg', 'image/webp'] as const;
export const MAX_INITIAL_IMAGE_BYTES = 32 * 1024 * 1024;
export { STREAM_MODES };
export const PROMPT_SOURCES = ['curated', 'enhanced', 'user', 'auto_extension'] as const;

// One flat character-class loop: a grouped, backtracking pattern overflows V8's stack on
// multi-megabyte images. Length and padding are checked separately.
const BASE64_CHARS = /^[A-Za-z0-9+/]*={0,2}$/;

function isCanonicalBase64(data: string): boolean {
  return data.length % 4 === 0 && BASE64_CHARS.test(data);
}

/** Decoded byte length of a canonical base64 string. */
export function base64DecodedLength(data: string): number {
  if (data.length % 4 !== 0) return Math.floor((data.length * 3) / 4);
  const padding = data.endsWith('==') ? 2 : data.endsWith('=') ? 1 : 0;
  return (data.length / 4) * 3 - padding;
}

const optionalString = z.string().nullish();

/** Deepest nesting accepted in an opaque payload; real continuation states are shallow. */
export const MAX_PAYLOAD_DEPTH = 64;

/** Nesting depth of a JSON value, measured without recursion (a hostile value may be 10^5 deep). */
export function jsonDepth(value: unknown, stopAt = Infinity): number {
  let deepest = 0;
  const stack: [unknown, number][] = [[value, 1]];
  while (stack.length > 0) {
    const [node, depth] = stack.pop() as [unknown, number];
    if (node === null || typeof node !== 'object') continue;
    deepest = Math.max(deepest, depth);
    if (deepest > stopAt) return deepest;
    for (const child of Object.values(node)) stack.push([child, depth + 1]);
  }
  return deepest;
}

export const ContinuationStateSchema = z.object({
  kind: z.string().min(1),
  payload: z
    .record(z.string(), z.unknown())
    .refine((p) => jsonDepth(p, MAX_PAYLOAD_DEPTH) <= MAX_PAYLOAD_DEPTH, `nested deeper than ${MAX_PAYLOAD_DEPTH} levels`),
}) satisfies z.ZodType<CoreContinuationState>;

export const InitialImageSchema = z.object({
  mime: z.enum(INITIAL_IMAGE_MIMES),
  name: optionalString,
  data: z
    .string()
    .min(1, 'must not be empty')
    // Size first, so an oversize image is refused without scanning it.
    .refine((d) => base64DecodedLength(d) <= MAX_INITIAL_IMAGE_BYTES, {
      message: `decoded image exceeds ${MAX_INITIAL_IMAGE_BYTES} bytes`,
      abort: true,
    })
    .refine(isCanonicalBase64, 'expected base64'),
});

export const SessionInitV2Schema = z.looseObject({
  type: z.literal('session_init_v2'),
  client_id: optionalString,
  preset: optionalString,
  preset_label: optionalString,
  curated_prompts: z.array(z.string()).default([]),
  initial_image: InitialImageSchema.nullish(),
  enhancement_enabled: z.boolean().default(false),
  auto_extension_enabled: z.boolean().default(false),
  loop_generation_enabled: z.boolean().default(false),
  single_clip_mode: z.boolean().default(false),
  stream_mode: z.enum(STREAM_MODES).default('av_fmp4'),
  continuation_state: ContinuationStateSchema.nullish(),
  /** Additive: continue the story a `gpu_assigned.resume_token` named, from the state the server kept. */
  resume_token: z.string().min(1).max(256).nullish(),
});

export const SegmentPromptSourceSchema = z.object({
  type: z.literal('segment_prompt_source'),
  prompt: z.string(),
  negative_prompt: optionalString,
  source: z.enum(PROMPT_SOURCES).default('user'),
  seed: z.number().int().nullish(),
  num_inference_steps: z.number().int().min(1).max(1000).nullish(),
  guidance_scale: z.number().nullish(),
});

export const SeedPromptsUpdatedSchema = z.object({
  type: z.literal('seed_prompts_updated'),
  seed_prompts: z.array(z.string()).default([]),
});

export const EnhancementUpdatedSchema = z.object({
  type: z.literal('enhancement_updated'),
  enabled: z.boolean(),
});

export const AutoExtensionUpdatedSchema = z.object({
  type: z.literal('auto_extension_updated'),
  enabled: z.boolean(),
});

export const LoopGenerationUpdatedSchema = z.object({
  type: z.literal('loop_generation_updated'),
  enabled: z.boolean(),
});

export const GenerationPausedUpdatedSchema = z.object({
  type: z.literal('generation_paused_updated'),
  paused: z.boolean(),
});

export const SnapshotStateSchema = z.object({
  type: z.literal('snapshot_state'),
});

export const CLIENT_MESSAGE_SCHEMAS = {
  session_init_v2: SessionInitV2Schema,
  segment_prompt_source: SegmentPromptSourceSchema,
  seed_prompts_updated: SeedPromptsUpdatedSchema,
  enhancement_updated: EnhancementUpdatedSchema,
  auto_extension_updated: AutoExtensionUpdatedSchema,
  loop_generation_updated: LoopGenerationUpdatedSchema,
  generation_paused_updated: GenerationPausedUpdatedSchema,
  snapshot_state: SnapshotStateSchema,
} as const;

export type ClientMessageType = keyof typeof CLIENT_MESSAGE_SCHEMAS;
export const CLIENT_MESSAGE_TYPES = Object.keys(CLIENT_MESSAGE_SCHEMAS) as ClientMessageType[];

export const ClientMessageSchema = z.discriminatedUnion('type', [
  SessionInitV2Schema,
  SegmentPromptSourceSchema,
  SeedPromptsUpdatedSchema,
  EnhancementUpdatedSchema,
  AutoExtensionUpdatedSchema,
  LoopGenerationUpdatedSchema,
  GenerationPausedUpdatedSchema,
  SnapshotStateSchema,
]);

export type ContinuationState = CoreContinuationState;
export type InitialImage = z.infer<typeof InitialImageSchema>;
export type SessionInitV2 = z.infer<typeof SessionInitV2Schema>;
export type SegmentPromptSource = z.infer<typeof SegmentPromptSourceSchema>;
export type SeedPromptsUpdated = z.infer<typeof SeedPromptsUpdatedSchema>;
export type EnhancementUpdated = z.infer<typeof EnhancementUpdatedSchema>;
export type AutoExtensionUpdated = z.infer<typeof AutoExtensionUpdatedSchema>;
export type LoopGenerationUpdated = z.infer<typeof LoopGenerationUpdatedSchema>;
export type GenerationPausedUpdated = z.infer<typeof GenerationPausedUpdatedSchema>;
export type SnapshotState = z.infer<typeof SnapshotStateSchema>;
export type ClientMessage = z.infer<typeof ClientMessageSchema>;
/** What a client writes: defaults may be left out. */
export type ClientMessageInput = z.input<typeof ClientMessageSchema>;
export type PromptSource = (typeof PROMPT_SOURCES)[number];
export type { StreamMode } from '../core/index.js';
