import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSegmentEncoder, EncoderError, isAbortError, JpegFrameEncoder, type MediaChunk } from '../../src/media/index.js';
import { gradientFrame, probe, processExists, tempDir } from './helpers.js';

const WIDTH = 160;
const HEIGHT = 96;

async function collect(encoder: JpegFrameEncoder | ReturnType<typeof createSegmentEncoder>): Promise<MediaChunk[]> {
  const chunks: MediaChunk[] = [];
  for await (const chunk of encoder.chunks()) chunks.push(chunk);
  return chunks;
}

describe('JpegFrameEncoder', () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  beforeAll(async () => {
    tmp = await tempDir();
  });
  afterAll(async () => {
    await tmp.cleanup();
  });

  it('turns N frames into N whole, decodable JPEG fragments', async () => {
    const encoder = createSegmentEncoder('legacy_jpeg', { width: WIDTH, height: HEIGHT, fps: 12, audio: { sampleRate: 48000, channels: 1 } });
    expect(encoder.mime).toBe('image/jpeg');
    const output = collect(encoder);
    for (let i = 0; i < 6; i++) {
      await encoder.writeVideo(gradientFrame(WIDTH, HEIGHT, i));
      await encoder.writeAudio(Buffer.alloc(4000)); // no audio in this mode: accepted and dropped
    }
    const summary = await encoder.end();
    const chunks = await output;

    expect(chunks).toHaveLength(6);
    expect(summary).toEqual({ frames: 6, durationMs: 500, chunks: 6, bytes: chunks.reduce((sum, c) => sum + c.data.length, 0) });
    for (const chunk of chunks) {
      expect(chunk.kind).toBe('fragment');
      expect(chunk.data.subarray(0, 2).toString('hex')).toBe('ffd8');
      expect(chunk.data.subarray(-2).toString('hex')).toBe('ffd9');
    }
    // One image decodes on its own; all of them back to back decode as exactly six.
    const single = await probe(await tmp.file('frame.jpg', chunks[3]?.data ?? Buffer.alloc(0)));
    expect(single.streams[0]).toMatchObject({ codec_name: 'mjpeg', width: WIDTH, height: HEIGHT, nb_read_frames: '1' });
    const all = await probe(await tmp.file('frames.mjpeg', Buffer.concat(chunks.map((c) => c.data))), ['-f', 'jpeg_pipe']);
    expect(all.streams[0]).toMatchObject({ codec_name: 'mjpeg', nb_read_frames: '6' });
  });

  it('delivers each image before the next frame is written', async () => {
    const encoder = new JpegFrameEncoder({ width: WIDTH, height: HEIGHT, fps: 12, audio: null });
    const iterator = encoder.chunks();
    for (let i = 0; i < 3; i++) {
      await encoder.writeVideo(gradientFrame(WIDTH, HEIGHT, i));
      const next = await iterator.next();
      expect(next.done).toBe(false);
    }
    await encoder.end();
    expect((await iterator.next()).done).toBe(true);
  });

  it('abort() leaves no ffmpeg behind and rejects the iterator', async () => {
    const encoder = new JpegFrameEncoder({ width: WIDTH, height: HEIGHT, fps: 12, audio: null });
    const failure = collect(encoder).then(() => undefined, (error: unknown) => error);
    await encoder.writeVideo(gradientFrame(WIDTH, HEIGHT, 0));
    await encoder.abort();
    expect(processExists(encoder.pid as number)).toBe(false);
    expect(isAbortError(await failure)).toBe(true);
  });

  it('a bogus ffmpeg path surfaces as EncoderError', async () => {
    const encoder = new JpegFrameEncoder({ width: WIDTH, height: HEIGHT, fps: 12, audio: null, ffmpegPath: '/nonexistent/ffmpeg' });
    const failure = collect(encoder).then(() => undefined, (error: unknown) => error);
    await expect(encoder.end()).rejects.toBeInstanceOf(EncoderError);
    expect(await failure).toMatchObject({ code: 'spawn_failed' });
  });
});
