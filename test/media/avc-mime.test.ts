import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mimeFromInitSegment, mp4aCodecString } from '../../src/media/avc-mime.js';
import { iterateBoxes } from '../../src/media/boxes.js';
import { run, tempDir } from './helpers.js';

/** Encode a short clip with the ffmpeg CLI (independent of the encoder under test). */
async function encodeClip(dir: string, name: string, videoArgs: string[]): Promise<string> {
  const path = `${dir}/${name}`;
  await run('ffmpeg', [
    '-v', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=30', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=44100',
    '-t', '0.5', ...videoArgs, '-c:a', 'aac', '-f', 'mp4', '-movflags', 'empty_moov+default_base_moof', path,
  ]);
  return path;
}

function initSegment(file: Buffer): Buffer {
  const boxes = [...iterateBoxes(file)];
  const moov = boxes.findIndex((b) => b.type === 'moov');
  return Buffer.concat(boxes.slice(0, moov + 1).map((b) => b.data));
}

/** profile_idc, constraint flags and level_idc straight from the SPS NAL unit, as hex. */
async function spsProfileLevel(path: string): Promise<string> {
  const { stdout } = await run('ffmpeg', ['-v', 'error', '-i', path, '-map', '0:v', '-c', 'copy', '-bsf:v', 'h264_mp4toannexb', '-f', 'h264', 'pipe:1'], {
    encoding: 'buffer',
    maxBuffer: 64 << 20,
  });
  const annexB = stdout as unknown as Buffer;
  for (let i = 0; i + 7 < annexB.length; i++) {
    if (annexB[i] === 0 && annexB[i + 1] === 0 && annexB[i + 2] === 1 && ((annexB[i + 3] ?? 0) & 0x1f) === 7) {
      return annexB.subarray(i + 4, i + 7).toString('hex');
    }
  }
  throw new Error('no SPS found');
}

describe('MSE codec string from the init segment', () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  beforeAll(async () => {
    tmp = await tempDir();
  });
  afterAll(async () => {
    await tmp.cleanup();
  });

  it('reads Constrained Baseline and the level x264 chose from avcC (ultrafast)', async () => {
    const path = await encodeClip(tmp.dir, 'baseline.mp4', ['-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-pix_fmt', 'yuv420p']);
    const mime = mimeFromInitSegment(initSegment(await readFile(path)));
    const sps = await spsProfileLevel(path);
    expect(sps.startsWith('42')).toBe(true); // profile_idc 66: Baseline (ultrafast has no CABAC)
    expect(mime).toBe(`video/mp4; codecs="avc1.${sps}, mp4a.40.2"`);
  });

  it('reads High profile and level 3.1 when the encoder is told so', async () => {
    const path = await encodeClip(tmp.dir, 'high.mp4', ['-c:v', 'libx264', '-preset', 'veryfast', '-profile:v', 'high', '-level', '3.1', '-pix_fmt', 'yuv420p']);
    expect(mimeFromInitSegment(initSegment(await readFile(path)))).toBe('video/mp4; codecs="avc1.64001f, mp4a.40.2"');
  });

  it('names a silent clip by its video codec alone', async () => {
    const path = `${tmp.dir}/silent.mp4`;
    await run('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=320x180:rate=24', '-t', '0.3', '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p',
      '-f', 'mp4', '-movflags', 'empty_moov+default_base_moof', path]);
    expect(mimeFromInitSegment(initSegment(await readFile(path)))).toMatch(/^video\/mp4; codecs="avc1\.42[0-9a-f]{4}"$/);
  });
});

describe('mp4a codec string from esds', () => {
  function esds(audioSpecificConfig: number[]): Parameters<typeof mp4aCodecString>[0] {
    const dsi = [0x05, audioSpecificConfig.length, ...audioSpecificConfig];
    const dcd = [0x04, 13 + dsi.length, 0x40, 0x15, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, ...dsi];
    const es = [0x03, 3 + dcd.length, 0, 1, 0, ...dcd];
    const body = Buffer.from([0, 0, 0, 0, ...es]);
    const header = Buffer.alloc(8);
    header.writeUInt32BE(8 + body.length);
    header.write('esds', 4, 'latin1');
    return { type: 'esds', headerSize: 8, data: Buffer.concat([header, body]) };
  }

  it('reads AAC-LC as mp4a.40.2', () => {
    expect(mp4aCodecString(esds([0x12, 0x10]))).toBe('mp4a.40.2');
  });

  it('reads HE-AAC as mp4a.40.5', () => {
    expect(mp4aCodecString(esds([0x2b, 0x92, 0x08, 0x00]))).toBe('mp4a.40.5');
  });

  it('reads an escaped audio object type (xHE-AAC, 42)', () => {
    // 5 bits of 31, then 6 bits of 42 - 32 = 10.
    expect(mp4aCodecString(esds([0b11111001, 0b01000000]))).toBe('mp4a.40.42');
  });
});
