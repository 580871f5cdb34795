import { describe, expect, it } from 'vitest';
import {
  type AudioFormat,
  SyntheticGenerator,
  TONE_AMPLITUDE,
  promptToneHz,
} from '../../src/generation/index.js';
import { collect, doneOf, request, samplesOf } from './helpers.js';

const live = () => new AbortController().signal;

async function segment(audio: AudioFormat, overrides: Parameters<typeof request>[0]) {
  const events = await collect(new SyntheticGenerator({ audio }).generate(request({ numInferenceSteps: 0, ...overrides }), live()));
  return { events, samples: samplesOf(events), state: doneOf(events).continuationState! };
}

function audioCounts(events: Awaited<ReturnType<typeof segment>>['events'], channels: number): number[] {
  return events.flatMap((e) => (e.type === 'audio' ? [e.samples.length / 4 / channels] : []));
}

const mono48k = { sampleRate: 48_000, channels: 1 };

describe('synthetic audio', () => {
  it('is a sine at the prompt tone, amplitude 0.2, starting at phase 0', async () => {
    const prompt = 'ocean waves';
    const f = promptToneHz(prompt);
    expect(f).toBeGreaterThanOrEqual(220);
    expect(f).toBeLessThanOrEqual(880);
    const { samples } = await segment(mono48k, { prompt, numFrames: 3 });
    expect(samples.length).toBe(3 * 2000);
    for (let n = 0; n < samples.length; n += 97) {
      expect(samples[n]).toBeCloseTo(TONE_AMPLITUDE * Math.sin((2 * Math.PI * f * n) / 48_000), 6);
    }
    expect(Math.max(...samples)).toBeCloseTo(TONE_AMPLITUDE, 2);
  });

  it('derives different tones from different prompts (within 220-880 Hz)', () => {
    const tones = new Set(['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'].map(promptToneHz));
    expect(tones.size).toBeGreaterThan(1);
    for (const t of tones) expect(t >= 220 && t <= 880).toBe(true);
  });

  it('gives frame k exactly floor((k+1)*sr/fps) - floor(k*sr/fps) samples, on the global index', async () => {
    const audio = { sampleRate: 44_100, channels: 2 };
    const fps = 24; // 1837.5 samples per frame
    const one = await segment(audio, { fps, numFrames: 5 });
    const two = await segment(audio, { fps, numFrames: 6, continuationState: one.state });
    const expected = (k: number) => Math.floor(((k + 1) * 44_100) / fps) - Math.floor((k * 44_100) / fps);
    expect(audioCounts(one.events, 2)).toEqual([0, 1, 2, 3, 4].map(expected));
    expect(audioCounts(two.events, 2)).toEqual([5, 6, 7, 8, 9, 10].map(expected));
    const total = one.samples.length / 2 + two.samples.length / 2;
    expect(total).toBe(Math.floor((11 * 44_100) / fps));
  });

  it('sums exactly over many segments at an awkward rate', async () => {
    const audio = { sampleRate: 48_000, channels: 1 };
    const fps = 7; // 6857.14... samples per frame
    let state;
    let total = 0;
    const lengths = [1, 2, 3, 5, 8];
    for (const numFrames of lengths) {
      const seg = await segment(audio, { fps, numFrames, width: 64, height: 32, continuationState: state });
      total += seg.samples.length;
      state = seg.state;
    }
    const frames = lengths.reduce((a, b) => a + b, 0);
    expect(total).toBe(Math.floor((frames * 48_000) / fps));
  });

  it('continues the phase at the join, even when the prompt (and tone) changes', async () => {
    const f1 = promptToneHz('first prompt');
    const f2 = promptToneHz('second prompt!');
    expect(f1).not.toBe(f2);
    const one = await segment(mono48k, { prompt: 'first prompt', numFrames: 5 });
    const n1 = one.samples.length;
    const two = await segment(mono48k, { prompt: 'second prompt!', numFrames: 3, continuationState: one.state });
    // The sample after seg 1's last one, had seg 1 gone on.
    const analyticNext = TONE_AMPLITUDE * Math.sin((2 * Math.PI * f1 * n1) / 48_000);
    expect(two.samples[0]).toBeCloseTo(analyticNext, 6);
    // And from there on seg 2 runs at its own tone from that phase.
    const phase = (f1 * n1) / 48_000;
    for (let n = 0; n < two.samples.length; n += 131) {
      expect(two.samples[n]).toBeCloseTo(TONE_AMPLITUDE * Math.sin(2 * Math.PI * (phase + (f2 * n) / 48_000)), 5);
    }
    expect(one.state.payload.audioPhase).toBeCloseTo(phase - Math.floor(phase), 9);
  });

  it('splits into continued segments without a click: same samples as one long segment', async () => {
    const whole = await segment(mono48k, { numFrames: 9 });
    const one = await segment(mono48k, { numFrames: 4 });
    const two = await segment(mono48k, { numFrames: 5, continuationState: one.state });
    const joined = new Float32Array([...one.samples, ...two.samples]);
    expect(joined.length).toBe(whole.samples.length);
    let worst = 0;
    for (let i = 0; i < joined.length; i++) worst = Math.max(worst, Math.abs(joined[i]! - whole.samples[i]!));
    expect(worst).toBeLessThan(1e-6);
  });

  it('writes every channel alike, interleaved', async () => {
    const stereo = await segment({ sampleRate: 48_000, channels: 2 }, { numFrames: 2 });
    for (let i = 0; i < stereo.samples.length; i += 2) expect(stereo.samples[i]).toBe(stereo.samples[i + 1]);
  });

  it('keeps audio aligned to video when the frame rate changes between segments', async () => {
    const one = await segment(mono48k, { fps: 24, numFrames: 5 }); // 10000 samples = 5/24 s
    const two = await segment(mono48k, { fps: 30, numFrames: 7, continuationState: one.state }); // 7/30 s
    expect(one.samples.length + two.samples.length).toBe(10_000 + Math.floor((7 * 48_000) / 30));
  });

  it('carries the phase through a silent segment', async () => {
    const one = await segment(mono48k, { numFrames: 3 });
    const silent = await collect(
      new SyntheticGenerator({ audio: null }).generate(request({ numFrames: 2, continuationState: one.state }), live()),
    );
    const state = doneOf(silent).continuationState!;
    expect(state.payload).toMatchObject({ sampleRate: null, audioPhase: one.state.payload.audioPhase, nextFrameIndex: 5 });
    const three = await segment(mono48k, { numFrames: 1, continuationState: state });
    // Counts pick up from elapsed video time: frame 5 at 24 fps.
    expect(three.samples.length).toBe(Math.floor((6 * 48_000) / 24) - Math.floor((5 * 48_000) / 24));
  });
});
