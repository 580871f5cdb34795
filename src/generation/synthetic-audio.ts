/**
 * The synthetic generator's sound: a sine tone whose phase runs on across frames and
 * segments (also when the prompt, and so the pitch, changes), on a sample clock tied to
 * the global frame index so audio never drifts from video.
 */
import type { SyntheticContinuation } from './synthetic-continuation.js';

export const TONE_AMPLITUDE = 0.2;

/**
 * Samples before global frame k are `originSample + floor((k - originFrame) * sampleRate / fps)`.
 * With origin (0, 0) that is the plain `floor(k * sampleRate / fps)`: frame k gets the
 * difference of two such floors, so the counts of any run of frames add up exactly.
 */
export interface AudioClock {
  sampleRate: number;
  fps: number;
  originFrame: number;
  originSample: number;
}

export function samplesBeforeFrame(clock: AudioClock, frameIndex: number): number {
  return clock.originSample + Math.floor(((frameIndex - clock.originFrame) * clock.sampleRate) / clock.fps);
}

/**
 * The clock for a segment starting at `firstFrame`. A continued clip at the same rates
 * keeps the old anchor; a changed frame rate re-anchors at the join, where the old
 * clock left off, so no sample is lost or repeated.
 */
export function audioClockFor(
  previous: SyntheticContinuation | undefined,
  firstFrame: number,
  fps: number,
  sampleRate: number,
): AudioClock {
  if (!previous) return { sampleRate, fps, originFrame: 0, originSample: 0 };
  if (previous.sampleRate === sampleRate) {
    const old: AudioClock = {
      sampleRate,
      fps: previous.fps,
      originFrame: previous.audioOriginFrame,
      originSample: previous.audioOriginSample,
    };
    if (previous.fps === fps) return old;
    return { sampleRate, fps, originFrame: firstFrame, originSample: samplesBeforeFrame(old, firstFrame) };
  }
  // Written by a silent generator or one at another rate: start from elapsed video time.
  return { sampleRate, fps, originFrame: firstFrame, originSample: Math.floor((firstFrame * sampleRate) / fps) };
}

function fraction(x: number): number {
  return x - Math.floor(x);
}

/** A sine at one frequency, starting at a given phase, rendered in consecutive chunks. */
export class SineTone {
  private rendered = 0;

  constructor(
    private readonly frequencyHz: number,
    private readonly sampleRate: number,
    private readonly channels: number,
    private readonly startPhase: number,
  ) {}

  /** Phase (cycles, [0, 1)) of the next sample; computed from the start, so no error builds up. */
  get phase(): number {
    return fraction(this.startPhase + (this.frequencyHz * this.rendered) / this.sampleRate);
  }

  /** The next `count` sample frames as interleaved f32le, every channel alike. */
  render(count: number): Buffer {
    const out = Buffer.allocUnsafe(count * this.channels * 4);
    let offset = 0;
    for (let i = 0; i < count; i++) {
      const n = this.rendered + i;
      const phase = fraction(this.startPhase + (this.frequencyHz * n) / this.sampleRate);
      const value = TONE_AMPLITUDE * Math.sin(2 * Math.PI * phase);
      for (let c = 0; c < this.channels; c++, offset += 4) out.writeFloatLE(value, offset);
    }
    this.rendered += count;
    return out;
  }
}
