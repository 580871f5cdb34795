import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { InterleavedInputs } from '../../src/media/input-pipes.js';

/** A pipe that flushes only when the test says so, like ffmpeg not reading it. */
class HeldPipe extends Writable {
  private readonly held: Array<() => void> = [];
  constructor() {
    super({ highWaterMark: 1 });
  }
  override _write(_chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    this.held.push(callback);
  }
  flushOne(): void {
    this.held.shift()?.();
  }
}

const settled = async (promise: Promise<void>): Promise<'resolved' | 'pending' | 'rejected'> => {
  let state: 'resolved' | 'pending' | 'rejected' = 'pending';
  promise.then(() => (state = 'resolved'), () => (state = 'rejected'));
  await new Promise((resolve) => setImmediate(resolve));
  return state;
};

function inputs(): { video: HeldPipe; audio: HeldPipe; pipes: InterleavedInputs; errors: string[] } {
  const video = new HeldPipe();
  const audio = new HeldPipe();
  const errors: string[] = [];
  // 100 bytes = 1 s of either medium; watermark a quarter second; video may lead by 2 s, audio by 30 s.
  const pipes = new InterleavedInputs(
    [
      { name: 'video', stream: video, bytesPerSecond: 100, highWaterBytes: 25, maxLeadBytes: 200 },
      { name: 'audio', stream: audio, bytesPerSecond: 100, highWaterBytes: 25, maxLeadBytes: 3000 },
    ],
    (name) => errors.push(name),
  );
  return { video, audio, pipes, errors };
}

describe('InterleavedInputs', () => {
  it('resolves a write while the pipe holds no more than its watermark', async () => {
    const { pipes } = inputs();
    expect(await settled(pipes.write('video', Buffer.alloc(20)))).toBe('resolved');
  });

  it('holds a write above the watermark until the pipe drains below it', async () => {
    const { pipes, video } = inputs();
    await pipes.write('audio', Buffer.alloc(40)); // audio ahead, so video is not leading
    await pipes.write('video', Buffer.alloc(20));
    const second = pipes.write('video', Buffer.alloc(20));
    expect(await settled(second)).toBe('pending');
    video.flushOne();
    expect(await settled(second)).toBe('resolved');
  });

  it('lets a pipe that leads the other in media time through, up to its lead cap', async () => {
    const { pipes } = inputs();
    // Nothing flushes: ffmpeg waits for audio, which only the caller can provide.
    for (let i = 0; i < 10; i++) expect(await settled(pipes.write('video', Buffer.alloc(20)))).toBe('resolved');
    expect(await settled(pipes.write('video', Buffer.alloc(20)))).toBe('pending');
  });

  it('lets audio run far ahead, so a generator may hand over a whole segment of it first', async () => {
    const { pipes } = inputs();
    for (let i = 0; i < 20; i++) expect(await settled(pipes.write('audio', Buffer.alloc(100)))).toBe('resolved');
  });

  it('rejects waiting and later writes once failed', async () => {
    const { pipes } = inputs();
    await pipes.write('audio', Buffer.alloc(30)).catch(() => undefined);
    const waiting = pipes.write('video', Buffer.alloc(30));
    pipes.fail(new Error('ffmpeg died'));
    await expect(waiting).rejects.toThrow('ffmpeg died');
    await expect(pipes.write('video', Buffer.alloc(1))).rejects.toThrow('ffmpeg died');
  });

  it('reports a pipe error once instead of throwing it', async () => {
    const { pipes, video, errors } = inputs();
    video.destroy(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }));
    video.emit('error', new Error('again'));
    await new Promise((resolve) => setImmediate(resolve));
    expect(errors).toEqual(['video']);
    pipes.fail(new Error('x'));
  });
});
