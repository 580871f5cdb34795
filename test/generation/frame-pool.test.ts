import { describe, expect, it } from 'vitest';
import { FrameBufferPool } from '../../src/generation/frame-pool.js';
import { readFrameIndex, SyntheticGenerator } from '../../src/generation/index.js';

describe('FrameBufferPool', () => {
  it('hands a released buffer out again and allocates while none is free', () => {
    const pool = new FrameBufferPool();
    const a = pool.take(12);
    const b = pool.take(12);
    expect(a.buffer).not.toBe(b.buffer);
    a.release();
    expect(pool.take(12).buffer).toBe(a.buffer);
  });

  it('ignores a second release of the same frame, so one buffer never serves two frames', () => {
    const pool = new FrameBufferPool();
    const a = pool.take(12);
    a.release();
    a.release();
    expect(pool.freeCount).toBe(1);
    const first = pool.take(12);
    const second = pool.take(12);
    expect(first.buffer).not.toBe(second.buffer);
  });

  it('keeps buffers of each size apart and at most maxFreePerSize of them', () => {
    const pool = new FrameBufferPool(2);
    const frames = [pool.take(6), pool.take(6), pool.take(6), pool.take(9)];
    for (const f of frames) f.release();
    expect(pool.freeCount).toBe(3);
    expect(pool.take(9).buffer.length).toBe(9);
  });
});

describe('the synthetic generator with a consumer that releases frames', () => {
  it('reuses buffers and still yields the right pixels', async () => {
    const generator = new SyntheticGenerator({ pace: 'fast', audio: null });
    const request = { prompt: 'reuse', seed: 1, numInferenceSteps: 0, guidanceScale: 1, width: 192, height: 112, fps: 24, numFrames: 12 };
    const seen = new Set<Buffer>();
    const indices: (number | null)[] = [];
    for await (const event of generator.generate(request, new AbortController().signal)) {
      if (event.type !== 'video') continue;
      seen.add(event.frame);
      indices.push(readFrameIndex(event.frame, 192, 112));
      event.release?.();
    }
    expect(indices).toEqual(Array.from({ length: 12 }, (_, i) => i));
    expect(seen.size).toBe(1);
  });
});
