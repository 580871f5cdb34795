/** The strip against the real codecs it must survive: libx264 as livegen encodes, and JPEG. */
import { describe, expect, it } from 'vitest';
import { FRAME_INDEX_LIMIT, SyntheticGenerator, readFrameIndex } from '../../src/generation/index.js';
import { collect, ffmpeg, framesOf, request } from './helpers.js';

async function syntheticFrames(width: number, height: number, numFrames: number, firstIndex = 0): Promise<Buffer[]> {
  const generator = new SyntheticGenerator({ audio: null });
  const continuationState =
    firstIndex === 0
      ? undefined
      : (() => {
          // Start mid-clip via a hand-made state, to cover the 24-bit wrap.
          return {
            kind: generator.continuationKind,
            payload: {
              nextFrameIndex: firstIndex,
              fps: 24,
              sampleRate: null,
              audioPhase: 0,
              audioOriginFrame: 0,
              audioOriginSample: 0,
              motionSeed: 7,
              prompt: 'x',
            },
          };
        })();
  const events = await collect(
    generator.generate(
      request({ width, height, numFrames, numInferenceSteps: 0, prompt: `strip ${width}x${height}`, continuationState }),
      new AbortController().signal,
    ),
  );
  return framesOf(events);
}

function rawInput(width: number, height: number): string[] {
  return ['-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', `${width}x${height}`, '-r', '24', '-i', 'pipe:0'];
}

function split(raw: Buffer, width: number, height: number): Buffer[] {
  const size = width * height * 3;
  expect(raw.length % size).toBe(0);
  return Array.from({ length: raw.length / size }, (_, i) => raw.subarray(i * size, (i + 1) * size));
}

describe('frame-index strip through real codecs', () => {
  const cases: Array<{ width: number; height: number; frames: number; first?: number }> = [
    { width: 160, height: 96, frames: 48 },
    { width: 854, height: 480, frames: 12, first: FRAME_INDEX_LIMIT - 6 },
    { width: 1920, height: 1080, frames: 6, first: 1_000_000 },
  ];

  for (const { width, height, frames, first = 0 } of cases) {
    it(`reads every index after an H.264 round trip at ${width}x${height}`, async () => {
      const input = await syntheticFrames(width, height, frames, first);
      const h264 = await ffmpeg(
        [
          ...rawInput(width, height),
          ...['-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-crf', '23'],
          ...['-pix_fmt', 'yuv420p', '-f', 'h264', 'pipe:1'],
        ],
        Buffer.concat(input),
      );
      const decoded = split(
        await ffmpeg(['-f', 'h264', '-i', 'pipe:0', '-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1'], h264),
        width,
        height,
      );
      expect(decoded).toHaveLength(frames);
      const indices = decoded.map((frame) => readFrameIndex(frame, width, height));
      const expected = Array.from({ length: frames }, (_, i) => (first + i) % FRAME_INDEX_LIMIT);
      expect(indices).toEqual(expected);
    });
  }

  it('reads every index after a JPEG round trip', async () => {
    const [width, height, frames] = [320, 180, 8];
    const input = await syntheticFrames(width, height, frames, 4242);
    // -q:v 12 is well below the default quality, to show the margin.
    const mjpeg = await ffmpeg(
      [...rawInput(width, height), '-c:v', 'mjpeg', '-q:v', '12', '-pix_fmt', 'yuvj420p', '-f', 'mjpeg', 'pipe:1'],
      Buffer.concat(input),
    );
    expect(mjpeg.subarray(0, 2)).toEqual(Buffer.from([0xff, 0xd8]));
    const decoded = split(
      await ffmpeg(['-f', 'mjpeg', '-i', 'pipe:0', '-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1'], mjpeg),
      width,
      height,
    );
    expect(decoded.map((frame) => readFrameIndex(frame, width, height))).toEqual(
      Array.from({ length: frames }, (_, i) => 4242 + i),
    );
  });
});
