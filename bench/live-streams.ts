/**
 * 5. Concurrent live streams: how many sessions at a size, 24 fps, realtime pace, stream
 * in real time at once. The count steps up (1, 2, 4, 6, 8, 10, 12...) until one misses:
 *
 *   - a fragment falls behind: it arrives more than 0.5 s later than the segment's first
 *     fragment + the media time of the frames between them (the generator makes frame k
 *     at k/fps after the first, so a stream that keeps up stays near 0), or
 *   - a segment's last media arrives more than 0.5 s after its first fragment + the
 *     media time of the frames after it.
 *
 * Both are anchored at the segment's first fragment: how soon that comes is benchmark 1.
 *
 * Every stream runs loop generation for a few segments (one worker each). The server runs
 * in its own process, the clients here; whole-machine CPU is reported per step.
 */
import { performance } from 'node:perf_hooks';
import { BenchClient, sleep } from './lib/client.js';
import { cpuBusy, cpuSample } from './lib/cpu.js';
import { videoSamples, videoTrackId } from './lib/fragments.js';
import { atLeast, info, type Benchmark, type Figure } from './lib/report.js';
import { startServerProcess } from './lib/server-process.js';
import { quantile, round } from './lib/stats.js';

const SLACK_MS = 500;
const FPS = 24;

export interface StreamsStep {
  streams: number;
  keptUp: boolean;
  /** Worst fragment lag over all streams and segments, ms. */
  maxLagMs: number;
  p50LagMs: number;
  p99LagMs: number;
  /** Worst segment completion past its duration, ms. */
  maxLatenessMs: number;
  segmentsCompleted: number;
  segmentsExpected: number;
  cpuBusyPct: number;
  serverCpuPct: number;
  seconds: number;
  errors: string[];
}

interface StreamState {
  /** Arrival of the segment's first fragment and the frames it carried. */
  firstAt: number;
  firstFrames: number;
  frames: number;
  trackId: number | undefined;
  binaries: number;
}

async function runStep(
  streams: number,
  width: number,
  height: number,
  numFrames: number,
  segments: number,
  extraConfig: Record<string, unknown>,
  prerendered: boolean,
): Promise<StreamsStep> {
  const server = await startServerProcess(
    {
    ...extraConfig,
    default_request: { sampling: { width, height, fps: FPS, num_frames: numFrames, num_inference_steps: 8 } },
    streaming: { max_sessions: streams + 4, generation_segment_cap: segments, session_timeout_seconds: 600 },
    pool: { workers: streams },
    generator: { synthetic: { pace: 'realtime', step_ms: 25 } },
    },
    { prerendered },
  );
  const lags: number[] = [];
  const lateness: number[] = [];
  const errors: string[] = [];
  let completed = 0;
  const clients: BenchClient[] = [];
  const started = performance.now();
  const cpuFrom = cpuSample();
  const serverFrom = await server.stats();
  let seconds = 0;
  let serverCpuUs = 0;
  let cpuTo = cpuFrom;
  try {
    await Promise.all(
      Array.from({ length: streams }, async (_, i) => {
        const client = await BenchClient.connect(server.wsUrl);
        clients.push(client);
        const st: StreamState = { firstAt: 0, firstFrames: 0, frames: 0, trackId: undefined, binaries: 0 };
        client.onJson = (m, at) => {
          if (m.type === 'media_init') {
            st.frames = 0;
            st.binaries = 0;
          } else if (m.type === 'media_segment_complete') {
            completed += 1;
            lateness.push(at - st.firstAt - ((st.frames - st.firstFrames) * 1000) / FPS);
          } else if (m.type === 'error') {
            errors.push(`stream ${i}: ${String(m.code)} ${String(m.message)}`);
          }
        };
        client.onBinary = (data, at) => {
          st.binaries += 1;
          if (st.binaries === 1) {
            st.trackId = videoTrackId(data);
            return;
          }
          if (st.trackId === undefined) return;
          st.frames += videoSamples(data, st.trackId);
          if (st.binaries === 2) {
            st.firstAt = at;
            st.firstFrames = st.frames;
          }
          lags.push(at - st.firstAt - ((st.frames - st.firstFrames) * 1000) / FPS);
        };
        client.send({
          type: 'session_init_v2',
          client_id: `bench-live-${i}`,
          curated_prompts: [`live stream ${i}`],
          loop_generation_enabled: true,
        });
      }),
    );
    const budgetMs = segments * ((numFrames * 1000) / FPS + 1500) + 15_000;
    await Promise.race([Promise.all(clients.map((c) => c.closed)), sleep(budgetMs)]);
  } finally {
    seconds = (performance.now() - started) / 1000;
    const serverTo = await server.stats();
    cpuTo = cpuSample();
    serverCpuUs = serverTo.cpuUserUs + serverTo.cpuSystemUs - serverFrom.cpuUserUs - serverFrom.cpuSystemUs;
    for (const c of clients) c.terminate();
    await server.close();
  }
  {
    const maxLag = lags.length ? Math.max(...lags) : Number.NaN;
    const maxLate = lateness.length ? Math.max(...lateness) : Number.NaN;
    const expected = streams * segments;
    return {
      streams,
      keptUp: completed === expected && errors.length === 0 && maxLag <= SLACK_MS && maxLate <= SLACK_MS,
      maxLagMs: round(maxLag),
      p50LagMs: round(quantile(lags, 0.5)),
      p99LagMs: round(quantile(lags, 0.99)),
      maxLatenessMs: round(maxLate),
      segmentsCompleted: completed,
      segmentsExpected: expected,
      cpuBusyPct: round(100 * cpuBusy(cpuFrom, cpuTo)),
      serverCpuPct: round(serverCpuUs / 1e4 / seconds),
      seconds: round(seconds),
      errors: errors.slice(0, 5),
    };
  }
}

export interface StreamsSize {
  generator: 'synthetic' | 'prerendered';
  width: number;
  height: number;
  largestKeptUp: number;
  firstMissed: number | undefined;
  steps: StreamsStep[];
}

export async function stepUp(
  width: number,
  height: number,
  counts: number[],
  budgetS: number,
  numFrames: number,
  segments: number,
  log: (line: string) => void,
  prerendered = false,
  extraConfig: Record<string, unknown> = {},
): Promise<StreamsSize> {
  const steps: StreamsStep[] = [];
  const deadline = performance.now() + budgetS * 1000;
  let largest = 0;
  let firstMissed: number | undefined;
  for (const n of counts) {
    if (performance.now() > deadline) {
      log(`  ${width}x${height}: time budget spent before ${n} streams`);
      break;
    }
    const step = await runStep(n, width, height, numFrames, segments, extraConfig, prerendered);
    steps.push(step);
    log(
      `  ${prerendered ? 'prerendered ' : ''}${width}x${height} x${n}: ${step.keptUp ? 'kept up' : 'MISSED'}; fragment lag p50 ${step.p50LagMs} / p99 ${step.p99LagMs} / max ${step.maxLagMs} ms, ` +
        `segment end max +${step.maxLatenessMs} ms, ${step.segmentsCompleted}/${step.segmentsExpected} segments, CPU ${step.cpuBusyPct}% (server node ${step.serverCpuPct}% of a core)` +
        (step.errors.length ? `, errors: ${step.errors.join('; ')}` : ''),
    );
    if (!step.keptUp) {
      firstMissed = n;
      break;
    }
    largest = n;
    await sleep(500);
  }
  return { generator: prerendered ? 'prerendered' : 'synthetic', width, height, largestKeptUp: largest, firstMissed, steps };
}

export const liveStreams: Benchmark = {
  name: 'live-streams',
  title: 'Concurrent realtime streams (24 fps) before the first misses real time, at 640x352 and 1024x576',
  async run({ quick, log }) {
    const counts = quick ? [1, 2] : [1, 2, 4, 6, 8, 10, 12, 14, 16];
    const numFrames = quick ? 24 : 72;
    const segments = quick ? 1 : 2;
    const budgetS = quick ? 30 : 120;
    const sizes: StreamsSize[] = [];
    for (const [w, h] of [
      [640, 352],
      [1024, 576],
    ] as const) {
      sizes.push(await stepUp(w, h, counts, budgetS, numFrames, segments, log));
    }
    // The same at 1024x576 with the server alone: frames pre-rendered, replayed at realtime
    // pace, so the synthetic generator's per-frame rendering does not count.
    if (!quick) sizes.push(await stepUp(1024, 576, counts, budgetS, numFrames, segments, log, true));
    const figures: Figure[] = [];
    for (const s of sizes) {
      const note = `${s.firstMissed === undefined ? 'none missed up to the last step' : `${s.firstMissed} missed`}; ${segments} x ${numFrames}-frame segments each`;
      const label = `streams kept up @ ${s.width}x${s.height}${s.generator === 'prerendered' ? ' (pre-rendered frames)' : ''}`;
      const fig = s.width === 1024 ? atLeast(label, s.largestKeptUp, 'streams', 8, note) : info(label, s.largestKeptUp, 'streams', note);
      figures.push(fig);
    }
    return { figures, details: { slackMs: SLACK_MS, fps: FPS, numFrames, segments, sizes } };
  },
};
