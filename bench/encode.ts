/**
 * 4. Encode efficiency: frames/s through livegen's media path against ffmpeg alone on
 * the same pre-rendered synthetic frames (+ audio) with the same arguments.
 *
 *   ffmpeg alone   `fragmentedMp4Args` with the inputs read from files, output discarded
 *   encoder        `FragmentedMp4Encoder`: frames written from Node, chunks read back
 *   server path    a whole segment through the server (generator → encoder → socket)
 *                  at a WebSocket client, from `ltx2_segment_start` to
 *                  `media_segment_complete`, frames replayed with no pacing
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import { FragmentedMp4Encoder, fragmentedMp4Args, type FragmentedMp4EncoderOptions } from '../src/media/index.js';
import { createLivegenServer } from '../src/server/index.js';
import { BenchClient } from './lib/client.js';
import { benchConfig } from './lib/config.js';
import { BENCH_AUDIO, PrerenderedGenerator, prerender, type Prerendered } from './lib/prerendered.js';
import { atLeast, info, type Benchmark, type Figure } from './lib/report.js';
import { median, round } from './lib/stats.js';

type Method = 'ffmpeg' | 'encoder' | 'server';

export interface EncodeSize {
  width: number;
  height: number;
  frames: number;
  fps: Record<Method, number>;
  rounds: Record<Method, number[]>;
  bytes: Record<Method, number>;
}

function encoderOptions(src: Prerendered): FragmentedMp4EncoderOptions {
  return { width: src.width, height: src.height, fps: src.fps, audio: BENCH_AUDIO };
}

async function ffmpegAlone(src: Prerendered, count: number, dir: string): Promise<{ seconds: number; bytes: number }> {
  const videoPath = join(dir, `frames-${src.width}x${src.height}.rgb`);
  const audioPath = join(dir, `audio-${src.width}x${src.height}.f32`);
  const frames: Buffer[] = [];
  const audio: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    frames.push(src.frames[i % src.frames.length] as Buffer);
    audio.push(src.audio[i % src.audio.length] as Buffer);
  }
  await writeFile(videoPath, Buffer.concat(frames));
  await writeFile(audioPath, Buffer.concat(audio));
  const args = fragmentedMp4Args(encoderOptions(src)).map((a) => (a === 'pipe:0' ? videoPath : a === 'pipe:3' ? audioPath : a));
  const started = performance.now();
  let bytes = 0;
  await new Promise<void>((resolve, reject) => {
    const child = spawn('ffmpeg', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (bytes += d.length));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`ffmpeg exited ${code}: ${stderr}`))));
  });
  return { seconds: (performance.now() - started) / 1000, bytes };
}

async function throughEncoder(src: Prerendered, count: number): Promise<{ seconds: number; bytes: number }> {
  const started = performance.now();
  const encoder = new FragmentedMp4Encoder(encoderOptions(src));
  let bytes = 0;
  const ship = (async () => {
    for await (const chunk of encoder.chunks()) bytes += chunk.data.length;
  })();
  for (let i = 0; i < count; i++) {
    await encoder.writeVideo(src.frames[i % src.frames.length] as Buffer);
    const samples = src.audio[i % src.audio.length] as Buffer;
    if (samples.length > 0) await encoder.writeAudio(samples);
  }
  await encoder.end();
  await ship;
  return { seconds: (performance.now() - started) / 1000, bytes };
}

async function throughServer(src: Prerendered, count: number): Promise<{ seconds: number; bytes: number }> {
  const config = benchConfig({
    default_request: { sampling: { width: src.width, height: src.height, fps: src.fps, num_frames: count, num_inference_steps: 1 } },
    streaming: { generation_segment_cap: 2 },
  });
  const generator = new PrerenderedGenerator(src);
  const server = createLivegenServer(config, { logger: pino({ level: 'silent' }), generators: [generator] });
  const url = await server.listen();
  const client = await BenchClient.connect(`${url.replace(/^http/, 'ws')}/v1/stream`);
  let bytes = 0;
  client.onBinary = (data) => (bytes += data.length);
  try {
    client.send({ type: 'session_init_v2', client_id: 'bench-encode' });
    await client.next('ltx2_stream_start');
    // Let the ahead-of-need encoder start, as it would between segments.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const start = client.next('ltx2_segment_start');
    const complete = client.next('media_segment_complete', 120_000);
    client.send({ type: 'segment_prompt_source', prompt: 'bench encode' });
    const { at: startedAt } = await start;
    const { at: completedAt } = await complete;
    return { seconds: (completedAt - startedAt) / 1000, bytes };
  } finally {
    client.close();
    await server.close();
  }
}

async function measureSize(width: number, height: number, count: number, rounds: number, dir: string, log: (l: string) => void): Promise<EncodeSize> {
  const src = await prerender(width, height, 24, Math.min(count, 120));
  const results: Record<Method, number[]> = { ffmpeg: [], encoder: [], server: [] };
  const bytes: Record<Method, number> = { ffmpeg: 0, encoder: 0, server: 0 };
  const methods: Record<Method, () => Promise<{ seconds: number; bytes: number }>> = {
    ffmpeg: () => ffmpegAlone(src, count, dir),
    encoder: () => throughEncoder(src, count),
    server: () => throughServer(src, count),
  };
  for (let r = 0; r < rounds; r++) {
    for (const m of ['ffmpeg', 'encoder', 'server'] as Method[]) {
      const { seconds, bytes: b } = await methods[m]();
      results[m].push(round(count / seconds));
      bytes[m] = b;
    }
  }
  const fps = { ffmpeg: median(results.ffmpeg), encoder: median(results.encoder), server: median(results.server) };
  log(`  ${width}x${height}, ${count} frames: ffmpeg alone ${round(fps.ffmpeg)} f/s, encoder ${round(fps.encoder)} f/s, server path ${round(fps.server)} f/s`);
  return { width, height, frames: count, fps: { ffmpeg: round(fps.ffmpeg), encoder: round(fps.encoder), server: round(fps.server) }, rounds: results, bytes };
}

export const encodeEfficiency: Benchmark = {
  name: 'encode',
  title: "Frames/s through livegen's media path vs ffmpeg alone on the same frames and arguments",
  async run({ quick, log }) {
    const dir = await mkdtemp(join(tmpdir(), 'livegen-bench-encode-'));
    try {
      const sizes = quick ? [[1024, 576]] : [[1024, 576], [640, 352]];
      const count = quick ? 96 : 480;
      const rounds = quick ? 1 : 3;
      const measured: EncodeSize[] = [];
      for (const [w, h] of sizes) measured.push(await measureSize(w as number, h as number, count, rounds, dir, log));
      const figures: Figure[] = [];
      for (const m of measured) {
        const size = `${m.width}x${m.height}`;
        figures.push(info(`ffmpeg alone @ ${size}`, m.fps.ffmpeg, 'frames/s', `${m.frames} frames, median of ${rounds}`));
        figures.push(atLeast(`FragmentedMp4Encoder / ffmpeg @ ${size}`, round((100 * m.fps.encoder) / m.fps.ffmpeg), '%', 90, `${m.fps.encoder} frames/s`));
        figures.push(atLeast(`server path / ffmpeg @ ${size}`, round((100 * m.fps.server) / m.fps.ffmpeg), '%', 90, `${m.fps.server} frames/s`));
      }
      return { figures, details: { sizes: measured, args: fragmentedMp4Args({ width: 1024, height: 576, fps: 24, audio: BENCH_AUDIO }) } };
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  },
};
