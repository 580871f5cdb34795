/**
 * What the connection driver sees of an encoder, whatever the stream mode: start it
 * ahead of need, write frames while reading chunks, then end or abort it.
 */
import type { StreamMode } from '../core/index.js';
import type { AudioFormat } from '../generation/types.js';
import type { EncodeSummary, FfmpegPipeline, PipelineInput } from './ffmpeg-pipeline.js';
import type { MediaChunk } from './types.js';

export type { EncodeSummary } from './ffmpeg-pipeline.js';

/** The stream modes of `session_init_v2.stream_mode` (the shared definition in src/core). */
export type SegmentEncoderMode = StreamMode;

export interface SegmentEncoder {
  readonly mode: SegmentEncoderMode;
  /** ffmpeg's process id (undefined when it could not be started). */
  readonly pid: number | undefined;
  /** The stream's MIME type: known from the start for JPEG, from the init chunk on for fMP4. */
  readonly mime: string | undefined;
  /** Chunks in order while frames are still being written. One consumer; breaking out aborts. */
  chunks(): AsyncIterableIterator<MediaChunk>;
  /** Start this segment's media time at `ms` (before the first fragment is delivered). */
  setPtsBase(ms: number): void;
  /**
   * One RGB24 frame, `width * height * 3` bytes. Resolves when more may be written.
   * `onReleased` runs once the encoder no longer holds the frame, so its owner may reuse it.
   */
  writeVideo(frame: Buffer, onReleased?: () => void): Promise<void>;
  /** Interleaved f32le samples in the configured format. */
  writeAudio(samples: Buffer): Promise<void>;
  /** No more input: resolves once ffmpeg exited and every chunk is queued. */
  end(): Promise<EncodeSummary>;
  /** Cancel: kills ffmpeg; the iterator, writes and `end()` reject with an AbortError. Resolves when the process is gone. */
  abort(reason?: unknown): Promise<void>;
}

export interface SegmentEncoderOptions {
  width: number;
  height: number;
  fps: number;
  /** The audio that will be written, or null for silent video. */
  audio: AudioFormat | null;
  /** Default `'ffmpeg'` (found on PATH). */
  ffmpegPath?: string;
  /** Aborts the encoder when it fires. */
  signal?: AbortSignal;
}

export function validateGeometry(options: SegmentEncoderOptions): void {
  const { width, height, fps } = options;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0) {
    throw new RangeError(`frame size must be positive integers, got ${width}x${height}`);
  }
  if (!(fps > 0) || !Number.isFinite(fps)) throw new RangeError(`fps must be a positive number, got ${fps}`);
  if (options.audio) {
    const { sampleRate, channels } = options.audio;
    if (!Number.isInteger(sampleRate) || sampleRate <= 0 || !Number.isInteger(channels) || channels <= 0) {
      throw new RangeError(`audio format must have positive integer sampleRate and channels, got ${sampleRate} Hz x ${channels}`);
    }
  }
}

/** Input watermarks for RGB24 video: a quarter second buffered, up to two seconds when audio lags. */
export function videoInput(options: SegmentEncoderOptions): PipelineInput & { fps: number } {
  const frameBytes = options.width * options.height * 3;
  return {
    fps: options.fps,
    unitBytes: frameBytes,
    bytesPerSecond: frameBytes * options.fps,
    highWaterBytes: frameBytes * Math.max(2, Math.ceil(options.fps / 4)),
    maxLeadBytes: frameBytes * Math.ceil(options.fps * 2),
  };
}

/**
 * Input watermarks for f32le audio. Audio is ~1000x smaller than raw video, so it may
 * run a whole segment ahead: a generator that has all its audio at once can hand it over.
 */
export function audioInput(audio: AudioFormat): PipelineInput {
  const bytesPerSecond = 4 * audio.channels * audio.sampleRate;
  return {
    unitBytes: 4 * audio.channels,
    bytesPerSecond,
    highWaterBytes: Math.max(64 * 1024, Math.ceil(bytesPerSecond / 4)),
    maxLeadBytes: bytesPerSecond * 30,
  };
}

/** What both encoders do the same way: everything but framing goes to their ffmpeg pipeline. */
export abstract class PipelineEncoder {
  protected abstract readonly pipeline: FfmpegPipeline;

  get pid(): number | undefined {
    return this.pipeline.pid;
  }

  chunks(): AsyncIterableIterator<MediaChunk> {
    return this.pipeline.chunks();
  }

  writeVideo(frame: Buffer, onReleased?: () => void): Promise<void> {
    return this.pipeline.writeVideo(frame, onReleased);
  }

  writeAudio(samples: Buffer): Promise<void> {
    return this.pipeline.writeAudio(samples);
  }

  end(): Promise<EncodeSummary> {
    return this.pipeline.end();
  }

  abort(reason?: unknown): Promise<void> {
    return this.pipeline.abort(reason);
  }
}
