/**
 * `legacy_jpeg` mode: every RGB24 frame becomes one JPEG, sent as one 'fragment'
 * chunk (no init chunk). Audio has no place in this mode and is accepted and dropped.
 */
import { FfmpegPipeline, type OutputFramer } from './ffmpeg-pipeline.js';
import { JpegSplitter } from './jpeg-splitter.js';
import { PipelineEncoder, type SegmentEncoder, type SegmentEncoderOptions, validateGeometry, videoInput } from './segment-encoder.js';
import type { MediaChunk } from './types.js';

export interface JpegFrameEncoderOptions extends SegmentEncoderOptions {
  /** mjpeg `-q:v`, 2 (best) to 31. Default 5. */
  quality?: number;
}

export const JPEG_MIME = 'image/jpeg';

export function jpegArgs(options: JpegFrameEncoderOptions): string[] {
  validateGeometry(options);
  const quality = options.quality ?? 5;
  if (!Number.isInteger(quality) || quality < 2 || quality > 31) throw new RangeError(`JPEG quality must be an integer 2..31, got ${quality}`);
  return [
    '-hide_banner', '-nostats', '-loglevel', 'error',
    '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', `${options.width}x${options.height}`, '-framerate', String(options.fps), '-i', 'pipe:0',
    '-map', '0:v:0',
    // Full-range 4:2:0 is what browsers expect of a JPEG; -q:v because mjpeg's default bitrate mode is blurry.
    '-c:v', 'mjpeg', '-pix_fmt', 'yuvj420p', '-q:v', String(quality),
    // One thread: frame threading would hold back each image by a frame or two.
    '-threads', '1',
    '-f', 'image2pipe', '-flush_packets', '1',
    'pipe:1',
  ];
}

class JpegFramer implements OutputFramer {
  private readonly splitter = new JpegSplitter();

  push(data: Buffer): MediaChunk[] {
    return this.splitter.push(data).map((image) => ({ kind: 'fragment', data: image }));
  }

  end(): MediaChunk[] {
    return this.splitter.end().map((image) => ({ kind: 'fragment', data: image }));
  }
}

export class JpegFrameEncoder extends PipelineEncoder implements SegmentEncoder {
  readonly mode = 'legacy_jpeg' as const;
  readonly mime = JPEG_MIME;
  protected readonly pipeline: FfmpegPipeline;

  constructor(options: JpegFrameEncoderOptions) {
    super();
    this.pipeline = new FfmpegPipeline({
      ffmpegPath: options.ffmpegPath ?? 'ffmpeg',
      args: jpegArgs(options),
      video: videoInput(options),
      audio: null,
      ignoreAudio: true,
      framer: new JpegFramer(),
      signal: options.signal,
    });
  }

  /** JPEGs carry no timestamps: nothing to shift. */
  setPtsBase(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`pts base must be a non-negative number of ms, got ${ms}`);
  }
}
