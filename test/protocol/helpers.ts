import { parseClientMessage, type ClientMessage, type ParseResult, type ProtocolError } from '../../src/protocol/index.js';

/** The 8 client → server types of PROTOCOL.md, written out by hand. */
export const CLIENT_TYPES = [
  'session_init_v2',
  'segment_prompt_source',
  'seed_prompts_updated',
  'enhancement_updated',
  'auto_extension_updated',
  'loop_generation_updated',
  'generation_paused_updated',
  'snapshot_state',
] as const;

/** The 12 server → client types of PROTOCOL.md and livegen's additive `session_migrated` (cluster), written out by hand. */
export const SERVER_TYPES = [
  'queue_status',
  'gpu_assigned',
  'ltx2_stream_start',
  'ltx2_segment_start',
  'step_complete',
  'media_init',
  'media_segment_complete',
  'ltx2_segment_complete',
  'ltx2_stream_complete',
  'session_timeout',
  'continuation_state_snapshot',
  'error',
  'session_migrated',
] as const;

/** A 1×1 transparent PNG. */
export const TINY_PNG_BASE64 =
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==';

/** Parses a JSON-encodable value as a client text frame. */
export function parseValue(value: unknown): ParseResult {
  return parseClientMessage(JSON.stringify(value));
}

export function messageOf(result: ParseResult): ClientMessage {
  if (!result.ok) throw new Error(`expected the frame to parse, got: ${result.error.message}`);
  return result.message;
}

export function errorOf(result: ParseResult): ProtocolError {
  if (result.ok) throw new Error(`expected the frame to be rejected, got: ${JSON.stringify(result.message)}`);
  return result.error;
}

/** Every `null` or `undefined` found anywhere in a JSON-like value, as dotted paths. */
/**
 * Paths of null/undefined values in a server message. A continuation `payload` is the
 * generator's opaque data, passed through verbatim so a snapshot returns exactly what was
 * stored; it is not a protocol field and is not searched.
 */
export function emptyPaths(value: unknown, path = '$'): string[] {
  if (value === null || value === undefined) return [path];
  if (Array.isArray(value)) return value.flatMap((v, i) => emptyPaths(v, `${path}[${i}]`));
  if (typeof value === 'object') {
    return Object.entries(value as Record<string, unknown>)
      .filter(([k]) => k !== 'payload')
      .flatMap(([k, v]) => emptyPaths(v, `${path}.${k}`));
  }
  return [];
}
