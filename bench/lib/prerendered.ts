/** Pre-rendered synthetic frames and audio, and a Generator that replays them as fast as it can. */
import { performance } from 'node:perf_hooks';
import { SyntheticGenerator } from '../../src/generation/index.js';
import { waitUntil, yieldToEventLoop } from '../../src/generation/pacing.js';
import type { AudioFormat, GenerationEvent, Generator, SegmentRequest } from '../../src/generation/types.js';

export const BENCH_AUDIO: AudioFormat = { sampleRate: 48_000, channels: 1 };

export interface Prerendered {
  width: number;
  height: number;
  fps: number;
  frames: Buffer[];
  /** `audio[i]`: the samples the synthetic generator yields after frame i. */
  audio: Buffer[];
}

export async function prerender(width: number, height: number, fps: number, count: number): Promise<Prerendered> {
  const generator = new SyntheticGenerator({ pace: 'fast', audio: BENCH_AUDIO });
  const frames: Buffer[] = [];
  const audio: Buffer[] = [];
  const request: SegmentRequest = { prompt: 'bench encode', seed: 7, numInferenceSteps: 0, guidanceScale: 1, width, height, fps, numFrames: count };
  for await (const event of generator.generate(request, new AbortController().signal)) {
    if (event.type === 'video') {
      frames.push(event.frame);
      audio.push(Buffer.alloc(0));
    } else if (event.type === 'audio') {
      audio[audio.length - 1] = event.samples;
    }
  }
  return { width, height, fps, frames, audio };
}

/**
 * Replays pre-rendered frames (cycling). `fast`: no pacing, only the media path limits it.
 * `realtime`: frame k no earlier than k/fps after the first, like the synthetic generator,
 * but without its per-frame rendering and allocation, so a run measures the server alone.
 */
export class PrerenderedGenerator implements Generator {
  readonly modelId = 'bench/prerendered';
  readonly audio = BENCH_AUDIO;
  /** Per segment: when the first and the last frame were yielded. */
  readonly spans: { first: number; last: number }[] = [];

  constructor(
    private readonly source: Prerendered,
    private readonly pace: 'fast' | 'realtime' = 'fast',
  ) {}

  async *generate(request: SegmentRequest, signal: AbortSignal): AsyncGenerator<GenerationEvent> {
    const { frames, audio } = this.source;
    const span = { first: 0, last: 0 };
    this.spans.push(span);
    for (let i = 0; i < request.numFrames; i++) {
      signal.throwIfAborted();
      if (this.pace === 'realtime') {
        if (i > 0) await waitUntil(span.first + (i * 1000) / request.fps, signal);
      } else if (i > 0 && i % 4 === 0) {
        await yieldToEventLoop();
      }
      if (i === 0) span.first = performance.now();
      yield { type: 'video', frame: frames[i % frames.length] as Buffer };
      const samples = audio[i % audio.length] as Buffer;
      if (samples.length > 0) yield { type: 'audio', samples };
    }
    span.last = performance.now();
    yield { type: 'done' };
  }
}
