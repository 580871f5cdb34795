/**
 * The opening frame of a session: the only frame that may be large (it can carry a
 * 32 MiB image as base64), so the only one whose parsing could hold the event loop for
 * hundreds of milliseconds. Small frames are parsed in place; large ones in a worker
 * thread, so one client's upload never stalls everyone else's stream.
 *
 * Parsing yields the init without the image's base64 text: the image comes back decoded
 * and checked (its header must match the declared type and declare sane dimensions),
 * and nothing keeps the frame alive once the session holds what it needs.
 */
import type { Worker } from 'node:worker_threads';
import { startThread } from '../async/index.js';
import { checkInitialImage, DEFAULT_IMAGE_LIMITS, type ImageLimits } from '../media/image-header.js';
import type { ContinuationState } from '../core/index.js';
import { ErrorCode, jsonDepth, MAX_PAYLOAD_DEPTH, parseClientMessage, SessionInitV2Schema, type SessionInitV2 } from '../protocol/index.js';
import type { FrameLimits } from './policy.js';
import { snapshotBytes } from './snapshots.js';

/** The init as the session uses it: `initial_image` is always absent (the decoded image travels beside it). */
export type SessionInit = SessionInitV2;

export interface DecodedImage {
  mime: string;
  name: string | undefined;
  bytes: Buffer;
}

export type OpeningFrame =
  | {
      ok: true;
      init: SessionInit;
      image: DecodedImage | undefined;
      /** The `continuation_state_snapshot` frame of the init's state, encoded where the frame was parsed. */
      snapshot: Buffer | undefined;
    }
  | { ok: false; message: string };

/** The opening-frame limits of a session policy's frame limits. */
export function openingFrameLimits(frames: FrameLimits): OpeningFrameLimits {
  return { maxTokens: frames.initJsonTokens, maxStateBytes: frames.continuationStateBytes, image: frames.image };
}

export interface OpeningFrameLimits {
  /** JSON structure tokens the frame may hold. */
  maxTokens: number;
  /** Serialised bytes of the continuation state it may carry. */
  maxStateBytes: number;
  image: ImageLimits;
}

/**
 * Parses and checks an opening frame: a valid `session_init_v2` (its type checked before
 * anything else is validated), within the token and state limits, with an image whose
 * bytes are what its mime says. Pure and synchronous: runs in either thread.
 */
export function parseOpeningFrame(frame: Buffer, isBinary: boolean, limits: OpeningFrameLimits): OpeningFrame {
  const parsed = parseClientMessage(frame, { binary: isBinary, maxTokens: limits.maxTokens, only: 'session_init_v2' });
  if (!parsed.ok) return { ok: false, message: parsed.error.message };
  if (parsed.message.type !== 'session_init_v2') return { ok: false, message: `first frame must be session_init_v2, got ${parsed.message.type}` };
  // Unknown fields are kept as metadata; a value nested deeper than a real state ever is
  // has no use, and it would cost a deep copy (or a stack) wherever the init travels.
  if (jsonDepth(parsed.message, MAX_INIT_DEPTH) > MAX_INIT_DEPTH) {
    return { ok: false, message: `session_init_v2: nested deeper than ${MAX_INIT_DEPTH} levels` };
  }
  const { initial_image: imageField, ...fields } = parsed.message;
  const init: SessionInit = { ...fields, type: 'session_init_v2', initial_image: undefined };
  // The state's snapshot frame is encoded here, so a large state costs the event loop
  // nothing when the client asks for it back (and this is the thread for large frames).
  let snapshot: Buffer | undefined;
  if (init.continuation_state) {
    const encoded = snapshotBytes(init.continuation_state);
    if (encoded.stateBytes > limits.maxStateBytes) {
      return { ok: false, message: `continuation_state: ${encoded.stateBytes} bytes, more than the ${limits.maxStateBytes}-byte limit` };
    }
    snapshot = encoded.frame;
  }
  let image: DecodedImage | undefined;
  if (imageField) {
    const bytes = Buffer.from(imageField.data, 'base64');
    const problem = checkInitialImage(bytes, imageField.mime, limits.image);
    if (problem) return { ok: false, message: problem };
    image = { mime: imageField.mime, name: imageField.name ?? undefined, bytes };
  }
  return { ok: true, init, image, snapshot };
}

/** Deepest nesting of the opening frame as a whole: the continuation payload's limit plus its two levels. */
const MAX_INIT_DEPTH = MAX_PAYLOAD_DEPTH + 2;

const KNOWN_INIT_FIELDS = new Set(Object.keys(SessionInitV2Schema.shape));

/** The session fields an init sets; unknown init fields are kept (PROTOCOL.md) as metadata. */
export function sessionFieldsOf(init: SessionInit) {
  return {
    clientId: init.client_id ?? undefined,
    preset: init.preset ?? undefined,
    presetLabel: init.preset_label ?? undefined,
    curatedPrompts: [...init.curated_prompts],
    enhancementEnabled: init.enhancement_enabled,
    autoExtensionEnabled: init.auto_extension_enabled,
    loopGenerationEnabled: init.loop_generation_enabled,
    singleClipMode: init.single_clip_mode,
    streamMode: init.stream_mode,
    metadata: Object.fromEntries(Object.entries(init).filter(([key]) => !KNOWN_INIT_FIELDS.has(key))),
  };
}

/**
 * Checks of a parsed init that its schema cannot make: the server's preset, and a
 * continuation state the workers can resume. Undefined when the init may proceed.
 */
export function refusalOf(
  init: SessionInit,
  serverPreset: string | undefined,
  checkContinuation: (state: ContinuationState) => string | undefined,
): { code: ErrorCode; message: string } | undefined {
  if (serverPreset && init.preset && init.preset !== serverPreset) {
    return {
      code: ErrorCode.PRESET_MISMATCH,
      message: `preset ${JSON.stringify(init.preset)} is not served here (server preset ${JSON.stringify(serverPreset)})`,
    };
  }
  if (init.continuation_state && init.resume_token) {
    return { code: ErrorCode.INVALID_MESSAGE, message: 'continuation_state and resume_token: send one or the other, not both' };
  }
  const problem = init.continuation_state ? checkContinuation(init.continuation_state) : undefined;
  return problem ? { code: ErrorCode.INVALID_MESSAGE, message: problem } : undefined;
}

/** An idle parser thread is stopped after this long, so the memory of a burst of uploads is returned. */
const THREAD_IDLE_MS = 10_000;

/** Frames up to this size are parsed on the event loop: well under a millisecond of work. */
const INLINE_LIMIT_BYTES = 256 * 1024;

interface Job {
  resolve(result: OpeningFrame): void;
  reject(err: Error): void;
}

type ThreadReply = { id: number; result: OpeningFrame } | { id: number; error: string };

/** Parses opening frames: small ones at once, large ones in one worker thread, in arrival order. */
export class OpeningFrameParser {
  private thread: Worker | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private readonly jobs = new Map<number, Job>();
  private nextId = 1;

  constructor(private readonly limits: OpeningFrameLimits = { maxTokens: 100_000, maxStateBytes: 8 * 1024 * 1024, image: DEFAULT_IMAGE_LIMITS }) {}

  parse(frame: Buffer, isBinary: boolean): Promise<OpeningFrame> {
    if (frame.length <= INLINE_LIMIT_BYTES || isBinary) return Promise.resolve(parseOpeningFrame(frame, isBinary, this.limits));
    const thread = this.ensureThread();
    const id = this.nextId++;
    // Hand the bytes over without a copy when the frame owns its whole buffer.
    const owned = frame.byteOffset === 0 && frame.buffer.byteLength === frame.length && frame.buffer instanceof ArrayBuffer;
    const bytes = owned ? new Uint8Array(frame.buffer, 0, frame.length) : new Uint8Array(frame);
    clearTimeout(this.idleTimer);
    return new Promise<OpeningFrame>((resolve, reject) => {
      this.jobs.set(id, { resolve, reject });
      thread.postMessage({ id, frame: bytes, limits: this.limits }, [bytes.buffer as ArrayBuffer]);
    });
  }

  /** Frames waiting for the thread. */
  get pending(): number {
    return this.jobs.size;
  }

  async close(): Promise<void> {
    clearTimeout(this.idleTimer);
    const thread = this.thread;
    this.thread = undefined;
    this.failAll(new Error('the server is shutting down'));
    await thread?.terminate();
  }

  private ensureThread(): Worker {
    if (this.thread) return this.thread;
    // One parse at a time holds the frame, its text, the parsed value and the decoded image.
    const thread = startThread(import.meta.url, 'opening-frame-thread', { resourceLimits: { maxOldGenerationSizeMb: 512 } });
    thread.unref();
    // A reply that cannot be read back fails the job it answers (replies come in request order).
    thread.on('messageerror', (err: Error) => {
      const [first] = this.jobs.keys();
      if (first === undefined) return;
      const job = this.jobs.get(first);
      this.jobs.delete(first);
      job?.reject(err);
    });
    thread.on('message', (reply: ThreadReply) => {
      const job = this.jobs.get(reply.id);
      if (!job) return;
      this.jobs.delete(reply.id);
      if ('error' in reply) job.reject(new Error(reply.error));
      else job.resolve(reviveImage(reply.result));
      this.stopWhenIdle(thread);
    });
    // A thread that dies (out of memory on a hostile frame) fails its jobs; the next parse starts a new one.
    const onDeath = (err: Error): void => {
      if (this.thread === thread) this.thread = undefined;
      this.failAll(err);
    };
    thread.on('error', onDeath);
    thread.on('exit', (code) => onDeath(new Error(`the opening-frame parser exited with code ${code}`)));
    this.thread = thread;
    return thread;
  }

  private stopWhenIdle(thread: Worker): void {
    if (this.jobs.size > 0) return;
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      if (this.thread !== thread || this.jobs.size > 0) return;
      this.thread = undefined;
      void thread.terminate();
    }, THREAD_IDLE_MS);
    this.idleTimer.unref();
  }

  private failAll(err: Error): void {
    const jobs = [...this.jobs.values()];
    this.jobs.clear();
    for (const job of jobs) job.reject(err);
  }
}

/** Structured clone turns Buffers into plain Uint8Arrays; make them Buffers again. */
function reviveImage(result: OpeningFrame): OpeningFrame {
  if (!result.ok) return result;
  const asBuffer = (raw: Uint8Array): Buffer => Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  return {
    ...result,
    image: result.image ? { ...result.image, bytes: asBuffer(result.image.bytes) } : undefined,
    snapshot: result.snapshot ? asBuffer(result.snapshot) : undefined,
  };
}
