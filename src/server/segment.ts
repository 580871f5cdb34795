/**
 * One segment, from a job to the frames the client sees: `ltx2_segment_start`, a
 * `step_complete` per denoising step, `media_init` and the binary media as it is
 * encoded, `media_segment_complete`, the new continuation state stored, and
 * `ltx2_segment_complete`. Generation, encoding and sending overlap: frames go to the
 * encoder as the generator yields them and fragments go to the client as ffmpeg makes
 * them, so the first media leaves long before the segment is done.
 *
 * It talks to the rest of the server only through `SegmentPorts`.
 */
import { randomBytes } from 'node:crypto';
import type { ContinuationState, StreamMode } from '../core/index.js';
import type { GenerationEvent, Generator, SegmentRequest } from '../generation/types.js';
import { GenerationFailure } from './wire-errors.js';
import type { SegmentEncoder } from '../media/index.js';
import { buildServerMessage, DEFAULT_MEDIA_MIME, type PromptSource, type ServerMessage } from '../protocol/index.js';
import type { PromptProvenance } from '../prompts/index.js';
import type { SegmentFigures } from './metrics.js';
import type { SamplingDefaults } from './policy.js';

/** What a request may override of the sampling defaults. */
export type SegmentOverrides = Partial<Pick<SegmentRequest, 'negativePrompt' | 'seed' | 'numInferenceSteps' | 'guidanceScale'>>;

/** A segment the session will run: what to generate and why. */
export interface SegmentJob {
  prompt: string;
  source: PromptSource;
  overrides: SegmentOverrides;
  /** When the request arrived (clock ms), for the end-to-end latency. */
  receivedAt: number;
  /** How an LLM had a hand in the prompt (enhancement, auto-extension), when it did. */
  provenance?: PromptProvenance;
}

/** The additive `ltx2_segment_start` fields that tell how the prompt was written. */
export function provenanceFields(p: PromptProvenance | undefined): Record<string, string | number | boolean> {
  if (!p) return {};
  return {
    ...(p.original !== undefined ? { original_prompt: p.original } : {}),
    ...(p.provider !== undefined ? { prompt_provider: p.provider } : {}),
    ...(p.model !== undefined ? { prompt_model: p.model } : {}),
    ...(p.latencyMs !== undefined ? { prompt_latency_ms: round(p.latencyMs) } : {}),
    fallback_used: p.fallbackUsed,
    ...(p.error !== undefined ? { prompt_error: p.error } : {}),
  };
}

/**
 * What a segment tells its client, in the order it happens; each wire dialect shapes its
 * own frames from these (`/v1/stream`: `v1SegmentEvents`).
 */
export interface SegmentEvents {
  started(e: { segmentIdx: number; prompt: string; totalSteps: number; source: PromptSource; provenance: Record<string, string | number | boolean> }): void;
  step(e: { segmentIdx: number; step: number; totalSteps: number; stepMs: number; elapsedMs: number }): void;
  /** Just before the segment's first binary frame. */
  mediaStarted(e: { segmentIdx: number; mime: string; streamId: string; mode: StreamMode }): void;
  /** After the segment's last binary frame, before its state is stored. */
  mediaFinished(e: { segmentIdx: number; streamId: string; chunks: number; bytes: number; durationMs: number; ptsBaseMs: number }): void;
  /** The segment is fully shipped and counted. */
  completed(e: { segmentIdx: number; generationTimeMs: number; e2eMs: number }): void;
}

/** The `/v1/stream` frames of a segment (PROTOCOL.md). */
export function v1SegmentEvents(send: (message: ServerMessage) => void): SegmentEvents {
  return {
    started: (e) =>
      send(buildServerMessage('ltx2_segment_start', { segment_idx: e.segmentIdx, prompt: e.prompt, total_steps: e.totalSteps, source: e.source, ...e.provenance })),
    step: (e) =>
      send(
        buildServerMessage('step_complete', {
          segment_idx: e.segmentIdx,
          step: e.step,
          total_steps: e.totalSteps,
          stage: 'denoise',
          timings: { step_ms: round(e.stepMs), elapsed_ms: round(e.elapsedMs) },
        }),
      ),
    mediaStarted: (e) => send(buildServerMessage('media_init', { segment_idx: e.segmentIdx, mime: e.mime, stream_id: e.streamId, mode: e.mode })),
    mediaFinished: (e) =>
      send(
        buildServerMessage('media_segment_complete', {
          segment_idx: e.segmentIdx,
          stream_id: e.streamId,
          chunks: e.chunks,
          bytes: e.bytes,
          duration_ms: round(e.durationMs),
          pts_base_ms: round(e.ptsBaseMs),
        }),
      ),
    completed: (e) =>
      send(buildServerMessage('ltx2_segment_complete', { segment_idx: e.segmentIdx, generation_time_ms: round(e.generationTimeMs), e2e_latency_ms: round(e.e2eMs) })),
  };
}

/** Where a segment's output and bookkeeping go. */
export interface SegmentPorts {
  events: SegmentEvents;
  /** Resolves when the connection can take more (backpressure). */
  sendBinary(data: Buffer): Promise<void>;
  storeState(state: ContinuationState): Promise<void>;
  segmentCompleted(figures: SegmentFigures): void;
  log(event: string, payload: Record<string, unknown>): void;
  /** Any sign of life (frames, steps), so the idle reaper leaves a working session alone. */
  touch(): void;
  clock(): number;
}

/** The session's side of the segment: where it stands and what it generates with. */
export interface SegmentContext {
  segmentIdx: number;
  /** Media time at which this segment starts (the earlier segments' total). */
  ptsBaseMs: number;
  streamMode: StreamMode;
  sampling: SamplingDefaults;
  generator: Generator;
  encoder: SegmentEncoder;
  initImagePath: string | undefined;
  /** The state to continue from; undefined generates a fresh clip. */
  continuationState: ContinuationState | undefined;
}

export interface SegmentResult {
  continuationState: ContinuationState | undefined;
  durationMs: number;
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}

/** The generator request for a job: the job's overrides over the sampling defaults. */
export function segmentRequest(job: SegmentJob, ctx: Pick<SegmentContext, 'sampling' | 'initImagePath' | 'continuationState'>): SegmentRequest {
  const d = ctx.sampling;
  return {
    prompt: job.prompt,
    negativePrompt: job.overrides.negativePrompt ?? d.negativePrompt,
    seed: job.overrides.seed ?? d.seed,
    numInferenceSteps: job.overrides.numInferenceSteps ?? d.numInferenceSteps,
    guidanceScale: job.overrides.guidanceScale ?? d.guidanceScale,
    width: d.width,
    height: d.height,
    fps: d.fps,
    numFrames: d.numFrames,
    initImagePath: ctx.initImagePath,
    continuationState: ctx.continuationState,
  };
}

/**
 * Runs `job` to its end. `beforeComplete` runs once the media is out and the state is
 * stored, just before `ltx2_segment_complete`, so the session counts the segment (and
 * may start the next encoder) before the client hears it is done. Throws when the
 * segment fails or `signal` aborts; the caller decides what that ends.
 */
export async function runSegmentJob(
  job: SegmentJob,
  ctx: SegmentContext,
  ports: SegmentPorts,
  signal: AbortSignal,
  beforeComplete: (result: SegmentResult) => void,
): Promise<SegmentResult> {
  const request = segmentRequest(job, ctx);
  const { segmentIdx } = ctx;
  ctx.encoder.setPtsBase(ctx.ptsBaseMs);
  const provenance = provenanceFields(job.provenance);
  ports.events.started({ segmentIdx, prompt: job.prompt, totalSteps: request.numInferenceSteps, source: job.source, provenance });
  ports.log('segment_start', { segment_idx: segmentIdx, prompt: job.prompt, source: job.source, ...provenance });
  const started = ports.clock();
  let firstMediaAt: number | undefined;
  const outcome = await pumpSegment(ctx.generator, request, ctx.encoder, signal, ports, {
    onStep: (step, totalSteps, stepMs, elapsedMs) => ports.events.step({ segmentIdx, step, totalSteps, stepMs, elapsedMs }),
    onMediaStart: (streamId, mime) => {
      firstMediaAt = ports.clock();
      ports.events.mediaStarted({ segmentIdx, mime, streamId, mode: ctx.streamMode });
    },
  });
  if (outcome.chunks === 0 && outcome.bytes === 0) throw new Error('segment produced no media');
  ports.events.mediaFinished({
    segmentIdx,
    streamId: outcome.streamId,
    chunks: outcome.chunks,
    bytes: outcome.bytes,
    durationMs: outcome.durationMs,
    ptsBaseMs: ctx.ptsBaseMs,
  });
  if (outcome.continuationState) await ports.storeState(outcome.continuationState);
  const result: SegmentResult = { continuationState: outcome.continuationState, durationMs: outcome.durationMs };
  beforeComplete(result);
  const e2eMs = ports.clock() - job.receivedAt;
  ports.events.completed({ segmentIdx, generationTimeMs: outcome.generationTimeMs, e2eMs });
  ports.segmentCompleted({
    generationMs: outcome.generationTimeMs,
    e2eMs,
    firstMediaMs: firstMediaAt === undefined ? undefined : firstMediaAt - started,
    firstFragmentMs: outcome.firstFragmentMs,
    bytes: outcome.bytes,
    frames: outcome.frames,
  });
  ports.log('segment_complete', {
    segment_idx: segmentIdx,
    generation_time_ms: round(outcome.generationTimeMs),
    chunks: outcome.chunks,
    bytes: outcome.bytes,
    duration_ms: round(outcome.durationMs),
  });
  return result;
}

/**
 * A generator threw: that is a generation failure (worker_failed) unless it already says
 * what it is (a worker failure, a state it cannot read, a request it refuses, a cancel).
 */
function asGenerationFailure(err: unknown): unknown {
  if (!(err instanceof Error) || err.name === 'AbortError' || err.name === 'SessionEnded') return err;
  if (['WorkerFailure', 'ContinuationStateError', 'InvalidSegmentRequestError'].includes(err.name)) return err;
  return new GenerationFailure(err.message, { cause: err });
}

interface PumpOutcome {
  streamId: string;
  continuationState: ContinuationState | undefined;
  generationTimeMs: number;
  durationMs: number;
  /** Binary frames after the init frame. */
  chunks: number;
  /** All binary bytes of the segment, init included. */
  bytes: number;
  frames: number;
  /** From the first generated frame to the first fragment handed to the socket. */
  firstFragmentMs: number | undefined;
}

interface PumpEvents {
  onStep(step: number, totalSteps: number, stepMs: number, elapsedMs: number): void;
  /** Called once, before the first binary frame, with the stream's MIME type. */
  onMediaStart(streamId: string, mime: string): void;
}

/** Generator → encoder → socket, overlapped; aborting `signal` stops all three. */
async function pumpSegment(
  generator: Generator,
  request: SegmentRequest,
  encoder: SegmentEncoder,
  signal: AbortSignal,
  ports: Pick<SegmentPorts, 'sendBinary' | 'touch' | 'clock'>,
  events: PumpEvents,
): Promise<PumpOutcome> {
  const streamId = randomBytes(8).toString('hex');
  const started = ports.clock();
  let continuationState: ContinuationState | undefined;
  let chunks = 0;
  let bytes = 0;
  let frames = 0;
  let firstFrameAt: number | undefined;
  let firstFragmentMs: number | undefined;

  const onAbort = (): void => void encoder.abort(signal.reason);
  signal.addEventListener('abort', onAbort, { once: true });

  const ship = (async () => {
    let shipping = false;
    for await (const chunk of encoder.chunks()) {
      if (!shipping) {
        shipping = true;
        events.onMediaStart(streamId, chunk.mime ?? encoder.mime ?? DEFAULT_MEDIA_MIME);
      }
      if (chunk.kind === 'fragment') {
        chunks += 1;
        if (firstFragmentMs === undefined && firstFrameAt !== undefined) firstFragmentMs = ports.clock() - firstFrameAt;
      }
      bytes += chunk.data.length;
      await ports.sendBinary(chunk.data);
    }
  })();
  // If generation fails first, the shipping side is torn down by abort(); keep its
  // rejection from surfacing as unhandled while we wait on the generator.
  ship.catch(() => undefined);

  let generationTimeMs: number;
  try {
    const stream = generator.generate(request, signal)[Symbol.asyncIterator]();
    for (;;) {
      let next: IteratorResult<GenerationEvent>;
      try {
        next = await stream.next();
      } catch (err) {
        throw asGenerationFailure(err);
      }
      if (next.done) break;
      const event = next.value;
      switch (event.type) {
        case 'step':
          events.onStep(event.step, event.totalSteps, event.stepMs, event.elapsedMs);
          ports.touch();
          break;
        case 'video':
          frames += 1;
          firstFrameAt ??= ports.clock();
          await encoder.writeVideo(event.frame, event.release);
          ports.touch();
          break;
        case 'audio':
          await encoder.writeAudio(event.samples);
          break;
        case 'done':
          continuationState = event.continuationState;
          break;
      }
    }
    signal.throwIfAborted();
    generationTimeMs = ports.clock() - started;
    await encoder.end();
    await ship;
  } catch (err) {
    await encoder.abort(err);
    await ship.catch(() => undefined);
    throw err;
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
  return { streamId, continuationState, generationTimeMs, durationMs: (frames * 1000) / request.fps, chunks, bytes, frames, firstFragmentMs };
}
