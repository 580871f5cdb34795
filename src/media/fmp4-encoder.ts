/**
 * `av_fmp4` mode: RGB24 frames (+ f32le audio) → H.264 + AAC fragmented MP4, one
 * ffmpeg process per media segment, started as soon as the encoder is constructed
 * (ffmpeg takes 60–80 ms to start) so the caller can create it ahead of need.
 */
import { FfmpegPipeline } from './ffmpeg-pipeline.js';
import { Fmp4Framer, shiftFragment } from './fmp4-framer.js';
import {
  audioInput,
  type SegmentEncoder,
  type SegmentEncoderOptions,
  validateGeometry,
  videoInput,
  PipelineEncoder,
} from './segment-encoder.js';
import type { MediaChunk } from './types.js';

export interface FragmentedMp4EncoderOptions extends SegmentEncoderOptions {
  /** Target fragment length. Short fragments let playback start before the segment is encoded. Default 100. */
  fragmentDurationMs?: number;
  /** Default 'ultrafast': the encoder must outrun generation on two shared cores. */
  x264Preset?: string;
  /** Default 23. */
  crf?: number;
  /** Cap for live viewing (noisy generated content reaches ~13 Mbit/s uncapped). Default 4000. */
  maxBitrateKbps?: number;
  /** Keyframe interval in frames. Default: one second (`fps`). */
  gopFrames?: number;
}

type ResolvedOptions = Required<Omit<FragmentedMp4EncoderOptions, 'signal'>>;

function resolveOptions(options: FragmentedMp4EncoderOptions): ResolvedOptions {
  validateGeometry(options);
  const resolved: ResolvedOptions = {
    width: options.width,
    height: options.height,
    fps: options.fps,
    audio: options.audio,
    ffmpegPath: options.ffmpegPath ?? 'ffmpeg',
    fragmentDurationMs: options.fragmentDurationMs ?? 100,
    x264Preset: options.x264Preset ?? 'ultrafast',
    crf: options.crf ?? 23,
    maxBitrateKbps: options.maxBitrateKbps ?? 4000,
    gopFrames: options.gopFrames ?? Math.max(1, Math.round(options.fps)),
  };
  if (resolved.width % 2 !== 0 || resolved.height % 2 !== 0) {
    throw new RangeError(`yuv420p H.264 needs an even frame size, got ${resolved.width}x${resolved.height}`);
  }
  if (!(resolved.fragmentDurationMs > 0)) throw new RangeError(`fragmentDurationMs must be positive, got ${resolved.fragmentDurationMs}`);
  return resolved;
}

const NO_PROBE = ['-probesize', '32', '-analyzeduration', '0'];

/** The ffmpeg command line for one segment (exported so tests and docs can show it). */
export function fragmentedMp4Args(options: FragmentedMp4EncoderOptions): string[] {
  const o = resolveOptions(options);
  const args = [
    '-hide_banner', '-nostats', '-loglevel', 'error',
    // Video: raw RGB24 on stdin; -framerate stamps frames at a constant rate. Raw inputs
    // need no probing, and ffmpeg opens inputs one after the other: by default it would
    // read up to 5 s of audio before it takes more than a few video frames.
    ...NO_PROBE,
    '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', `${o.width}x${o.height}`, '-framerate', String(o.fps), '-i', 'pipe:0',
  ];
  if (o.audio) {
    args.push(...NO_PROBE, '-f', 'f32le', '-ar', String(o.audio.sampleRate), '-ac', String(o.audio.channels), '-i', 'pipe:3');
  }
  args.push('-map', '0:v:0');
  if (o.audio) args.push('-map', '1:a:0');
  args.push(
    // zerolatency: no lookahead or B-frames, so each frame leaves x264 as soon as it is in.
    '-c:v', 'libx264', '-preset', o.x264Preset, '-tune', 'zerolatency', '-pix_fmt', 'yuv420p',
    '-crf', String(o.crf),
    // A one-second VBV buffer keeps the capped rate steady enough for live viewing.
    '-maxrate', `${o.maxBitrateKbps}k`, '-bufsize', `${o.maxBitrateKbps}k`,
    '-g', String(o.gopFrames),
  );
  if (o.audio) args.push('-c:a', 'aac', '-b:a', '128k');
  args.push(
    '-f', 'mp4',
    // empty_moov: the init segment leaves at once; default_base_moof: what MSE expects;
    // skip_trailer: no mfra (the framer drops one anyway).
    '-movflags', 'empty_moov+default_base_moof+skip_trailer',
    // Cut fragments by time, not keyframe: with frag_keyframe alone one GOP is one fragment.
    '-frag_duration', String(Math.round(o.fragmentDurationMs * 1000)),
    // Hand each fragment to the pipe as soon as it is cut instead of filling the avio buffer.
    '-flush_packets', '1',
    'pipe:1',
  );
  return args;
}

export class FragmentedMp4Encoder extends PipelineEncoder implements SegmentEncoder {
  readonly mode = 'av_fmp4' as const;
  protected readonly pipeline: FfmpegPipeline;
  private readonly framer = new Fmp4Framer();
  private ptsBaseMs = 0;
  private fragmentDelivered = false;

  constructor(options: FragmentedMp4EncoderOptions) {
    super();
    const resolved = resolveOptions(options);
    this.pipeline = new FfmpegPipeline({
      ffmpegPath: resolved.ffmpegPath,
      args: fragmentedMp4Args(options),
      video: videoInput(resolved),
      audio: resolved.audio ? audioInput(resolved.audio) : null,
      framer: this.framer,
      beforeDeliver: (chunk) => this.beforeDeliver(chunk),
      signal: options.signal,
    });
  }

  get mime(): string | undefined {
    return this.framer.mime;
  }

  /**
   * ffmpeg's offset options do not move `tfdt` in fragmented output, so the shift is
   * applied to each fragment as it is delivered: calls are accepted until then.
   */
  setPtsBase(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`pts base must be a non-negative number of ms, got ${ms}`);
    if (this.fragmentDelivered) throw new Error('setPtsBase() after the first fragment was delivered');
    this.ptsBaseMs = ms;
  }

  private beforeDeliver(chunk: MediaChunk): void {
    if (chunk.kind !== 'fragment') return;
    this.fragmentDelivered = true;
    if (this.ptsBaseMs !== 0) shiftFragment(chunk.data, this.framer.tracks, this.ptsBaseMs);
  }
}
