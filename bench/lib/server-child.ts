/**
 * A livegen server alone in its own process, so a benchmark can read its RSS and CPU
 * without the clients' share. Started by `server-process.ts`; speaks over the IPC channel.
 * argv[2]: the config patch as JSON; argv[3]: options (see ServerProcessOptions).
 */
import { monitorEventLoopDelay, performance, PerformanceObserver } from 'node:perf_hooks';
import { pino, type Logger } from 'pino';
import { fileURLToPath } from 'node:url';
import { chooseEntry } from '../../bin/start.js';
import { benchConfig } from './config.js';
import { PrerenderedGenerator, prerender } from './prerendered.js';

const patch = JSON.parse(process.argv[2] ?? '{}') as Record<string, unknown>;
/**
 * `prerendered`: every worker replays the same pre-rendered frames at realtime pace instead of rendering.
 * `collectEnds`: the server logs at `info` into this process, which keeps every `session ended` line
 * (when, why, in which state) for the benchmark to collect with an `ends` message.
 * `watchLoop`: measure event-loop stalls and GC pauses for `probe` (off: probe reports NaN / 0).
 * `logLevel`: with `collectEnds`, log at this level and echo every line to stderr (for diagnosing a run).
 */
// The server's code as users run it: compiled dist/ when it is fresh (bench/run.ts builds
// what is stale first), the sources otherwise or with LIVEGEN_BENCH_SOURCES=1.
const root = fileURLToPath(new URL('../..', import.meta.url));
const fromSources = process.env.LIVEGEN_BENCH_SOURCES === '1' || chooseEntry(root, {}).kind !== 'dist';
const serverModule = fromSources ? '../../src/server/index.js' : '../../dist/server/index.js';
const { createLivegenServer } = (await import(serverModule)) as typeof import('../../src/server/index.js');

const options = JSON.parse(process.argv[3] ?? '{}') as { prerendered?: boolean; collectEnds?: boolean; watchLoop?: boolean; logLevel?: string };
const config = benchConfig(patch);
let generators: PrerenderedGenerator[] | undefined;
if (options.prerendered) {
  const { width, height, fps } = config.default_request.sampling;
  const frames = await prerender(width, height, fps, 48);
  generators = Array.from({ length: config.pool.workers }, () => new PrerenderedGenerator(frames, 'realtime'));
}

/** One `session ended` log line: epoch ms (performance.timeOrigin + now, comparable across processes). */
interface SessionEnd {
  at: number;
  session: string;
  state: string;
  reason: string | undefined;
}
let ends: SessionEnd[] = [];
function endsLogger(): Logger {
  const echo = options.logLevel !== undefined;
  return pino(
    { level: options.logLevel ?? 'info', base: null, timestamp: pino.stdTimeFunctions.epochTime },
    {
      write(line: string) {
        if (echo) process.stderr.write(line);
        if (!line.includes('"session ended"')) return;
        const entry = JSON.parse(line) as { session: string; state: string; reason?: string };
        ends.push({ at: performance.timeOrigin + performance.now(), session: entry.session, state: entry.state, reason: entry.reason });
      },
    },
  );
}

// The server's own event-loop delay, reset and read by the benchmark through `probe`.
const loopDelay = monitorEventLoopDelay({ resolution: 10 });
let tickGapMaxMs = 0;
let gcMaxMs = 0;
let gcTotalMs = 0;
if (options.watchLoop) {
  loopDelay.enable();
  // A second opinion on the longest stall: the largest gap between two ticks of a 10 ms interval timer.
  let lastTick = performance.now();
  setInterval(() => {
    const now = performance.now();
    tickGapMaxMs = Math.max(tickGapMaxMs, now - lastTick - 10);
    lastTick = now;
  }, 10).unref();
  // GC pauses in the same window, to tell a collector pause from the server's own work.
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      gcMaxMs = Math.max(gcMaxMs, entry.duration);
      gcTotalMs += entry.duration;
    }
  }).observe({ entryTypes: ['gc'] });
}

const logger = options.collectEnds ? endsLogger() : pino({ level: 'silent' });
const server = createLivegenServer(config, { logger, ...(generators ? { generators } : {}) });
const url = await server.listen();
const send = (message: unknown): void => void process.send?.(message);
send({ type: 'ready', url });

interface Request {
  type: string;
  gc?: boolean;
  id?: number;
  /** probe: reset the event-loop delay histogram after reading it. */
  resetLoop?: boolean;
}

function loopFigures(): {
  loopMaxMs: number;
  loopP99Ms: number;
  loopMeanMs: number;
  loopSamples: number;
  gcMaxMs: number;
  gcTotalMs: number;
  tickGapMaxMs: number;
} {
  const ms = (ns: number): number => (Number.isFinite(ns) ? ns / 1e6 : Number.NaN);
  return {
    loopMaxMs: ms(loopDelay.max),
    loopP99Ms: ms(loopDelay.percentile(99)),
    loopMeanMs: ms(loopDelay.mean),
    loopSamples: loopDelay.count,
    gcMaxMs,
    gcTotalMs,
    tickGapMaxMs,
  };
}

function resetLoopFigures(): void {
  loopDelay.reset();
  gcMaxMs = 0;
  gcTotalMs = 0;
  tickGapMaxMs = 0;
}

process.on('message', async (message: Request) => {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (message.type === 'stats') {
    if (message.gc && gc) gc();
    const mem = process.memoryUsage();
    const cpu = process.cpuUsage();
    const snapshot = await server.inspect();
    send({
      type: 'stats',
      id: message.id,
      rss: mem.rss,
      heapUsed: mem.heapUsed,
      heapTotal: mem.heapTotal,
      external: mem.external,
      arrayBuffers: mem.arrayBuffers,
      cpuUserUs: cpu.user,
      cpuSystemUs: cpu.system,
      sessions: snapshot.sessions.length,
      queueDepth: snapshot.queueDepth,
    });
  } else if (message.type === 'probe') {
    // Cheap (no per-session work): memory, CPU and the event-loop delay since the last reset.
    if (message.gc && gc) gc();
    const mem = process.memoryUsage();
    const cpu = process.cpuUsage();
    const loop = loopFigures();
    if (message.resetLoop) resetLoopFigures();
    send({
      type: 'probe',
      id: message.id,
      rss: mem.rss,
      heapUsed: mem.heapUsed,
      external: mem.external,
      arrayBuffers: mem.arrayBuffers,
      cpuUserUs: cpu.user,
      cpuSystemUs: cpu.system,
      ...loop,
    });
  } else if (message.type === 'ends') {
    const taken = ends;
    ends = [];
    send({ type: 'ends', id: message.id, ends: taken });
  } else if (message.type === 'close') {
    void server.close().finally(() => process.exit(0));
  }
});
process.on('disconnect', () => process.exit(0));
