/**
 * Watching a server process through one step of a benchmark: its RSS (before, peak,
 * after a forced GC), its longest event-loop stall, a few Prometheus gauges over time,
 * and the sessions it ended.
 */
import { performance } from 'node:perf_hooks';
import type { Bystander, BystanderWindow } from './bystander.js';
import { sleep } from './client.js';
import { promSample, scrapeMetrics } from './prom.js';
import type { ServerProcess, SessionEnd } from './server-process.js';

const MiB = 1024 * 1024;

export interface WindowFigures {
  /** Peak RSS in the window: the kernel's VmHWM (reset at the start) or the highest 50 ms sample. */
  peakRss: number;
  /** The server's longest event-loop delay in the window, ms (monitorEventLoopDelay, 10 ms resolution). */
  loopMaxMs: number;
  loopP99Ms: number;
  /** Longest single GC pause and all GC pauses in the window, ms (a stall that is a GC pause shows here too). */
  gcMaxMs: number;
  gcTotalMs: number;
  /** The longest stall as a 10 ms interval timer saw it (a second opinion on loopMaxMs), ms. */
  tickGapMaxMs: number;
  /** What the bystander received in the window, when there was one. */
  bystander: BystanderWindow | undefined;
  /** [seconds since the start, RSS MiB], every ~250 ms. */
  rssTimeline: [number, number][];
  seconds: number;
}

export interface OpenWindow {
  /** Seconds since the window opened. */
  elapsed(): number;
  close(): Promise<WindowFigures>;
}

/** RSS after a forced full GC in the server process. */
export async function rssAfterGc(server: ServerProcess): Promise<number> {
  return (await server.probe({ gc: true })).rss;
}

export interface AfterFigures {
  /** Right after the step, after a forced GC of the server's main isolate. */
  rss: number;
  heapUsed: number;
  /** Buffers and other memory outside the JS heap (main isolate). */
  external: number;
  /** `settleMs` later, after another forced GC: what the process gave back by itself meanwhile (worker-thread heaps, allocator). */
  rssSettled: number;
}

export async function measureAfter(server: ServerProcess, settleMs: number): Promise<AfterFigures> {
  const now = await server.probe({ gc: true });
  await sleep(settleMs);
  const later = await server.probe({ gc: true });
  return { rss: now.rss, heapUsed: now.heapUsed, external: now.external, rssSettled: later.rss };
}

/** Starts a measuring window: the loop-delay histogram and peak RSS restart, the bystander's counts too. */
export async function openWindow(server: ServerProcess, bystander: Bystander | undefined): Promise<OpenWindow> {
  await server.probe({ resetLoop: true });
  // The delay histogram records nothing for its first interval after a reset (it has no
  // previous tick yet): let it tick before the step starts, or a block right away is missed.
  await sleep(50);
  const kernelPeak = server.resetPeakRss();
  bystander?.mark();
  const started = performance.now();
  let sampledPeak = server.memory().rss;
  const timeline: [number, number][] = [];
  let lastTimelineAt = -Infinity;
  const timer = setInterval(() => {
    try {
      const { rss } = server.memory();
      sampledPeak = Math.max(sampledPeak, rss);
      const now = performance.now();
      if (now - lastTimelineAt >= 250) {
        lastTimelineAt = now;
        timeline.push([Math.round((now - started) / 100) / 10, Math.round(rss / MiB)]);
      }
    } catch {
      // the process is gone; the window closes with what it has
    }
  }, 50);
  return {
    elapsed: () => (performance.now() - started) / 1000,
    async close() {
      clearInterval(timer);
      const probe = await server.probe();
      const memory = server.memory();
      return {
        peakRss: Math.max(sampledPeak, memory.rss, kernelPeak ? memory.peakRss : 0),
        loopMaxMs: probe.loopMaxMs,
        loopP99Ms: probe.loopP99Ms,
        gcMaxMs: probe.gcMaxMs,
        gcTotalMs: probe.gcTotalMs,
        tickGapMaxMs: probe.tickGapMaxMs,
        bystander: bystander?.read(),
        rssTimeline: timeline,
        seconds: (performance.now() - started) / 1000,
      };
    },
  };
}

/** Collects the server's `session ended` lines until `count` arrived or `timeoutMs` passed. */
export async function collectEnds(server: ServerProcess, count: number, timeoutMs: number, pollMs = 100): Promise<SessionEnd[]> {
  const ends: SessionEnd[] = [];
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    ends.push(...(await server.ends()));
    if (ends.length >= count || performance.now() >= deadline) return ends;
    await sleep(pollMs);
  }
}

/** `performance.now()` here as epoch ms, the clock of `SessionEnd.at`. */
export function epochOf(now: number): number {
  return performance.timeOrigin + now;
}

export interface MetricsSample {
  /** Seconds since polling started. */
  t: number;
  values: Record<string, number | undefined>;
}

/** Scrapes `/metrics` every `intervalMs` (one scrape at a time) and keeps the named samples. */
export class MetricsPoller {
  readonly samples: MetricsSample[] = [];
  private running = true;
  private readonly done: Promise<void>;
  private readonly started = performance.now();

  constructor(
    baseUrl: string,
    private readonly series: Record<string, { name: string; labels?: Record<string, string> }>,
    intervalMs = 200,
  ) {
    this.done = (async () => {
      while (this.running) {
        const at = performance.now();
        try {
          const text = await scrapeMetrics(baseUrl);
          const values: Record<string, number | undefined> = {};
          for (const [key, s] of Object.entries(this.series)) values[key] = promSample(text, s.name, s.labels);
          this.samples.push({ t: (at - this.started) / 1000, values });
        } catch {
          // the server may refuse or drop the scrape under load; the next one tries again
        }
        const wait = intervalMs - (performance.now() - at);
        if (wait > 0) await sleep(wait);
      }
    })();
  }

  async stop(): Promise<MetricsSample[]> {
    this.running = false;
    await this.done;
    return this.samples;
  }

  max(key: string): number {
    let max = Number.NaN;
    for (const s of this.samples) {
      const v = s.values[key];
      if (v !== undefined && !(v <= max)) max = v;
    }
    return max;
  }

  /** Seconds until `key` first reached its highest value (when a counter stopped growing). */
  firstAtMax(key: string): number {
    const max = this.max(key);
    return this.samples.find((s) => s.values[key] === max)?.t ?? Number.NaN;
  }
}
