/**
 * The Dreamverse dialect (`/ws`) against `/v1/stream` on the same server: a preset start
 * (init → first `media_init`, → first media byte) and the wait between segments of a
 * rollout, where `/ws` chooses every prompt itself and `/v1/stream` has its requests
 * queued up front. Both run the same session core; the figures show what the dialect
 * adds on top of it.
 */
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import { createLivegenServer } from '../src/server/index.js';
import { BenchClient } from './lib/client.js';
import { benchConfig } from './lib/config.js';
import { info, type Benchmark, type Figure } from './lib/report.js';
import { round, summarize, type Summary } from './lib/stats.js';

interface DialectRun {
  firstMediaInitMs: number[];
  firstByteMs: number[];
  gapMs: number[];
}

const SEEDS = ['a lighthouse at dusk', 'waves against the rocks', 'the lamp turns on', 'a ship passes', 'rain begins', 'the lamp turns off'];

function rounded(s: Summary): Summary {
  return { n: s.n, min: round(s.min), p50: round(s.p50), p90: round(s.p90), p99: round(s.p99), max: round(s.max) };
}

async function measure(dialect: 'ws' | 'v1', sessions: number, segments: number): Promise<DialectRun> {
  const config = benchConfig({
    default_request: { sampling: { width: 320, height: 176, fps: 24, num_frames: 24, num_inference_steps: 8 } },
    streaming: { generation_segment_cap: segments, max_pending_requests: segments },
    generator: { synthetic: { pace: 'realtime', step_ms: 25 } },
  });
  const server = createLivegenServer(config, { logger: pino({ level: 'silent' }) });
  const url = await server.listen();
  const run: DialectRun = { firstMediaInitMs: [], firstByteMs: [], gapMs: [] };
  try {
    for (let i = 0; i < sessions; i++) {
      const client = await BenchClient.connect(`${url.replace(/^http/, 'ws')}${dialect === 'ws' ? '/ws' : '/v1/stream'}`);
      const completes: number[] = [];
      const starts: number[] = [];
      let mediaInitAt: number | undefined;
      let firstByteAt: number | undefined;
      let done: () => void = () => undefined;
      const finished = new Promise<void>((resolve) => (done = resolve));
      client.onJson = (m, at) => {
        if (m.type === 'media_init') mediaInitAt ??= at;
        if (m.type === 'ltx2_segment_start') starts.push(at);
        if (m.type === 'ltx2_segment_complete') completes.push(at);
        if (m.type === 'ltx2_stream_complete') done();
      };
      client.onBinary = (_data, at) => {
        firstByteAt ??= at;
      };
      const sent = performance.now();
      if (dialect === 'ws') {
        client.send({ type: 'session_init_v2', preset_id: 'bench', preset_label: 'Bench', curated_prompts: SEEDS.slice(0, segments), initial_rollout_prompt: '', initial_image: null, enhancement_enabled: false });
      } else {
        client.send({ type: 'session_init_v2', client_id: 'bench-dreamverse' });
        await client.next('ltx2_stream_start');
        for (const prompt of SEEDS.slice(0, segments)) client.send({ type: 'segment_prompt_source', prompt, source: 'curated' });
      }
      await Promise.race([finished, client.closed]);
      client.close();
      await client.closed;
      if (mediaInitAt !== undefined) run.firstMediaInitMs.push(mediaInitAt - sent);
      if (firstByteAt !== undefined) run.firstByteMs.push(firstByteAt - sent);
      run.gapMs.push(...starts.slice(1).map((at, k) => at - (completes[k] ?? Number.NaN)));
    }
  } finally {
    await server.close();
  }
  return run;
}

export const dreamverse: Benchmark = {
  name: 'dreamverse',
  title: 'Dreamverse dialect (/ws) vs /v1/stream on one server: preset start → first media, wait between segments',
  async run({ quick, log }) {
    const sessions = quick ? 2 : 8;
    const segments = quick ? 2 : 4;
    const results: Record<string, { firstMediaInitMs: Summary; firstByteMs: Summary; gapMs: Summary }> = {};
    for (const dialect of ['v1', 'ws'] as const) {
      const r = await measure(dialect, sessions, segments);
      results[dialect] = { firstMediaInitMs: rounded(summarize(r.firstMediaInitMs)), firstByteMs: rounded(summarize(r.firstByteMs)), gapMs: rounded(summarize(r.gapMs)) };
      const x = results[dialect];
      log(`  ${dialect === 'ws' ? '/ws' : '/v1/stream'}: init → first media byte p50 ${x?.firstByteMs.p50} ms; gap between segments p50 ${x?.gapMs.p50} ms, max ${x?.gapMs.max} ms`);
    }
    const v1 = results.v1 as (typeof results)[string];
    const ws = results.ws as (typeof results)[string];
    const figures: Figure[] = [
      info('/ws init → first media byte p50', ws.firstByteMs.p50, 'ms', `${round(ws.firstByteMs.p50 / v1.firstByteMs.p50)}x of /v1/stream (${v1.firstByteMs.p50} ms, its requests sent with the init)`),
      info('/ws init → media_init p50', ws.firstMediaInitMs.p50, 'ms', `/v1/stream: ${v1.firstMediaInitMs.p50} ms`),
      info('/ws wait between segments p50', ws.gapMs.p50, 'ms', `max ${ws.gapMs.max} ms; /v1/stream with queued requests: p50 ${v1.gapMs.p50} ms, max ${v1.gapMs.max} ms`),
    ];
    return { figures, details: { sessions, segments, results } };
  },
};
