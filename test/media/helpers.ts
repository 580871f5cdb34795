/** Shared test fixtures for the media tests: synthetic frames and audio, ffprobe, temp files. */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

export const run = promisify(execFile);

/** A moving gradient, so consecutive frames differ and the encoder has real work. */
export function gradientFrame(width: number, height: number, index: number): Buffer {
  const frame = Buffer.allocUnsafe(width * height * 3);
  let offset = 0;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      frame[offset++] = (x + index * 4) & 255;
      frame[offset++] = (y + index * 2) & 255;
      frame[offset++] = (x + y + index * 8) & 255;
    }
  }
  return frame;
}

/** `count` sample frames of a 440 Hz tone as interleaved f32le, starting at sample `startSample`. */
export function toneSamples(sampleRate: number, channels: number, startSample: number, count: number): Buffer {
  const out = Buffer.allocUnsafe(count * channels * 4);
  for (let i = 0; i < count; i++) {
    const value = 0.25 * Math.sin((2 * Math.PI * 440 * (startSample + i)) / sampleRate);
    for (let c = 0; c < channels; c++) out.writeFloatLE(value, (i * channels + c) * 4);
  }
  return out;
}

/** Samples belonging with video frame `index` at `fps` (exact over a whole segment, no drift). */
export function audioForFrame(sampleRate: number, channels: number, fps: number, index: number): Buffer {
  const start = Math.round((index * sampleRate) / fps);
  const end = Math.round(((index + 1) * sampleRate) / fps);
  return toneSamples(sampleRate, channels, start, end - start);
}

export interface ProbedStream {
  codec_name: string;
  codec_type: string;
  nb_read_frames?: string;
  start_time?: string;
  profile?: string;
  level?: number;
}

export interface Probe {
  streams: ProbedStream[];
  format: { duration?: string; start_time?: string };
}

/** ffprobe a file, counting frames (decodes everything, so it also proves the file is decodable). */
export async function probe(path: string, extraArgs: string[] = []): Promise<Probe> {
  const { stdout } = await run('ffprobe', [
    '-v', 'error', '-count_frames', '-show_streams', '-show_format', '-of', 'json', ...extraArgs, path,
  ]);
  return JSON.parse(stdout) as Probe;
}

/** A private temp directory, removed by the returned cleanup. */
export async function tempDir(): Promise<{ dir: string; file: (name: string, data: Buffer) => Promise<string>; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'livegen-media-'));
  return {
    dir,
    file: async (name, data) => {
      const path = join(dir, name);
      await writeFile(path, data);
      return path;
    },
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}

/** Whether a process id is still alive (zombies are reaped by Node before 'close'). */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
