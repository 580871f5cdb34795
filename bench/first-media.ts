/**
 * 1. First generated frame → first playable media at a real WebSocket client.
 *
 * The server runs in this process with its generator wrapped (`TimedGenerator`) so the
 * first video frame of each segment is stamped on the same clock as the client's
 * arrivals. "Playable" = the init segment and the first `moof`+`mdat` fragment are in.
 */
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import { SyntheticGenerator } from '../src/generation/index.js';
import { createLivegenServer } from '../src/server/index.js';
import { BenchClient } from './lib/client.js';
import { benchConfig } from './lib/config.js';
import { atMost, info, type Benchmark, type Figure } from './lib/report.js';
import { round, summarize, type Summary } from './lib/stats.js';
import { TimedGenerator } from './lib/timed-generator.js';

export interface FirstMediaRun {
  label: string;
  fragmentDurationMs: number;
  segments: number;
  /** First frame → first fragment at the client, ms. */
  firstFragmentMs: Summary;
  /** First frame → init segment at the client, ms. */
  initMs: Summary;
  /** `ltx2_segment_start` → first fragment at the client, ms (includes the denoise steps). */
  segmentStartToFragmentMs: Summary;
  firstFragmentBytes: Summary;
  fragmentsPerSegment: number;
  samplesMs: number[];
}

export interface FirstMediaSettings {
  label: string;
  segments: number;
  width?: number;
  height?: number;
  numFrames?: number;
  fragmentDurationMs?: number;
}

export async function measureFirstMedia(s: FirstMediaSettings): Promise<FirstMediaRun> {
  const media: Record<string, unknown> = {};
  if (s.fragmentDurationMs !== undefined) media.fragment_duration_ms = s.fragmentDurationMs;
  const config = benchConfig({
    default_request: { sampling: { width: s.width ?? 640, height: s.height ?? 352, fps: 24, num_frames: s.numFrames ?? 48, num_inference_steps: 8 } },
    streaming: { generation_segment_cap: s.segments + 1 },
    generator: { synthetic: { pace: 'realtime', step_ms: 25 } },
    media,
  });
  const synthetic = config.generator.synthetic;
  const generator = new TimedGenerator(
    new SyntheticGenerator({ pace: 'realtime', stepMs: synthetic.step_ms, audio: { sampleRate: synthetic.audio_sample_rate, channels: 1 } }),
  );
  const server = createLivegenServer(config, { logger: pino({ level: 'silent' }), generators: [generator] });
  const url = await server.listen();
  const client = await BenchClient.connect(`${url.replace(/^http/, 'ws')}/v1/stream`);
  const firstFragmentAt: number[] = [];
  const initAt: number[] = [];
  const startAt: number[] = [];
  const firstFragmentBytes: number[] = [];
  const fragments: number[] = [];
  let binaries = 0;
  client.onJson = (m, at) => {
    if (m.type === 'ltx2_segment_start') startAt.push(at);
    if (m.type === 'media_init') binaries = 0;
    if (m.type === 'media_segment_complete') fragments.push(Number(m.chunks));
  };
  client.onBinary = (data, at) => {
    binaries += 1;
    if (binaries === 1) initAt.push(at);
    if (binaries === 2) {
      firstFragmentAt.push(at);
      firstFragmentBytes.push(data.length);
    }
  };
  try {
    client.send({ type: 'session_init_v2', client_id: 'bench-first-media' });
    await client.next('ltx2_stream_start');
    for (let i = 0; i < s.segments; i++) {
      const done = client.next('ltx2_segment_complete', 60_000);
      client.send({ type: 'segment_prompt_source', prompt: `first media ${i}` });
      await done;
    }
  } finally {
    client.close();
    await server.close();
  }
  const samples = firstFragmentAt.map((at, i) => at - (generator.firstFrameAt[i] ?? Number.NaN));
  return {
    label: s.label,
    fragmentDurationMs: config.media.fragment_duration_ms,
    segments: s.segments,
    firstFragmentMs: roundSummary(summarize(samples)),
    initMs: roundSummary(summarize(initAt.map((at, i) => at - (generator.firstFrameAt[i] ?? Number.NaN)))),
    segmentStartToFragmentMs: roundSummary(summarize(firstFragmentAt.map((at, i) => at - (startAt[i] ?? Number.NaN)))),
    firstFragmentBytes: roundSummary(summarize(firstFragmentBytes)),
    fragmentsPerSegment: fragments.length ? round(fragments.reduce((a, b) => a + b, 0) / fragments.length) : Number.NaN,
    samplesMs: samples.map(round),
  };
}

function roundSummary(s: Summary): Summary {
  return { n: s.n, min: round(s.min), p50: round(s.p50), p90: round(s.p90), p99: round(s.p99), max: round(s.max) };
}

export const firstMedia: Benchmark = {
  name: 'first-media',
  title: 'First generated frame → first playable media bytes at a WebSocket client (640x352, 24 fps, realtime)',
  async run({ quick, log }) {
    const segments = quick ? 3 : 12;
    const runs: FirstMediaRun[] = [];
    // The configured default first, then shorter fragments to show what the target needs.
    const variants: FirstMediaSettings[] = quick
      ? [{ label: 'config default', segments }]
      : [
          { label: 'config default', segments },
          { label: 'fragment 100 ms', segments, fragmentDurationMs: 100 },
          { label: 'fragment 40 ms', segments, fragmentDurationMs: 40 },
        ];
    for (const v of variants) {
      const started = performance.now();
      const r = await measureFirstMedia(v);
      log(`  ${v.label} (fragment ${r.fragmentDurationMs} ms): first frame → first fragment p50 ${r.firstFragmentMs.p50} ms, p90 ${r.firstFragmentMs.p90} ms (${round((performance.now() - started) / 1000)} s)`);
      runs.push(r);
    }
    const main = runs[0] as FirstMediaRun;
    const figures: Figure[] = [
      atMost('first frame → first fragment p50', main.firstFragmentMs.p50, 'ms', 150, `fragment ${main.fragmentDurationMs} ms, ${main.segments} segments`),
      info('first frame → first fragment p90', main.firstFragmentMs.p90, 'ms'),
      info('first frame → init segment p50', main.initMs.p50, 'ms'),
      info('segment start → first fragment p50', main.segmentStartToFragmentMs.p50, 'ms', 'includes 8 denoise steps x 25 ms'),
    ];
    for (const r of runs.slice(1)) {
      figures.push(info(`first fragment p50 @ ${r.label}`, r.firstFragmentMs.p50, 'ms', `p90 ${r.firstFragmentMs.p90} ms, ${r.fragmentsPerSegment} fragments/segment`));
    }
    return { figures, details: { runs } };
  },
};
