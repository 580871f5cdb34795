import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  FRAME_INDEX_LIMIT,
  frameIndexStripLayout,
  readFrameIndex,
  writeFrameIndex,
} from '../../src/generation/index.js';

const SIZES: Array<[number, number]> = [
  [160, 96],
  [320, 180],
  [640, 360],
  [854, 480],
  [1024, 576],
  [1280, 720],
  [1920, 1080],
  [576, 1024],
  [64, 32],
];
const INDICES = [0, 1, 2, 0x5a5a5a, 123_456, FRAME_INDEX_LIMIT - 2, FRAME_INDEX_LIMIT - 1];

/** A frame that is not black or white anywhere near the strip. */
function greyFrame(width: number, height: number, value = 128): Buffer {
  return Buffer.alloc(width * height * 3, value);
}

describe('frame-index strip layout', () => {
  it('uses blocks of at least 8 px, in multiples of 8, growing with the frame', () => {
    expect(frameIndexStripLayout(160, 96)).toMatchObject({ blockSize: 8, columns: 16, rows: 2 });
    expect(frameIndexStripLayout(320, 180)).toMatchObject({ blockSize: 8, columns: 32, rows: 1 });
    expect(frameIndexStripLayout(1024, 576)).toMatchObject({ blockSize: 32, columns: 32, rows: 1 });
    expect(frameIndexStripLayout(1920, 1080)).toMatchObject({ blockSize: 56, columns: 32, rows: 1 });
    expect(frameIndexStripLayout(64, 32)).toMatchObject({ blockSize: 8, columns: 8, rows: 4 });
    for (const [w, h] of SIZES) {
      const layout = frameIndexStripLayout(w, h);
      expect(layout.blockSize % 8).toBe(0);
      expect(layout.stripWidth).toBeLessThanOrEqual(w);
      expect(layout.stripHeight).toBeLessThanOrEqual(h);
      expect(layout.columns * layout.rows).toBe(32);
    }
  });

  it('refuses frames too small to hold the strip', () => {
    expect(() => frameIndexStripLayout(48, 96)).toThrow(/too narrow/);
    expect(() => frameIndexStripLayout(64, 24)).toThrow(/too short/);
  });
});

describe('writeFrameIndex / readFrameIndex', () => {
  it('round-trips indices including 0 and 2^24-1 at every size', () => {
    for (const [w, h] of SIZES) {
      const frame = greyFrame(w, h);
      for (const index of INDICES) {
        writeFrameIndex(frame, w, h, index);
        expect(readFrameIndex(frame, w, h), `${w}x${h} #${index}`).toBe(index);
      }
    }
  });

  it('draws only inside the strip area, in pure black and white', () => {
    const [w, h] = [320, 180];
    const frame = greyFrame(w, h);
    writeFrameIndex(frame, w, h, 0xabcdef);
    const { stripWidth, stripHeight } = frameIndexStripLayout(w, h);
    const wrong: string[] = [];
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const p = (y * w + x) * 3;
        const [r, g, b] = [frame[p]!, frame[p + 1]!, frame[p + 2]!];
        const inStrip = x < stripWidth && y < stripHeight;
        const ok = r === g && g === b && (inStrip ? r === 0 || r === 255 : r === 128);
        if (!ok) wrong.push(`(${x},${y})=${r},${g},${b}`);
      }
    }
    expect(wrong.slice(0, 5)).toEqual([]);
  });

  it('reads null from frames without a strip', () => {
    expect(readFrameIndex(greyFrame(160, 96), 160, 96)).toBeNull();
    expect(readFrameIndex(greyFrame(160, 96, 0), 160, 96)).toBeNull();
    expect(readFrameIndex(greyFrame(160, 96, 255), 160, 96)).toBeNull();
  });

  it('reads null when a block is flipped (marker or check bits catch it)', () => {
    const [w, h] = [320, 180];
    const { blockSize } = frameIndexStripLayout(w, h);
    for (const block of [0, 1, 10, 30]) {
      const frame = greyFrame(w, h);
      writeFrameIndex(frame, w, h, 777);
      const p = (Math.floor(blockSize / 2) * w + block * blockSize + blockSize / 2) * 3;
      const flipped = frame[p] === 255 ? 0 : 255;
      for (let y = 0; y < blockSize; y++) {
        const start = (y * w + block * blockSize) * 3;
        frame.fill(flipped, start, start + blockSize * 3);
      }
      expect(readFrameIndex(frame, w, h), `block ${block}`).toBeNull();
    }
  });

  it('survives strong pixel noise', () => {
    const [w, h] = [160, 96];
    fc.assert(
      fc.property(fc.integer({ min: 0, max: FRAME_INDEX_LIMIT - 1 }), fc.integer(), (index, noiseSeed) => {
        const frame = greyFrame(w, h);
        writeFrameIndex(frame, w, h, index);
        let state = noiseSeed >>> 0 || 1;
        for (let i = 0; i < frame.length; i++) {
          state ^= state << 13;
          state ^= state >>> 17;
          state ^= state << 5;
          const noise = ((state >>> 0) % 81) - 40; // ±40 levels
          frame[i] = Math.max(0, Math.min(255, frame[i]! + noise));
        }
        return readFrameIndex(frame, w, h) === index;
      }),
      { numRuns: 50 },
    );
  });

  it('rejects indices outside 24 bits and frames of the wrong length', () => {
    const frame = greyFrame(160, 96);
    expect(() => writeFrameIndex(frame, 160, 96, FRAME_INDEX_LIMIT)).toThrow(RangeError);
    expect(() => writeFrameIndex(frame, 160, 96, -1)).toThrow(RangeError);
    expect(() => writeFrameIndex(frame, 160, 96, 1.5)).toThrow(RangeError);
    expect(() => readFrameIndex(frame.subarray(0, 100), 160, 96)).toThrow(/bytes/);
  });
});
