/**
 * 2. Control latency: `snapshot_state` → `continuation_state_snapshot` round trips with
 * 1, 64 and 512 connected sessions. One session is active and streaming (loop
 * generation, 640x352 realtime) the whole time; the rest wait in the admission queue.
 * Pings alternate between the active session and the last queued one. The server runs
 * in its own process; the clients here.
 */
import { performance } from 'node:perf_hooks';
import { BenchClient, inBatches, sleep } from './lib/client.js';
import { syntheticContinuation } from './lib/continuation.js';
import { info, type Benchmark, type Figure } from './lib/report.js';
import { promSample, scrapeMetrics } from './lib/prom.js';
import { startServerProcess } from './lib/server-process.js';
import { round, summarize, type Summary } from './lib/stats.js';

interface LatencyStep {
  sessions: number;
  all: Summary;
  active: Summary;
  queued: Summary | undefined;
  mediaBytesDuringRun: number;
  /** The server's own event-loop delay over the run (prom-client's monitor), ms. */
  serverLoopLagP99Ms: number | undefined;
  serverLoopLagMaxMs: number | undefined;
}

async function pingRoundTrips(client: BenchClient, count: number, gapMs: number): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < count; i++) {
    const reply = client.next('continuation_state_snapshot', 10_000);
    const sent = performance.now();
    client.send({ type: 'snapshot_state' });
    const { at } = await reply;
    samples.push(at - sent);
    await sleep(gapMs);
  }
  return samples;
}

async function measureStep(sessions: number, pings: number): Promise<LatencyStep> {
  const server = await startServerProcess({
    streaming: { max_sessions: sessions + 16, max_queue: sessions + 16, generation_segment_cap: 1000, queue_timeout_seconds: 3600 },
    generator: { synthetic: { pace: 'realtime', step_ms: 25 } },
  });
  const clients: BenchClient[] = [];
  try {
    const state = syntheticContinuation();
    const active = await BenchClient.connect(server.wsUrl);
    clients.push(active);
    let mediaBytes = 0;
    active.onBinary = (data) => (mediaBytes += data.length);
    const started = active.next('ltx2_segment_start', 30_000);
    active.send({
      type: 'session_init_v2',
      client_id: 'bench-active',
      curated_prompts: ['a streaming session'],
      loop_generation_enabled: true,
      continuation_state: state,
    });
    await started;
    await inBatches(
      Array.from({ length: sessions - 1 }, (_, i) => i),
      64,
      async (i) => {
        const c = await BenchClient.connect(server.wsUrl);
        clients.push(c);
        const queued = c.next('queue_status', 60_000);
        c.send({ type: 'session_init_v2', client_id: `bench-queued-${i}`, continuation_state: state });
        await queued;
      },
    );
    await sleep(200);
    const probes = sessions > 1 ? [active, clients[clients.length - 1] as BenchClient] : [active];
    const activeSamples: number[] = [];
    const queuedSamples: number[] = [];
    mediaBytes = 0;
    for (let i = 0; i < pings; i++) {
      const probe = probes[i % probes.length] as BenchClient;
      const [rtt] = await pingRoundTrips(probe, 1, 5 + (i % 7));
      (probe === active ? activeSamples : queuedSamples).push(rtt as number);
    }
    const metrics = await scrapeMetrics(server.url);
    const lag = (name: string) => {
      const v = promSample(metrics, name);
      return v === undefined ? undefined : round(v * 1000);
    };
    return {
      sessions,
      serverLoopLagP99Ms: lag('livegen_nodejs_eventloop_lag_p99_seconds'),
      serverLoopLagMaxMs: lag('livegen_nodejs_eventloop_lag_max_seconds'),
      all: rounded(summarize([...activeSamples, ...queuedSamples])),
      active: rounded(summarize(activeSamples)),
      queued: queuedSamples.length ? rounded(summarize(queuedSamples)) : undefined,
      mediaBytesDuringRun: mediaBytes,
    };
  } finally {
    for (const c of clients) c.terminate();
    await server.close();
  }
}

function rounded(s: Summary): Summary {
  return { n: s.n, min: round(s.min), p50: round(s.p50), p90: round(s.p90), p99: round(s.p99), max: round(s.max) };
}

export const controlLatency: Benchmark = {
  name: 'control-latency',
  title: 'snapshot_state round trip with 1, 64 and 512 connected sessions (one streaming, the rest queued)',
  async run({ quick, log }) {
    const counts = quick ? [1, 64] : [1, 64, 512];
    const pings = quick ? 40 : 400;
    const steps: LatencyStep[] = [];
    for (const n of counts) {
      const step = await measureStep(n, pings);
      log(`  ${n} sessions: p50 ${step.all.p50} ms, p99 ${step.all.p99} ms (active p99 ${step.active.p99}, queued p99 ${step.queued?.p99 ?? '-'}; server loop lag p99 ${step.serverLoopLagP99Ms} ms, max ${step.serverLoopLagMaxMs} ms; ${step.mediaBytesDuringRun} media bytes meanwhile)`);
      steps.push(step);
    }
    const figures: Figure[] = [];
    for (const s of steps) {
      figures.push(info(`snapshot round trip p50 @ ${s.sessions} sessions`, s.all.p50, 'ms', `${s.all.n} pings`));
      figures.push(info(`snapshot round trip p99 @ ${s.sessions} sessions`, s.all.p99, 'ms', `max ${s.all.max} ms; server loop lag p99 ${s.serverLoopLagP99Ms} ms`));
    }
    return { figures, details: { steps } };
  },
};
