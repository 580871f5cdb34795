import { spawn } from 'node:child_process';
import type { GenerationEvent, SegmentRequest } from '../../src/generation/index.js';

export function request(overrides: Partial<SegmentRequest> = {}): SegmentRequest {
  return {
    prompt: 'a lighthouse at dusk',
    seed: 42,
    numInferenceSteps: 3,
    guidanceScale: 5,
    width: 160,
    height: 96,
    fps: 24,
    numFrames: 8,
    ...overrides,
  };
}

export async function collect(events: AsyncIterable<GenerationEvent>): Promise<GenerationEvent[]> {
  const out: GenerationEvent[] = [];
  for await (const event of events) out.push(event);
  return out;
}

export function framesOf(events: GenerationEvent[]): Buffer[] {
  return events.flatMap((e) => (e.type === 'video' ? [e.frame] : []));
}

/** All audio of a segment as numbers (f32le interleaved). */
export function samplesOf(events: GenerationEvent[]): Float32Array {
  const bytes = Buffer.concat(events.flatMap((e) => (e.type === 'audio' ? [e.samples] : [])));
  const out = new Float32Array(bytes.length / 4);
  for (let i = 0; i < out.length; i++) out[i] = bytes.readFloatLE(i * 4);
  return out;
}

export function doneOf(events: GenerationEvent[]): Extract<GenerationEvent, { type: 'done' }> {
  const last = events.at(-1);
  if (last?.type !== 'done') throw new Error(`last event is ${last?.type}, not done`);
  return last;
}

/** Run the real ffmpeg with `input` on stdin; resolves with stdout. */
export function ffmpeg(args: string[], input: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn('/usr/bin/ffmpeg', ['-hide_banner', '-loglevel', 'error', ...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    child.stdin.on('error', () => {}); // EPIPE surfaces as a non-zero exit below
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve(Buffer.concat(out));
      else reject(new Error(`ffmpeg exited ${code}: ${Buffer.concat(err).toString()}`));
    });
    child.stdin.end(input);
  });
}
