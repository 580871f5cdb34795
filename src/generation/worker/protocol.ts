import { z } from 'zod';
import type { SegmentRequest } from '../types.js';

/**
 * The livegen worker protocol, version 1 (docs/worker-protocol.md). A worker is a child
 * process: livegen writes JSON lines to its stdin; the worker writes JSON lines and
 * length-prefixed binary records (RGB24 frames, f32le audio) to its stdout, so frames
 * cross the pipe without base64. Logs go to stderr.
 */
export const WORKER_PROTOCOL = 'livegen-worker/1';

/** First byte of a stdout record. A JSON line always starts with `{`. */
export const RecordKind = {
  JSON: 0x7b,
  VIDEO: 0x01,
  AUDIO: 0x02,
} as const;

/** Binary record header: kind byte + 32-bit big-endian payload length. */
export const RECORD_HEADER_BYTES = 5;
/** Longest JSON line accepted; a worker writing more is broken. */
export const MAX_JSON_LINE_BYTES = 16 * 1024 * 1024;

const AudioCapability = z.object({ sample_rate: z.number().int().positive(), channels: z.number().int().positive() });

export const WorkerMessageSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('hello'), protocol: z.string(), pid: z.number().int().optional() }),
  z.object({
    type: z.literal('ready'),
    model_id: z.string().min(1),
    capabilities: z
      .object({
        audio: AudioCapability.nullable().optional(),
        continuation_kind: z.string().min(1).nullable().optional(),
        /** JSON Schema of `continuation_state.payload`, so livegen can refuse an unreadable state at session init. */
        continuation_schema: z.record(z.string(), z.unknown()).nullable().optional(),
      })
      .prefault({}),
  }),
  z.object({ type: z.literal('warmup_done'), timings: z.record(z.string(), z.number()).prefault({}) }),
  z.object({
    type: z.literal('progress'),
    job_id: z.string(),
    step: z.number().int().min(0),
    total_steps: z.number().int().min(0),
    step_ms: z.number().min(0).optional(),
    elapsed_ms: z.number().min(0).optional(),
  }),
  z.object({
    type: z.literal('result'),
    job_id: z.string(),
    continuation_state: z.object({ kind: z.string().min(1), payload: z.record(z.string(), z.unknown()) }).nullable().optional(),
  }),
  z.object({
    type: z.literal('error'),
    job_id: z.string().nullable().optional(),
    code: z.enum(['cancelled', 'failed', 'warmup_failed', 'load_failed', 'bad_request', 'invalid_continuation']).default('failed'),
    message: z.string(),
  }),
  z.object({
    type: z.literal('log'),
    level: z.string().min(1).optional(),
    message: z.string(),
    fields: z.record(z.string(), z.unknown()).optional(),
  }),
]);
export type WorkerMessage = z.infer<typeof WorkerMessageSchema>;

/** What livegen sends for one segment (snake_case on the wire, like the client protocol). */
export interface WorkerJobRequest {
  prompt: string;
  negative_prompt?: string;
  seed: number;
  num_inference_steps: number;
  guidance_scale: number;
  width: number;
  height: number;
  fps: number;
  num_frames: number;
  init_image_path?: string;
  continuation_state?: { kind: string; payload: Record<string, unknown> };
}

/**
 * A segment request as it crosses the pipe. livegen encodes with this and the TypeScript
 * worker runtime decodes with `decodeJobRequest`, so the two sides cannot disagree on a
 * field name. Absent optional fields stay absent (not `undefined`, not `null`).
 */
export function encodeJobRequest(request: SegmentRequest): WorkerJobRequest {
  const wire: WorkerJobRequest = {
    prompt: request.prompt,
    seed: request.seed,
    num_inference_steps: request.numInferenceSteps,
    guidance_scale: request.guidanceScale,
    width: request.width,
    height: request.height,
    fps: request.fps,
    num_frames: request.numFrames,
  };
  if (request.negativePrompt !== undefined) wire.negative_prompt = request.negativePrompt;
  if (request.initImagePath !== undefined) wire.init_image_path = request.initImagePath;
  if (request.continuationState !== undefined) {
    wire.continuation_state = { kind: request.continuationState.kind, payload: request.continuationState.payload };
  }
  return wire;
}

/** The inverse of `encodeJobRequest`. */
export function decodeJobRequest(wire: WorkerJobRequest): SegmentRequest {
  const request: SegmentRequest = {
    prompt: wire.prompt,
    seed: wire.seed,
    numInferenceSteps: wire.num_inference_steps,
    guidanceScale: wire.guidance_scale,
    width: wire.width,
    height: wire.height,
    fps: wire.fps,
    numFrames: wire.num_frames,
  };
  // The wire is JSON, where a writer may spell "absent" as null.
  if (wire.negative_prompt != null) request.negativePrompt = wire.negative_prompt;
  if (wire.init_image_path != null) request.initImagePath = wire.init_image_path;
  if (wire.continuation_state != null) {
    request.continuationState = { kind: wire.continuation_state.kind, payload: wire.continuation_state.payload };
  }
  return request;
}

export type ControlMessage =
  | { type: 'warmup'; request: WorkerJobRequest }
  | { type: 'job'; job_id: string; request: WorkerJobRequest }
  | { type: 'cancel'; job_id: string }
  | { type: 'shutdown' };

export class WorkerProtocolError extends Error {
  override readonly name = 'WorkerProtocolError';
}

export type WorkerRecord =
  | { kind: 'message'; message: WorkerMessage }
  | { kind: 'video'; data: Buffer }
  | { kind: 'audio'; data: Buffer };

/**
 * Splits a worker's stdout into records. Throws `WorkerProtocolError` on anything that is
 * not a record (bad JSON, unknown message, unknown kind byte, oversize lengths): the
 * supervisor treats that as a worker failure.
 */
export class WorkerRecordReader {
  // Chunks as they came off the pipe; a record is copied only when it straddles chunks,
  // so a frame arriving in 64 KiB pieces costs one copy, not one per piece.
  private chunks: Buffer[] = [];
  private length = 0;

  constructor(private readonly maxBinaryBytes: number) {}

  push(chunk: Buffer): WorkerRecord[] {
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.length += chunk.length;
    }
    const records: WorkerRecord[] = [];
    while (this.length > 0) {
      const kind = this.byteAt(0);
      if (kind === RecordKind.JSON) {
        const end = this.indexOfNewline();
        if (end < 0) {
          if (this.length > MAX_JSON_LINE_BYTES) throw new WorkerProtocolError('JSON line too long');
          break;
        }
        const line = this.take(end + 1);
        records.push({ kind: 'message', message: parseMessage(line.toString('utf8', 0, end)) });
      } else if (kind === RecordKind.VIDEO || kind === RecordKind.AUDIO) {
        if (this.length < RECORD_HEADER_BYTES) break;
        const header = this.peek(RECORD_HEADER_BYTES);
        const size = header.readUInt32BE(1);
        if (size === 0 || size > this.maxBinaryBytes) {
          throw new WorkerProtocolError(`binary record of ${size} bytes (limit ${this.maxBinaryBytes})`);
        }
        if (this.length < RECORD_HEADER_BYTES + size) break;
        this.take(RECORD_HEADER_BYTES);
        const data = this.take(size);
        records.push({ kind: kind === RecordKind.VIDEO ? 'video' : 'audio', data });
      } else if (kind === 0x0a || kind === 0x0d) {
        this.take(1); // blank line between JSON messages
      } else {
        throw new WorkerProtocolError(`unexpected byte 0x${kind.toString(16).padStart(2, '0')} at the start of a record`);
      }
    }
    return records;
  }

  get pendingBytes(): number {
    return this.length;
  }

  private byteAt(index: number): number {
    let i = index;
    for (const chunk of this.chunks) {
      if (i < chunk.length) return chunk[i] as number;
      i -= chunk.length;
    }
    return -1;
  }

  private indexOfNewline(): number {
    let base = 0;
    for (const chunk of this.chunks) {
      const at = chunk.indexOf(0x0a);
      if (at >= 0) return base + at;
      base += chunk.length;
    }
    return -1;
  }

  private peek(n: number): Buffer {
    const first = this.chunks[0] as Buffer;
    return first.length >= n ? first.subarray(0, n) : Buffer.concat(this.chunks).subarray(0, n);
  }

  /** Removes and returns the first `n` bytes (zero-copy when they sit in one chunk). */
  private take(n: number): Buffer {
    const first = this.chunks[0] as Buffer;
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let filled = 0;
      while (filled < n) {
        const chunk = this.chunks[0] as Buffer;
        const part = Math.min(chunk.length, n - filled);
        chunk.copy(out, filled, 0, part);
        filled += part;
        if (part === chunk.length) this.chunks.shift();
        else this.chunks[0] = chunk.subarray(part);
      }
    }
    this.length -= n;
    return out;
  }
}

function parseMessage(line: string): WorkerMessage {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw new WorkerProtocolError(`invalid JSON line: ${line.slice(0, 120)}`);
  }
  const parsed = WorkerMessageSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new WorkerProtocolError(`invalid worker message (${issue?.path.join('.') || 'type'}: ${issue?.message}): ${line.slice(0, 120)}`);
  }
  return parsed.data;
}

/** Encodes a binary record (for workers written in TypeScript and for tests). */
export function encodeRecord(kind: typeof RecordKind.VIDEO | typeof RecordKind.AUDIO, payload: Buffer): Buffer[] {
  const header = Buffer.allocUnsafe(RECORD_HEADER_BYTES);
  header[0] = kind;
  header.writeUInt32BE(payload.length, 1);
  return [header, payload];
}
