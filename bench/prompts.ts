/**
 * The prompt layer's cost to a stream: the wait between two segments (one segment's
 * `ltx2_segment_complete` → the next one's `ltx2_segment_start`) with an LLM in the loop,
 * against the same stream without one. The LLM is a fake OpenAI-compatible server on
 * loopback that answers after a set latency, so the figures show the server's pipeline,
 * not a provider's mood. Also the safety check's cost per prompt (blocklist and a fastText
 * classifier).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import { PromptSafety } from '../src/prompts/index.js';
import { createLivegenServer } from '../src/server/index.js';
import { FakeLlm } from '../test/prompts/fake-llm.js';
import { writeTinySafetyModel } from '../test/support/safety-model.js';
import { BenchClient } from './lib/client.js';
import { benchConfig } from './lib/config.js';
import { info, type Benchmark, type Figure } from './lib/report.js';
import { round, summarize, type Summary } from './lib/stats.js';

interface GapRun {
  label: string;
  segments: number;
  /** segment complete → next segment start, ms. */
  gapMs: Summary;
  sources: string[];
}

interface Scenario {
  label: string;
  /** LLM latency; undefined: no LLM configured. */
  llmMs?: number;
  enhance?: boolean;
  auto?: boolean;
  /** Send every request at once (queued ahead), or each one when the previous segment completes. */
  requests: 'queued' | 'on_complete' | 'none';
}

async function measureGaps(s: Scenario, segments: number): Promise<GapRun> {
  const fake = s.llmMs === undefined ? undefined : await FakeLlm.start((call) => ({ delayMs: s.llmMs, content: `cinematic ${call.user.split('\n').pop() ?? ''}` }));
  const config = benchConfig({
    // One-second segments of realtime synthetic video, eight 25 ms steps before the frames.
    default_request: { sampling: { width: 320, height: 176, fps: 24, num_frames: 24, num_inference_steps: 8 } },
    streaming: {
      generation_segment_cap: segments,
      // Every request of the run may wait at once.
      max_pending_requests: segments,
      ...(fake ? { prompt: { enabled: true, providers: [{ name: 'fake', base_url: fake.baseUrl, model: 'fake-model' }], timeout_ms: 20_000, auto_extension_timeout_ms: 20_000 } } : {}),
    },
    generator: { synthetic: { pace: 'realtime', step_ms: 25 } },
  });
  const server = createLivegenServer(config, { logger: pino({ level: 'silent' }) });
  const url = await server.listen();
  const client = await BenchClient.connect(`${url.replace(/^http/, 'ws')}/v1/stream`);
  const completes: number[] = [];
  const starts: number[] = [];
  const sources: string[] = [];
  let sent = 0;
  const request = (): void => {
    client.send({ type: 'segment_prompt_source', prompt: `a fox crosses the river, part ${++sent}` });
  };
  client.onJson = (m, at) => {
    if (m.type === 'ltx2_segment_start') {
      starts.push(at);
      sources.push(String(m.source));
    }
    if (m.type === 'ltx2_segment_complete') {
      completes.push(at);
      if (s.requests === 'on_complete' && sent < segments) request();
    }
  };
  try {
    client.send({ type: 'session_init_v2', client_id: 'bench-prompts', enhancement_enabled: s.enhance ?? false, auto_extension_enabled: s.auto ?? false });
    await client.next('ltx2_stream_start');
    if (s.requests === 'queued') for (let i = 0; i < segments; i++) request();
    else request();
    await client.closed;
  } finally {
    client.close();
    await server.close();
    await fake?.close();
  }
  const gaps = starts.slice(1).map((at, i) => at - (completes[i] ?? Number.NaN));
  const g = summarize(gaps);
  return { label: s.label, segments: starts.length, gapMs: { n: g.n, min: round(g.min), p50: round(g.p50), p90: round(g.p90), p99: round(g.p99), max: round(g.max) }, sources };
}

/** Microseconds per check over `prompts`, for a filter. */
function checkCost(safety: PromptSafety, prompts: string[], rounds: number): number {
  const started = performance.now();
  for (let r = 0; r < rounds; r++) for (const p of prompts) safety.check(p);
  return round(((performance.now() - started) * 1000) / (rounds * prompts.length));
}

async function measureSafety(quick: boolean): Promise<{ blocklistUs: number; classifierUs: number; terms: number }> {
  const dir = await mkdtemp(join(tmpdir(), 'livegen-bench-safety-'));
  try {
    const terms = Array.from({ length: 500 }, (_, i) => `blockedterm${i}`);
    const blocklistPath = join(dir, 'blocklist.txt');
    await writeFile(blocklistPath, terms.join('\n'));
    const prompts = Array.from({ length: 200 }, (_, i) => `A cinematic wide shot of a red fox crossing a frozen river at dawn, mist over the water, shot ${i}`);
    const rounds = quick ? 5 : 50;
    const blocklist = new PromptSafety({ enabled: true, blocklistPath, blockThreshold: 0.5, unsafeLabels: ['unsafe'] });
    await blocklist.start();
    const classifier = new PromptSafety({ enabled: true, classifierPath: await writeTinySafetyModel(join(dir, 'tiny.bin')), blockThreshold: 0.5, unsafeLabels: ['unsafe'] });
    await classifier.start();
    try {
      return { blocklistUs: checkCost(blocklist, prompts, rounds), classifierUs: checkCost(classifier, prompts, rounds), terms: terms.length };
    } finally {
      classifier.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export const prompts: Benchmark = {
  name: 'prompts',
  title: 'Prompt layer: wait between segments with an LLM (fake, on loopback) in the loop; safety check cost',
  async run({ quick, log }) {
    const segments = quick ? 3 : 10;
    const llmMs = 400;
    const scenarios: Scenario[] = [
      { label: 'no LLM, requests queued', requests: 'queued' },
      { label: `enhance (LLM ${llmMs} ms), requests queued`, llmMs, enhance: true, requests: 'queued' },
      { label: 'no LLM, each request sent on segment complete', requests: 'on_complete' },
      { label: `enhance (LLM ${llmMs} ms), each request sent on segment complete`, llmMs, enhance: true, requests: 'on_complete' },
      { label: 'auto-extension, no LLM (last prompt again)', auto: true, requests: 'none' },
      { label: `auto-extension by LLM (${llmMs} ms)`, llmMs, auto: true, requests: 'none' },
    ];
    const runs: GapRun[] = [];
    for (const s of scenarios) {
      const r = await measureGaps(s, segments);
      log(`  ${s.label}: gap p50 ${r.gapMs.p50} ms, p90 ${r.gapMs.p90} ms, max ${r.gapMs.max} ms over ${r.gapMs.n} joins (sources: ${[...new Set(r.sources)].join(', ')})`);
      runs.push(r);
    }
    const [plainQueued, enhancedQueued, plainOnComplete, enhancedOnComplete, autoRepeat, autoLlm] = runs as [GapRun, GapRun, GapRun, GapRun, GapRun, GapRun];
    const safety = await measureSafety(quick);
    log(`  safety check: blocklist of ${safety.terms} terms ${safety.blocklistUs} µs, fastText classifier ${safety.classifierUs} µs per prompt`);
    const figures: Figure[] = [
      info('gap p50, no LLM (requests queued)', plainQueued.gapMs.p50, 'ms', `p90 ${plainQueued.gapMs.p90} ms`),
      info('gap p50, enhancement ahead (requests queued)', enhancedQueued.gapMs.p50, 'ms', `p90 ${enhancedQueued.gapMs.p90} ms; LLM ${llmMs} ms; +${round(enhancedQueued.gapMs.p50 - plainQueued.gapMs.p50)} ms over no LLM`),
      info('gap p50, enhancement of a request sent at segment complete', enhancedOnComplete.gapMs.p50, 'ms', `no LLM: ${plainOnComplete.gapMs.p50} ms; the LLM is on this path by construction`),
      info('gap p50, auto-extension by LLM (asked ahead)', autoLlm.gapMs.p50, 'ms', `p90 ${autoLlm.gapMs.p90} ms; last prompt again: ${autoRepeat.gapMs.p50} ms`),
      info('safety check, blocklist', safety.blocklistUs, 'µs/prompt', `${safety.terms} terms`),
      info('safety check, fastText classifier', safety.classifierUs, 'µs/prompt', 'tiny model, WASM'),
    ];
    return { figures, details: { llmMs, segments, runs, safety } };
  },
};
