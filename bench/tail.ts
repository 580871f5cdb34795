/**
 * 7. The tail: control round trips and handshakes while N realtime streams generate.
 *
 * N sessions stream 640x352 at a realtime pace with loop generation (the in-process
 * synthetic generator, the default); one more session waits in the queue and sends
 * `snapshot_state` every few milliseconds, and new connections open, send their init and
 * leave. Reported: p50 / p99 / p99.9 of the snapshot round trip, the WebSocket handshake
 * (connect to open) and connect to the first `queue_status`, and the server's own
 * event-loop delay. The server runs in its own process; the clients here.
 *
 * A last step repeats the largest count with `generator.synthetic.thread: false` (frames
 * rendered on the server's event loop, as before the render thread), so the ratio of
 * the two comes from one run on one machine.
 */
import { performance } from 'node:perf_hooks';
import { BenchClient, sleep, snapshotRoundTrips } from './lib/client.js';
import { syntheticContinuation } from './lib/continuation.js';
import { promSample, scrapeMetrics } from './lib/prom.js';
import { info, type Benchmark, type Figure } from './lib/report.js';
import { startServerProcess } from './lib/server-process.js';
import { ratio, round, tailOf, type Tail } from './lib/stats.js';

interface TailStep {
  streams: number;
  roundTrip: Tail;
  handshake: Tail;
  toQueueStatus: Tail;
  segmentsDuringRun: number;
  serverLoopLagP99Ms: number | undefined;
  serverLoopLagMaxMs: number | undefined;
}

async function measureStep(streams: number, pings: number, handshakes: number, renderThread = true): Promise<TailStep> {
  const server = await startServerProcess({
    pool: { workers: Math.max(1, streams) },
    default_request: { sampling: { width: 640, height: 352, fps: 24, num_frames: 48 } },
    streaming: { max_sessions: 64, max_queue: 64, generation_segment_cap: 100_000, queue_timeout_seconds: 3600 },
    generator: { synthetic: { pace: 'realtime', step_ms: 25, thread: renderThread } },
  });
  const clients: BenchClient[] = [];
  try {
    let segments = 0;
    for (let i = 0; i < streams; i++) {
      const c = await BenchClient.connect(server.wsUrl);
      clients.push(c);
      c.onJson = (m) => {
        if (m.type === 'ltx2_segment_complete') segments += 1;
      };
      const started = c.next('ltx2_segment_start', 30_000);
      c.send({ type: 'session_init_v2', client_id: `tail-stream-${i}`, curated_prompts: [`stream ${i}`], loop_generation_enabled: true });
      await started;
    }
    // The probe holds a state to snapshot; it waits in the queue behind the streams (with
    // no stream it holds the only worker, idle: the answer takes the same path).
    const probe = await BenchClient.connect(server.wsUrl);
    clients.push(probe);
    const queued = probe.next('queue_status', 30_000);
    probe.send({ type: 'session_init_v2', client_id: 'tail-probe', continuation_state: syntheticContinuation() });
    await queued;
    await sleep(1000); // streams settle into their pace
    segments = 0;

    const roundTrips: number[] = [];
    const handshakeSamples: number[] = [];
    const toQueueStatus: number[] = [];
    const pinging = snapshotRoundTrips(probe, pings).then((times) => roundTrips.push(...times));
    const connecting = (async () => {
      for (let i = 0; i < handshakes; i++) {
        const started = performance.now();
        const c = await BenchClient.connect(server.wsUrl);
        const opened = performance.now();
        handshakeSamples.push(opened - started);
        const status = c.next('queue_status', 10_000);
        c.send({ type: 'session_init_v2', client_id: `tail-visitor-${i}` });
        const { at } = await status;
        toQueueStatus.push(at - started);
        c.terminate();
        await sleep(10);
      }
    })();
    await Promise.all([pinging, connecting]);
    const metrics = await scrapeMetrics(server.url);
    const lag = (name: string): number | undefined => {
      const v = promSample(metrics, name);
      return v === undefined ? undefined : round(v * 1000);
    };
    return {
      streams,
      roundTrip: tailOf(roundTrips),
      handshake: tailOf(handshakeSamples),
      toQueueStatus: tailOf(toQueueStatus),
      segmentsDuringRun: segments,
      serverLoopLagP99Ms: lag('livegen_nodejs_eventloop_lag_p99_seconds'),
      serverLoopLagMaxMs: lag('livegen_nodejs_eventloop_lag_max_seconds'),
    };
  } finally {
    for (const c of clients) c.terminate();
    await server.close();
  }
}

export const tail: Benchmark = {
  name: 'tail',
  title: 'control round trip and handshake percentiles (p50/p99/p99.9) while 0, 2 and 4 realtime streams generate (and 4 rendered on the event loop)',
  async run({ quick, log }) {
    const counts = quick ? [0, 2] : [0, 2, 4];
    const pings = quick ? 200 : 2000;
    const handshakes = quick ? 30 : 200;
    const figures: Figure[] = [];
    const steps: TailStep[] = [];
    const largest = counts[counts.length - 1] as number;
    const plan = [...counts.map((n) => ({ n, thread: true })), { n: largest, thread: false }];
    for (const { n, thread } of plan) {
      const s = await measureStep(n, pings, handshakes, thread);
      steps.push(s);
      const label = thread ? `${n} streams` : `${n} streams, frames rendered on the event loop`;
      log(
        `  ${label}: snapshot p50 ${s.roundTrip.p50} / p99 ${s.roundTrip.p99} / p99.9 ${s.roundTrip.p999} / max ${s.roundTrip.max} ms; ` +
          `handshake p50 ${s.handshake.p50} / p99 ${s.handshake.p99} ms; to queue_status p50 ${s.toQueueStatus.p50} / p99 ${s.toQueueStatus.p99} ms; ` +
          `${s.segmentsDuringRun} segments meanwhile; server loop lag p99 ${s.serverLoopLagP99Ms} ms, max ${s.serverLoopLagMaxMs} ms`,
      );
      const at = thread ? `@ ${n} streams` : `@ ${n} streams, no render thread`;
      figures.push(info(`snapshot round trip p50 ${at}`, s.roundTrip.p50, 'ms', `${s.roundTrip.n} pings`));
      figures.push(info(`snapshot round trip p99 ${at}`, s.roundTrip.p99, 'ms'));
      figures.push(info(`snapshot round trip p99.9 ${at}`, s.roundTrip.p999, 'ms', `max ${s.roundTrip.max} ms`));
      figures.push(info(`handshake p50 ${at}`, s.handshake.p50, 'ms', `p99 ${s.handshake.p99} ms, ${s.handshake.n} connections`));
      figures.push(info(`connect → queue_status p50 ${at}`, s.toQueueStatus.p50, 'ms', `p99 ${s.toQueueStatus.p99} ms`));
      figures.push(info(`server loop lag p99 ${at}`, s.serverLoopLagP99Ms ?? Number.NaN, 'ms', `max ${s.serverLoopLagMaxMs} ms`));
    }
    const threaded = steps[counts.length - 1];
    const inline = steps[counts.length];
    if (threaded && inline && largest > 0) {
      figures.push(info(`snapshot p99 @ ${largest} streams, render thread / event loop`, ratio(threaded.roundTrip.p99, inline.roundTrip.p99), 'x'));
      figures.push(info(`snapshot p99.9 @ ${largest} streams, render thread / event loop`, ratio(threaded.roundTrip.p999, inline.roundTrip.p999), 'x'));
      figures.push(info(`handshake p99 @ ${largest} streams, render thread / event loop`, ratio(threaded.handshake.p99, inline.handshake.p99), 'x'));
    }
    return { figures, details: { steps } };
  },
};
