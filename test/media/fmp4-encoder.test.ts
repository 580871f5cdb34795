import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Box, findPath, iterateBoxes, readBaseMediaDecodeTime, readTracks } from '../../src/media/boxes.js';
import { EncoderError, FragmentedMp4Encoder, type MediaChunk, fragmentedMp4Args, isAbortError } from '../../src/media/index.js';
import { audioForFrame, gradientFrame, probe, processExists, tempDir } from './helpers.js';

const WIDTH = 320;
const HEIGHT = 180;
const FPS = 24;
const AUDIO = { sampleRate: 48000, channels: 2 };

const types = (data: Buffer): string[] => [...iterateBoxes(data)].map((b) => b.type);

function newEncoder(overrides: Partial<ConstructorParameters<typeof FragmentedMp4Encoder>[0]> = {}): FragmentedMp4Encoder {
  return new FragmentedMp4Encoder({ width: WIDTH, height: HEIGHT, fps: FPS, audio: AUDIO, ...overrides });
}

/** Reads every chunk in the background, like the connection driver does. */
function collect(encoder: FragmentedMp4Encoder): { chunks: MediaChunk[]; done: Promise<MediaChunk[]>; firstFragment: Promise<MediaChunk> } {
  const chunks: MediaChunk[] = [];
  let onFragment: (chunk: MediaChunk) => void = () => undefined;
  const firstFragment = new Promise<MediaChunk>((resolve) => {
    onFragment = resolve;
  });
  const done = (async () => {
    for await (const chunk of encoder.chunks()) {
      chunks.push(chunk);
      if (chunk.kind === 'fragment') onFragment(chunk);
    }
    return chunks;
  })();
  done.catch(() => undefined); // tests that expect a rejection await it themselves
  return { chunks, done, firstFragment };
}

async function writeFrames(encoder: FragmentedMp4Encoder, from: number, to: number, withAudio = true): Promise<void> {
  for (let i = from; i < to; i++) {
    await encoder.writeVideo(gradientFrame(WIDTH, HEIGHT, i));
    if (withAudio) await encoder.writeAudio(audioForFrame(AUDIO.sampleRate, AUDIO.channels, FPS, i));
  }
}

describe('FragmentedMp4Encoder', () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  beforeAll(async () => {
    tmp = await tempDir();
  });
  afterAll(async () => {
    await tmp.cleanup();
  });

  it('encodes 48 frames with audio to an init chunk and whole moof+mdat fragments that probe as h264 + aac', async () => {
    const encoder = newEncoder();
    const output = collect(encoder);
    await writeFrames(encoder, 0, 48);
    const summary = await encoder.end();
    const chunks = await output.done;

    const [init, ...fragments] = chunks;
    expect(init?.kind).toBe('init');
    expect(types(init?.data ?? Buffer.alloc(0))).toEqual(['ftyp', 'moov']);
    expect(init?.mime).toMatch(/^video\/mp4; codecs="avc1\.42c0[0-9a-f]{2}, mp4a\.40\.2"$/);
    expect(encoder.mime).toBe(init?.mime);
    expect(fragments.length).toBeGreaterThanOrEqual(8); // 2 s in ~200 ms fragments
    for (const fragment of fragments) {
      expect(fragment.kind).toBe('fragment');
      const boxTypes = types(fragment.data);
      expect(boxTypes.length % 2).toBe(0);
      boxTypes.forEach((type, i) => expect(type).toBe(i % 2 === 0 ? 'moof' : 'mdat'));
    }
    expect(summary).toEqual({
      frames: 48,
      durationMs: 2000,
      chunks: fragments.length,
      bytes: chunks.reduce((sum, chunk) => sum + chunk.data.length, 0),
    });

    const file = await tmp.file('segment.mp4', Buffer.concat(chunks.map((c) => c.data)));
    const info = await probe(file);
    const video = info.streams.find((s) => s.codec_type === 'video');
    const audio = info.streams.find((s) => s.codec_type === 'audio');
    expect(video?.codec_name).toBe('h264');
    expect(video?.nb_read_frames).toBe('48');
    expect(audio?.codec_name).toBe('aac');
    expect(Number(info.format.duration)).toBeCloseTo(2, 1);
  });

  it('starts every track at the pts base: tfdt = 2 s in the track timescale, probed start 2.0', async () => {
    const encoder = newEncoder();
    encoder.setPtsBase(2000);
    const output = collect(encoder);
    await writeFrames(encoder, 0, 24);
    await encoder.end();
    const chunks = await output.done;

    const tracks = readTracks([...iterateBoxes(chunks[0]?.data ?? Buffer.alloc(0))].find((b) => b.type === 'moov') as Box);
    expect(tracks.map((t) => t.handler)).toEqual(['vide', 'soun']);
    const moof = [...iterateBoxes(chunks[1]?.data ?? Buffer.alloc(0))][0] as Box;
    const trafs = [...iterateBoxes(moof.data, 8)].filter((b) => b.type === 'traf');
    expect(trafs).toHaveLength(2);
    for (const traf of trafs) {
      const trackId = (findPath(traf, ['tfhd']) as Box).data.readUInt32BE(12);
      const track = tracks.find((t) => t.trackId === trackId);
      expect(readBaseMediaDecodeTime(findPath(traf, ['tfdt']) as Box)).toBe(BigInt(2 * (track?.timescale ?? 0)));
    }

    const info = await probe(await tmp.file('shifted.mp4', Buffer.concat(chunks.map((c) => c.data))));
    for (const stream of info.streams) expect(Number(stream.start_time)).toBeCloseTo(2, 2);
  });

  it('refuses a new pts base once a fragment was delivered', async () => {
    const encoder = newEncoder({ audio: null });
    const output = collect(encoder);
    await writeFrames(encoder, 0, 12, false);
    await output.firstFragment;
    expect(() => encoder.setPtsBase(500)).toThrow(/after the first fragment/);
    await encoder.end();
  });

  it('delivers a fragment while frames are still being written, long before end()', async () => {
    const encoder = newEncoder();
    const output = collect(encoder);
    // Half a second in: more than one 200 ms fragment, a quarter of the segment.
    await writeFrames(encoder, 0, 12);
    const first = await output.firstFragment;
    expect(types(first.data)).toEqual(['moof', 'mdat']);
    await writeFrames(encoder, 12, 48);
    const summary = await encoder.end();
    expect(summary.chunks).toBeGreaterThan(1);
  });

  it('does not deadlock when all video is written before any audio', async () => {
    const encoder = newEncoder();
    const output = collect(encoder);
    await writeFrames(encoder, 0, 48, false);
    await encoder.writeAudio(Buffer.concat(Array.from({ length: 48 }, (_, i) => audioForFrame(AUDIO.sampleRate, AUDIO.channels, FPS, i))));
    const summary = await encoder.end();
    expect(summary.frames).toBe(48);
    expect((await output.done).length).toBe(summary.chunks + 1);
  });

  it('does not deadlock when all audio is written before any video', async () => {
    const encoder = newEncoder();
    const output = collect(encoder);
    await encoder.writeAudio(Buffer.concat(Array.from({ length: 48 }, (_, i) => audioForFrame(AUDIO.sampleRate, AUDIO.channels, FPS, i))));
    await writeFrames(encoder, 0, 48, false);
    await encoder.end();
    await output.done;
  });

  it('encodes silent video when created without audio', async () => {
    const encoder = newEncoder({ audio: null });
    const output = collect(encoder);
    await writeFrames(encoder, 0, 10, false);
    await encoder.end();
    const chunks = await output.done;
    expect(chunks[0]?.mime).toMatch(/^video\/mp4; codecs="avc1\.[0-9a-f]{6}"$/);
    await expect(encoder.writeAudio(Buffer.alloc(8))).rejects.toBeInstanceOf(EncoderError);
  });

  it('abort() kills ffmpeg mid-stream: no child left, the iterator and later writes reject with AbortError', async () => {
    const encoder = newEncoder();
    const output = collect(encoder);
    await writeFrames(encoder, 0, 12);
    await output.firstFragment;
    const pid = encoder.pid as number;
    expect(processExists(pid)).toBe(true);

    await encoder.abort();
    expect(processExists(pid)).toBe(false);
    const failure = await output.done.then(() => undefined, (error: unknown) => error);
    expect(isAbortError(failure)).toBe(true);
    await expect(encoder.writeVideo(gradientFrame(WIDTH, HEIGHT, 12))).rejects.toSatisfy(isAbortError);
    await expect(encoder.writeAudio(audioForFrame(AUDIO.sampleRate, AUDIO.channels, FPS, 12))).rejects.toSatisfy(isAbortError);
    await expect(encoder.end()).rejects.toSatisfy(isAbortError);
  });

  it('aborts when its AbortSignal fires', async () => {
    const controller = new AbortController();
    const encoder = newEncoder({ signal: controller.signal });
    const output = collect(encoder);
    await writeFrames(encoder, 0, 3);
    controller.abort();
    await expect(output.done).rejects.toSatisfy(isAbortError);
    await encoder.abort(); // already aborted: resolves once the process is gone
    expect(processExists(encoder.pid as number)).toBe(false);
  });

  it('breaking out of chunks() aborts the encode instead of orphaning ffmpeg', async () => {
    const encoder = newEncoder({ audio: null });
    const writing = writeFrames(encoder, 0, 12, false).catch((error: unknown) => error);
    for await (const chunk of encoder.chunks()) if (chunk.kind === 'init') break;
    await encoder.abort();
    expect(processExists(encoder.pid as number)).toBe(false);
    const result = await writing;
    expect(result === undefined || isAbortError(result)).toBe(true);
  });

  it('a bogus ffmpeg path surfaces as EncoderError spawn_failed, not a crash', async () => {
    const encoder = newEncoder({ ffmpegPath: '/nonexistent/ffmpeg' });
    expect(encoder.pid).toBeUndefined();
    const output = collect(encoder);
    // Accepted into the watermark before the failure is known; it must not throw either way.
    await encoder.writeVideo(gradientFrame(WIDTH, HEIGHT, 0)).catch(() => undefined);
    await expect(encoder.end()).rejects.toMatchObject({ name: 'EncoderError', code: 'spawn_failed' });
    await expect(output.done).rejects.toBeInstanceOf(EncoderError);
    await expect(encoder.writeVideo(gradientFrame(WIDTH, HEIGHT, 1))).rejects.toMatchObject({ code: 'spawn_failed' });
  });

  it('an option ffmpeg rejects surfaces as EncoderError with the tail of stderr', async () => {
    const encoder = newEncoder({ x264Preset: 'no-such-preset' });
    const output = collect(encoder);
    const writes = writeFrames(encoder, 0, 4).catch((error: unknown) => error);
    const failure = (await encoder.end().catch((error: unknown) => error)) as EncoderError;
    expect(failure).toBeInstanceOf(EncoderError);
    expect(failure.code).toBe('ffmpeg_failed');
    expect(failure.stderr).toMatch(/preset/i);
    await expect(output.done).rejects.toBe(failure);
    expect(await writes).toBeInstanceOf(EncoderError);
  });

  it('ffmpeg killed by someone else surfaces as EncoderError ffmpeg_killed', async () => {
    const encoder = newEncoder();
    const output = collect(encoder);
    await writeFrames(encoder, 0, 6);
    process.kill(encoder.pid as number, 'SIGKILL');
    await expect(output.done).rejects.toMatchObject({ code: 'ffmpeg_killed' });
    await expect(writeFrames(encoder, 6, 12)).rejects.toBeInstanceOf(EncoderError);
    await expect(encoder.end()).rejects.toMatchObject({ code: 'ffmpeg_killed' });
  });

  it('refuses a frame of the wrong size without disturbing the stream', async () => {
    const encoder = newEncoder({ audio: null });
    const output = collect(encoder);
    await expect(encoder.writeVideo(Buffer.alloc(10))).rejects.toMatchObject({ code: 'invalid_input' });
    await writeFrames(encoder, 0, 4, false);
    expect((await encoder.end()).frames).toBe(4);
    await output.done;
  });

  it('builds the documented ffmpeg command line', () => {
    const args = fragmentedMp4Args({ width: 640, height: 360, fps: 24, audio: AUDIO, fragmentDurationMs: 250 }).join(' ');
    expect(args).toContain('-f rawvideo -pix_fmt rgb24 -s 640x360 -framerate 24 -i pipe:0');
    expect(args).toContain('-f f32le -ar 48000 -ac 2 -i pipe:3');
    expect(args).toContain('-c:v libx264 -preset ultrafast -tune zerolatency -pix_fmt yuv420p -crf 23 -maxrate 4000k -bufsize 4000k -g 24');
    expect(args).toContain('-movflags empty_moov+default_base_moof+skip_trailer -frag_duration 250000');
  });
});
