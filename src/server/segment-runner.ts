import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { ContinuationState, Generator, SegmentRequest } from '../generation/types.js';
import type { SegmentEncoder } from '../media/index.js';
import { DEFAULT_MEDIA_MIME } from '../protocol/index.js';

/** What one segment run reports back to the driver. */
export interface SegmentOutcome {
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

/** Where a segment's output goes; the driver turns these into protocol frames. */
export interface SegmentSink {
  onStep(step: number, totalSteps: number, stepMs: number, elapsedMs: number): void;
  /** Called once, before the first binary frame, with the stream's MIME type. */
  onMediaStart(streamId: string, mime: string): void;
  sendBinary(data: Buffer): Promise<void>;
  /** Any sign of life (frames, steps) so an idle reaper leaves a working session alone. */
  onProgress(): void;
}

/**
 * Runs one segment with generation, encoding and sending overlapped: frames go to the
 * encoder as the generator yields them, and fragments go to the client as the encoder
 * produces them, so the first media leaves long before the segment is done.
 */
export async function runSegment(
  generator: Generator,
  request: SegmentRequest,
  encoder: SegmentEncoder,
  sink: SegmentSink,
  signal: AbortSignal,
): Promise<SegmentOutcome> {
  const streamId = randomBytes(8).toString('hex');
  const started = performance.now();
  let generationTimeMs = 0;
  let continuationState: ContinuationState | undefined;
  let chunks = 0;
  let bytes = 0;
  let frames = 0;
  let firstFrameAt: number | undefined;
  let firstFragmentMs: number | undefined;

  const onAbort = (): void => void encoder.abort(signal.reason);
  signal.addEventListener('abort', onAbort, { once: true });

  const ship = (async () => {
    let started = false;
    for await (const chunk of encoder.chunks()) {
      if (!started) {
        started = true;
        sink.onMediaStart(streamId, chunk.mime ?? encoder.mime ?? DEFAULT_MEDIA_MIME);
      }
      if (chunk.kind === 'fragment') {
        chunks += 1;
        if (firstFragmentMs === undefined && firstFrameAt !== undefined) firstFragmentMs = performance.now() - firstFrameAt;
      }
      bytes += chunk.data.length;
      await sink.sendBinary(chunk.data);
    }
  })();
  // If generation fails first, the shipping side is torn down by abort(); keep its
  // rejection from surfacing as unhandled while we wait on the generator.
  ship.catch(() => undefined);

  try {
    for await (const event of generator.generate(request, signal)) {
      switch (event.type) {
        case 'step':
          sink.onStep(event.step, event.totalSteps, event.stepMs, event.elapsedMs);
          sink.onProgress();
          break;
        case 'video':
          frames += 1;
          firstFrameAt ??= performance.now();
          await encoder.writeVideo(event.frame, event.release);
          sink.onProgress();
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
    generationTimeMs = performance.now() - started;
    await encoder.end();
    await ship;
  } catch (err) {
    await encoder.abort(err);
    await ship.catch(() => undefined);
    throw err;
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
  return {
    streamId,
    continuationState,
    generationTimeMs,
    durationMs: (frames * 1000) / request.fps,
    chunks,
    bytes,
    frames,
    firstFragmentMs,
  };
}
