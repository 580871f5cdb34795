import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { iterateBoxes } from '../../src/media/boxes.js';
import { Fmp4Framer } from '../../src/media/fmp4-framer.js';
import type { MediaChunk } from '../../src/media/types.js';
import { run, tempDir } from './helpers.js';

const types = (data: Buffer): string[] => [...iterateBoxes(data)].map((b) => b.type);

describe('Fmp4Framer on ffmpeg output', () => {
  let file: Buffer;
  let tmp: Awaited<ReturnType<typeof tempDir>>;

  beforeAll(async () => {
    tmp = await tempDir();
    const path = `${tmp.dir}/clip.mp4`;
    // Without skip_trailer, so the stream ends in an mfra the framer must drop.
    await run('ffmpeg', [
      '-v', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=320x180:rate=24', '-f', 'lavfi', '-i', 'sine=sample_rate=48000',
      '-t', '1', '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', '-c:a', 'aac',
      '-f', 'mp4', '-movflags', 'empty_moov+default_base_moof', '-frag_duration', '200000', path,
    ]);
    file = await readFile(path);
  });
  afterAll(async () => {
    await tmp.cleanup();
  });

  function frame(cuts: number[]): MediaChunk[] {
    const framer = new Fmp4Framer();
    const chunks: MediaChunk[] = [];
    let start = 0;
    for (const cut of [...cuts, file.length]) {
      chunks.push(...framer.push(file.subarray(start, cut)));
      start = cut;
    }
    chunks.push(...framer.end());
    return chunks;
  }

  it('sends ftyp+moov alone first, then whole moof+mdat pairs, and drops mfra', () => {
    expect(types(file).at(-1)).toBe('mfra');
    const chunks = frame([]);
    expect(chunks[0]?.kind).toBe('init');
    expect(types(chunks[0]?.data ?? Buffer.alloc(0))).toEqual(['ftyp', 'moov']);
    expect(chunks[0]?.mime).toMatch(/^video\/mp4; codecs="avc1\.42c0[0-9a-f]{2}, mp4a\.40\.2"$/);
    const fragments = chunks.slice(1);
    expect(fragments.length).toBeGreaterThanOrEqual(4);
    for (const chunk of fragments) {
      expect(chunk.kind).toBe('fragment');
      expect(types(chunk.data)).toEqual(['moof', 'mdat']);
    }
    const withoutMfra = [...iterateBoxes(file)].filter((b) => b.type !== 'mfra').map((b) => b.data);
    expect(Buffer.concat(chunks.map((c) => c.data)).equals(Buffer.concat(withoutMfra))).toBe(true);
  });

  it('produces the same chunks whatever the read sizes', () => {
    const whole = frame([]).map((c) => c.data.toString('base64'));
    for (const step of [1, 7, 4096]) {
      const cuts = Array.from({ length: Math.ceil(file.length / step) - 1 }, (_, i) => (i + 1) * step);
      expect(frame(cuts).map((c) => c.data.toString('base64'))).toEqual(whole);
    }
  });

  it('rejects output that ends inside a fragment', () => {
    const boxes = [...iterateBoxes(file)];
    const lastMoof = boxes.map((b) => b.type).lastIndexOf('moof');
    const framer = new Fmp4Framer();
    framer.push(Buffer.concat(boxes.slice(0, lastMoof + 1).map((b) => b.data)));
    expect(() => framer.end()).toThrow(/ended inside a fragment/);
  });

  it('rejects a fragment before the init segment', () => {
    const moof = [...iterateBoxes(file)].find((b) => b.type === 'moof');
    expect(() => new Fmp4Framer().push(Buffer.from(moof?.data ?? Buffer.alloc(0)))).toThrow(/before the init segment/);
  });
});
