/**
 * 6. Hostile clients: what they cost the server in memory and event-loop time, and
 * whether a normal session kept streaming meanwhile. The server runs in its own process
 * (RSS read from /proc, its event-loop delay from a `monitorEventLoopDelay` histogram
 * reset per step); the clients run here. Every scenario starts a fresh server with one
 * worker held by a bystander: a well-behaved session with loop generation on (2-second
 * segments of pre-rendered frames replayed at realtime pace), whose completed segments,
 * media frames and longest gap between media frames are counted per step.
 *
 *   1. snapshot-flood  K clients open with a ~6 MiB continuation state, stop reading and
 *                      send N `snapshot_state` frames each (every reply carries the state
 *                      twice).
 *   2. invalid-flood   one client that does not read sends 1,000,000 `{}` frames.
 *   3. ping-flood      one client that does not read sends 500,000 pings (and a pong now
 *                      and then, so heartbeats do not end it).
 *   4. big-init        4 clients send a maximal opening frame (32 MiB PNG as base64) at
 *                      once; then one sends 10 MiB of `curated_prompts: [1,1,...]`.
 *   5. mass-leave      10,000 queued sessions close at once.
 *   6. pre-init-hold   max_pending_inits connections never send an init; then a normal
 *                      client arrives.
 *
 * Figures are reported, never asserted: each scenario prints one line comparing its
 * longest stall with the 100 ms target and its RSS growth with the per-client formula
 * of docs/operations.md.
 */
import { performance } from 'node:perf_hooks';
import { crc32 } from 'node:zlib';
import { encodeServerMessage, snapshotMessage } from '../src/protocol/index.js';
import { mergeConfigInput } from '../src/server/index.js';
import { Bystander, type BystanderWindow } from './lib/bystander.js';
import { BenchClient, inBatches, sleep } from './lib/client.js';
import { syntheticContinuation } from './lib/continuation.js';
import { startHealthProber } from './lib/health-prober.js';
import { frame, Opcode, RawSocket, repeated } from './lib/raw-socket.js';
import { atMost, formatTable, info, type Benchmark, type Figure } from './lib/report.js';
import { collectEnds, epochOf, measureAfter, MetricsPoller, openWindow, rssAfterGc, type AfterFigures, type WindowFigures } from './lib/server-watch.js';
import { startServerProcess, type ServerProcess, type SessionEnd } from './lib/server-process.js';
import { quantile, round } from './lib/stats.js';

const MiB = 1024 * 1024;
const STALL_TARGET_MS = 100;
/** Server defaults (src/server/config.ts) the formulas refer to. */
const HIGH_WATER = 8 * MiB;
const HARD_LIMIT = 32 * MiB;
const INIT_BYTES_IN_FLIGHT = 256 * MiB;

/** The memory bound docs/operations.md states for opening frames in flight. */
function formulaMiB(frameMiB: number): number {
  return 2 * mib(INIT_BYTES_IN_FLIGHT) + 4 * frameMiB;
}
const MAX_STATE_BYTES = 8 * MiB;

interface Options {
  quick: boolean;
  log: (line: string) => void;
}

/** Config every scenario starts from: 2-second segments, no segment cap, long session and queue timeouts. */
function basePatch(quick: boolean): Record<string, unknown> {
  return {
    default_request: { sampling: { num_frames: 48 } },
    streaming: { generation_segment_cap: 1_000_000, session_timeout_seconds: 600, queue_timeout_seconds: 600 },
    // --quick shortens the waits so a smoke run stays short; a full run keeps the defaults.
    limits: quick ? { client_stall_timeout_seconds: 2, init_timeout_seconds: 2 } : {},
  };
}

const stallSeconds = (quick: boolean): number => (quick ? 2 : 20);
/** How long after a step the server is left alone before its RSS is read once more ("settled"). */
let settleMs = 5000;
const initTimeoutSeconds = (quick: boolean): number => (quick ? 2 : 10);

async function withServer<T>(
  quick: boolean,
  patch: Record<string, unknown>,
  body: (server: ServerProcess, bystander: Bystander) => Promise<T>,
): Promise<T> {
  const server = await startServerProcess(mergeConfigInput(basePatch(quick), patch), { prerendered: true, collectEnds: true, watchLoop: true, ...(process.env.HOSTILE_SERVER_LOG ? { logLevel: process.env.HOSTILE_SERVER_LOG } : {}), ...(process.env.HOSTILE_NODE_ARGS ? { nodeArgs: process.env.HOSTILE_NODE_ARGS.split(' ').filter(Boolean) } : {}) });
  let bystander: Bystander | undefined;
  try {
    bystander = await Bystander.start(server.wsUrl);
    await sleep(500);
    await server.ends(); // nothing before the scenario counts
    return await body(server, bystander);
  } finally {
    bystander?.close();
    await server.close();
  }
}

const mib = (bytes: number): number => round(bytes / MiB);

/** The figures every step reports. */
interface StepFigures {
  rssBeforeMiB: number;
  rssPeakMiB: number;
  /** After the step, after a forced GC, and the main isolate's heap and external memory then. */
  rssAfterMiB: number;
  heapAfterMiB: number;
  externalAfterMiB: number;
  /** A few seconds later (SETTLE_MS), after another GC. */
  rssSettledMiB: number;
  loopMaxMs: number;
  /** The same, seen by a 10 ms interval timer in the server. */
  tickGapMaxMs: number;
  /** The longest stall: the larger of the two. */
  stallMs: number;
  loopP99Ms: number;
  /** Longest GC pause and total GC time in the window, ms. */
  gcMaxMs: number;
  gcTotalMs: number;
  bystander: BystanderWindow | undefined;
  rssTimeline: [number, number][];
}

function stepFigures(before: number, w: WindowFigures, after: AfterFigures): StepFigures {
  return {
    rssBeforeMiB: mib(before),
    rssPeakMiB: mib(w.peakRss),
    rssAfterMiB: mib(after.rss),
    heapAfterMiB: mib(after.heapUsed),
    externalAfterMiB: mib(after.external),
    rssSettledMiB: mib(after.rssSettled),
    loopMaxMs: round(w.loopMaxMs),
    tickGapMaxMs: round(w.tickGapMaxMs),
    stallMs: round(Math.max(w.loopMaxMs, w.tickGapMaxMs)),
    loopP99Ms: round(w.loopP99Ms),
    gcMaxMs: round(w.gcMaxMs),
    gcTotalMs: round(w.gcTotalMs),
    bystander: w.bystander && { ...w.bystander, seconds: round(w.bystander.seconds), maxMediaGapMs: round(w.bystander.maxMediaGapMs) },
    rssTimeline: w.rssTimeline,
  };
}

/** RSS before → peak → after GC (main heap, external) → settled, for log lines. */
function rssText(s: StepFigures): string {
  return `RSS ${s.rssBeforeMiB} → peak ${s.rssPeakMiB} → ${s.rssAfterMiB} MiB after GC (main heap ${s.heapAfterMiB}, external ${s.externalAfterMiB}) → ${s.rssSettledMiB} MiB ${settleMs / 1000} s later`;
}

/** The same for table notes. */
function rssNote(s: StepFigures): string {
  return `${s.rssBeforeMiB} → ${s.rssPeakMiB} → ${s.rssAfterMiB} (GC) → ${s.rssSettledMiB} (settled)`;
}

function describeBystander(b: BystanderWindow | undefined): string {
  if (!b) return 'no bystander';
  const expected = Math.floor(b.seconds / 2);
  return `bystander ${b.open ? 'streaming' : 'CLOSED'}: ${b.segmentsCompleted} segments in ${round(b.seconds)} s (~${expected} at realtime), ${b.mediaFrames} media frames, longest media gap ${round(b.maxMediaGapMs)} ms${b.errors.length ? `, errors ${b.errors.join(',')}` : ''}`;
}

function stallVerdict(s: Pick<StepFigures, 'stallMs' | 'loopMaxMs' | 'tickGapMaxMs' | 'gcMaxMs'>, extraMs = 0): string {
  const ms = Math.max(s.stallMs, extraMs);
  return (
    `max stall ${round(ms)} ms vs target ${STALL_TARGET_MS} ms: ${ms <= STALL_TARGET_MS ? 'met' : 'MISSED'} ` +
    `(loop-delay histogram ${s.loopMaxMs} ms, 10 ms interval timer ${s.tickGapMaxMs} ms, longest GC pause ${s.gcMaxMs} ms)`
  );
}

function reasons(ends: SessionEnd[]): string {
  const counts = new Map<string, number>();
  for (const e of ends) counts.set(e.reason ?? '?', (counts.get(e.reason ?? '?') ?? 0) + 1);
  return [...counts].map(([r, n]) => `${n} ${r}`).join(', ') || 'none';
}

function bystanderFigures(label: string, b: BystanderWindow | undefined): Figure[] {
  if (!b) return [];
  return [info(`${label}: bystander segments`, b.segmentsCompleted, 'segments', `${round(b.seconds)} s window, longest media gap ${round(b.maxMediaGapMs)} ms, ${b.open ? 'open' : 'CLOSED'}`)];
}

// ------------------------------------------------------------------ 1. snapshot-flood

interface SnapshotStep extends StepFigures {
  clients: number;
  frames: number;
  stateBytes: number;
  accepted: number;
  initSeconds: number;
  initLoopMaxMs: number;
  initGcMaxMs: number;
  rssAfterInitMiB: number;
  /** (peak during the flood − after init) / clients. */
  floodGrowthPerClientMiB: number;
  /** (after init − before) / clients: holding the state. */
  stateGrowthPerClientMiB: number;
  maxSendQueueMiB: number;
  ended: number;
  endReasons: string;
  /** Seconds from the flood's start to the session's end, median and max over clients. */
  closedAfterP50S: number;
  closedAfterMaxS: number;
}

/** A valid synthetic state with `padBytes` of extra payload (the generator ignores unknown fields). */
function bigState(padBytes: number): { kind: string; payload: Record<string, unknown> } {
  const state = syntheticContinuation('hostile snapshot flood');
  state.payload.padding = 'x'.repeat(padBytes);
  return state;
}

async function snapshotStep(server: ServerProcess, bystander: Bystander, k: number, n: number, quick: boolean, log: Options['log']): Promise<SnapshotStep> {
  const state = bigState(6 * MiB);
  const stateBytes = Buffer.byteLength(JSON.stringify(state));
  const initFrame = frame(Opcode.TEXT, JSON.stringify({ type: 'session_init_v2', client_id: 'hostile-snapshot', continuation_state: state }), true);
  // The first large opening frame grows the parser thread's heap once (~30 MB); that is not per client.
  const warm = await RawSocket.open(server.wsUrl);
  await warm.write(initFrame);
  await warm.next('queue_status', 60_000);
  warm.destroy();
  await collectEnds(server, 1, 10_000);
  await sleep(300);
  const before = await rssAfterGc(server);
  const initWindow = await openWindow(server, undefined);
  const clients: RawSocket[] = [];
  let accepted = 0;
  const refusals: string[] = [];
  await inBatches(
    Array.from({ length: k }, (_, i) => i),
    8,
    async () => {
      const c = await RawSocket.open(server.wsUrl);
      clients.push(c);
      await c.write(initFrame);
      try {
        await c.next('queue_status', 60_000);
        accepted += 1;
      } catch (err) {
        const error = c.messages.find((m) => m.message.type === 'error');
        refusals.push(String(error?.message.message ?? (err as Error).message));
      }
      c.stopReading();
    },
  );
  const init = await initWindow.close();
  if (refusals.length) log(`    refused: ${refusals.slice(0, 3).join(' | ')}`);
  const afterInit = await rssAfterGc(server);

  const window = await openWindow(server, bystander);
  const poller = new MetricsPoller(server.url, { sendQueueBytes: { name: 'livegen_send_queue_bytes' } }, 250);
  // An unsolicited pong first (heartbeats), then the burst.
  const burst = Buffer.concat([frame(Opcode.PONG), repeated(frame(Opcode.TEXT, '{"type":"snapshot_state"}'), n)]);
  const floodStart = performance.now();
  for (const c of clients) void c.write(burst);
  const ends = await collectEnds(server, accepted, (stallSeconds(quick) + 15) * 1000);
  await sleep(1500); // a client that does not read is dropped 1 s after its close frame
  const samples = await poller.stop();
  const w = await window.close();
  for (const c of clients) c.destroy();
  await sleep(500);
  const after = await measureAfter(server, settleMs);
  await collectEnds(server, 0, 0); // drain
  const closedAfter = ends.map((e) => (e.at - epochOf(floodStart)) / 1000);
  return {
    clients: k,
    frames: n,
    stateBytes,
    accepted,
    initSeconds: round(init.seconds),
    initLoopMaxMs: round(Math.max(init.loopMaxMs, init.tickGapMaxMs)),
    initGcMaxMs: round(init.gcMaxMs),
    rssAfterInitMiB: mib(afterInit),
    stateGrowthPerClientMiB: round((afterInit - before) / MiB / k),
    floodGrowthPerClientMiB: round((w.peakRss - afterInit) / MiB / k),
    maxSendQueueMiB: round(Math.max(0, ...samples.map((s) => s.values.sendQueueBytes ?? 0)) / MiB),
    ended: ends.length,
    endReasons: reasons(ends),
    closedAfterP50S: round(quantile(closedAfter, 0.5)),
    closedAfterMaxS: round(closedAfter.length ? Math.max(...closedAfter) : Number.NaN),
    ...stepFigures(before, w, after),
  };
}

/** A client that does read, asking for the same ~12 MiB snapshot N times in a row: what each answer costs the event loop. */
interface SnapshotReaderStep extends StepFigures {
  frames: number;
  replyBytes: number;
  repliesReceived: number;
  seconds: number;
  /** Server CPU (user + system) over the step, % of one core. */
  serverCpuPct: number;
}

async function snapshotReaderStep(server: ServerProcess, bystander: Bystander, n: number): Promise<SnapshotReaderStep> {
  const state = bigState(6 * MiB);
  const replyBytes = Buffer.byteLength(encodeServerMessage(snapshotMessage(state)));
  const before = await rssAfterGc(server);
  const c = await RawSocket.open(server.wsUrl);
  await c.write(frame(Opcode.TEXT, JSON.stringify({ type: 'session_init_v2', client_id: 'hostile-snapshot-reader', continuation_state: state }), true));
  await c.next('queue_status', 60_000);
  c.discardIncoming();
  const window = await openWindow(server, bystander);
  const cpuFrom = await server.probe();
  const started = performance.now();
  void c.write(repeated(frame(Opcode.TEXT, '{"type":"snapshot_state"}'), n));
  const deadline = started + 120_000;
  while (c.bytesRead < n * replyBytes && !c.isClosed && performance.now() < deadline) await sleep(20);
  const seconds = (performance.now() - started) / 1000;
  const cpuTo = await server.probe();
  const w = await window.close();
  c.destroy();
  await sleep(500);
  const after = await measureAfter(server, settleMs);
  const cpuUs = cpuTo.cpuUserUs + cpuTo.cpuSystemUs - cpuFrom.cpuUserUs - cpuFrom.cpuSystemUs;
  return {
    frames: n,
    replyBytes,
    repliesReceived: round(c.bytesRead / replyBytes),
    seconds: round(seconds),
    serverCpuPct: round(cpuUs / 1e4 / seconds),
    ...stepFigures(before, w, after),
  };
}

async function snapshotFlood({ quick, log }: Options): Promise<{ figures: Figure[]; details: unknown }> {
  const plan = quick
    ? [
        { k: 1, n: 48 },
        { k: 1, n: 3000 },
        { k: 4, n: 3000 },
      ]
    : [
        { k: 1, n: 48 },
        { k: 1, n: 3000 },
        { k: 8, n: 3000 },
        { k: 32, n: 3000 },
      ];
  const steps: SnapshotStep[] = [];
  for (const { k, n } of plan) {
    const step = await withServer(quick, {}, (server, bystander) => snapshotStep(server, bystander, k, n, quick, log));
    steps.push(step);
    log(
      `  K=${k} N=${n}: state ${mib(step.stateBytes)} MiB accepted ${step.accepted}/${k} (init ${step.initSeconds} s, loop max ${step.initLoopMaxMs} ms); ` +
        `after init ${step.rssAfterInitMiB} MiB; ${rssText(step)}; ` +
        `per client: state ${step.stateGrowthPerClientMiB} MiB + flood ${step.floodGrowthPerClientMiB} MiB; send queue max ${step.maxSendQueueMiB} MiB; ` +
        `ended ${step.ended} (${step.endReasons}) after ${step.closedAfterP50S} s (max ${step.closedAfterMaxS} s)`,
    );
    log(`    ${describeBystander(step.bystander)}`);
    const perClient = step.stateGrowthPerClientMiB + step.floodGrowthPerClientMiB;
    log(
      `    → ${stallVerdict(step, step.initLoopMaxMs)}; RSS growth ${round(perClient)} MiB/client vs formula: state (≤ ${mib(MAX_STATE_BYTES)} MiB) + backlog (high watermark ${mib(HIGH_WATER)} MiB + one reply, hard limit ${mib(HARD_LIMIT)} MiB) = ≤ ${mib(MAX_STATE_BYTES + HARD_LIMIT)} MiB/client: ${perClient <= mib(MAX_STATE_BYTES + HARD_LIMIT) ? 'within' : 'OVER'}`,
    );
  }
  const readerN = quick ? 16 : 48;
  const reader = await withServer(quick, {}, (server, bystander) => snapshotReaderStep(server, bystander, readerN));
  log(
    `  a reading client, N=${reader.frames}: ${reader.repliesReceived} replies of ${mib(reader.replyBytes)} MiB in ${reader.seconds} s ` +
      `(${round((reader.seconds * 1000) / Math.max(1, reader.repliesReceived))} ms each, server CPU ${reader.serverCpuPct} % of a core); loop p99 ${reader.loopP99Ms} ms; ` +
      rssText(reader),
  );
  log(`    ${describeBystander(reader.bystander)}`);
  log(`    → ${stallVerdict(reader)}`);
  const figures: Figure[] = [];
  figures.push(atMost(`snapshot reader N=${reader.frames}: max stall`, reader.stallMs, 'ms', STALL_TARGET_MS, `p99 ${reader.loopP99Ms} ms, ${reader.repliesReceived} replies in ${reader.seconds} s`));
  figures.push(...bystanderFigures(`snapshot reader N=${reader.frames}`, reader.bystander));
  for (const s of steps) {
    const label = `snapshot K=${s.clients} N=${s.frames}`;
    figures.push(atMost(`${label}: max stall`, Math.max(s.stallMs, s.initLoopMaxMs), 'ms', STALL_TARGET_MS, `init ${s.initLoopMaxMs} ms, flood ${s.stallMs} ms`));
    figures.push(info(`${label}: RSS before/peak/after`, s.rssPeakMiB, 'MiB', `${s.rssAfterInitMiB} after init; ${rssNote(s)}`));
    figures.push(info(`${label}: RSS growth per client`, round(s.stateGrowthPerClientMiB + s.floodGrowthPerClientMiB), 'MiB', `state ${s.stateGrowthPerClientMiB} + flood ${s.floodGrowthPerClientMiB}; hard limit ${mib(HARD_LIMIT)}`));
    figures.push(info(`${label}: closed`, s.closedAfterMaxS, 's', `${s.ended}/${s.accepted} ended (${s.endReasons})`));
    figures.push(...bystanderFigures(label, s.bystander));
  }
  return { figures, details: { steps, reader } };
}

// --------------------------------------------------- 2./3. invalid-flood and ping-flood

interface FloodStep extends StepFigures {
  kind: 'invalid' | 'ping';
  frames: number;
  /** Frames the client's socket took (the rest was never written: the server stopped reading). */
  framesWritten: number;
  writeSeconds: number;
  /** Error replies the server generated (invalid-flood). */
  replies: number;
  /** Seconds until the reply counter stopped growing (reading paused), from the flood's start; 250 ms resolution. */
  pausedAfterS: number;
  maxSendQueueMiB: number;
  maxSendQueueFrames: number;
  /** [seconds, send queue bytes, error replies so far] every 250 ms. */
  sendQueueTimeline: [number, number, number][];
  ended: boolean;
  endReason: string;
  closedAfterS: number;
  /** Server CPU (user + system) over the step, % of one core (the bystander's share included). */
  serverCpuPct: number;
}

async function floodStep(server: ServerProcess, bystander: Bystander, kind: 'invalid' | 'ping', total: number, holdS: number): Promise<FloodStep> {
  const before = await rssAfterGc(server);
  const c = await RawSocket.open(server.wsUrl);
  await c.sendText(JSON.stringify({ type: 'session_init_v2', client_id: `hostile-${kind}` }));
  await c.next('queue_status', 30_000);
  c.stopReading();
  const window = await openWindow(server, bystander);
  const cpuFrom = await server.probe();
  const poller = new MetricsPoller(
    server.url,
    {
      replies: { name: 'livegen_errors_total', labels: { code: 'invalid_message' } },
      sendQueueBytes: { name: 'livegen_send_queue_bytes' },
      sendQueueFrames: { name: 'livegen_send_queue_frames' },
    },
    250,
  );
  const perChunk = 10_000;
  // Each chunk starts with an unsolicited pong, so the heartbeat never counts the client dead.
  const one = kind === 'invalid' ? frame(Opcode.TEXT, '{}') : frame(Opcode.PING);
  const chunk = Buffer.concat([frame(Opcode.PONG), repeated(one, perChunk)]);
  const floodStart = performance.now();
  let framesWritten = 0;
  let writeSeconds = Number.NaN;
  const writer = (async () => {
    for (let sent = 0; sent < total; sent += perChunk) {
      if (!(await c.write(chunk))) return;
      framesWritten += perChunk;
    }
    writeSeconds = (performance.now() - floodStart) / 1000;
  })();
  const ends = await collectEnds(server, 1, holdS * 1000);
  if (ends.length) await sleep(1500);
  const samples = await poller.stop();
  const cpuTo = await server.probe();
  const w = await window.close();
  c.destroy();
  await writer;
  await sleep(500);
  const after = await measureAfter(server, settleMs);
  const replies = poller.max('replies');
  return {
    kind,
    frames: total,
    framesWritten,
    writeSeconds: round(writeSeconds),
    replies: Number.isFinite(replies) ? replies : 0,
    pausedAfterS: kind === 'invalid' ? round(poller.firstAtMax('replies')) : Number.NaN,
    maxSendQueueMiB: round(poller.max('sendQueueBytes') / MiB),
    maxSendQueueFrames: poller.max('sendQueueFrames'),
    ended: ends.length > 0,
    endReason: reasons(ends),
    closedAfterS: ends[0] ? round((ends[0].at - epochOf(floodStart)) / 1000) : Number.NaN,
    serverCpuPct: round((cpuTo.cpuUserUs + cpuTo.cpuSystemUs - cpuFrom.cpuUserUs - cpuFrom.cpuSystemUs) / 1e4 / w.seconds),
    ...stepFigures(before, w, after),
    sendQueueTimeline: samples.map((x) => [round(x.t), x.values.sendQueueBytes ?? Number.NaN, x.values.replies ?? Number.NaN]),
  };
}

function floodReport(s: FloodStep, log: Options['log']): Figure[] {
  const growth = s.rssPeakMiB - s.rssBeforeMiB;
  log(
    `  ${s.kind}-flood: ${s.framesWritten}/${s.frames} frames written${Number.isFinite(s.writeSeconds) ? ` in ${s.writeSeconds} s` : ' (the rest never left the client)'}; ` +
      `${s.kind === 'invalid' ? `${s.replies} error replies, the last one ~${s.pausedAfterS} s after the start (reading paused or flood consumed); ` : ''}` +
      `send queue max ${s.maxSendQueueMiB} MiB / ${s.maxSendQueueFrames} frames; server CPU ${s.serverCpuPct} % of a core; ` +
      `${rssText(s)}; ` +
      `${s.ended ? `closed (${s.endReason}) after ${s.closedAfterS} s` : 'NOT closed'}`,
  );
  log(`    ${describeBystander(s.bystander)}`);
  log(
    `    → ${stallVerdict(s)}; RSS growth ${round(growth)} MiB for 1 client vs formula: high watermark ${mib(HIGH_WATER)} MiB (hard limit ${mib(HARD_LIMIT)} MiB) per client: ${growth <= mib(HIGH_WATER) ? 'within the high watermark' : growth <= mib(HARD_LIMIT) ? 'within the hard limit' : 'OVER the hard limit'}`,
  );
  const label = `${s.kind}-flood ${s.frames}`;
  return [
    atMost(`${label}: max stall`, s.stallMs, 'ms', STALL_TARGET_MS, `p99 ${s.loopP99Ms} ms`),
    info(`${label}: RSS growth`, round(growth), 'MiB', `${rssNote(s)}; high watermark ${mib(HIGH_WATER)}`),
    info(`${label}: closed after`, s.closedAfterS, 's', s.ended ? s.endReason : `NOT closed within the hold; ${s.framesWritten} frames written`),
    ...(s.kind === 'invalid' ? [info(`${label}: replies stopped after`, s.pausedAfterS, 's', `${s.replies} replies generated (reading paused, or the flood consumed)`)] : []),
    info(`${label}: send queue max`, s.maxSendQueueMiB, 'MiB', `${s.maxSendQueueFrames} frames`),
    ...bystanderFigures(label, s.bystander),
  ];
}

async function invalidFlood({ quick, log }: Options): Promise<{ figures: Figure[]; details: unknown }> {
  const total = quick ? 100_000 : 1_000_000;
  const step = await withServer(quick, {}, (server, bystander) => floodStep(server, bystander, 'invalid', total, stallSeconds(quick) + 15));
  return { figures: floodReport(step, log), details: { step } };
}

async function pingFlood({ quick, log }: Options): Promise<{ figures: Figure[]; details: unknown }> {
  const total = quick ? 50_000 : 500_000;
  const step = await withServer(quick, {}, (server, bystander) => floodStep(server, bystander, 'ping', total, stallSeconds(quick) + 5));
  return { figures: floodReport(step, log), details: { step } };
}

// ------------------------------------------------------------------------ 4. big-init

/** A valid PNG header (IHDR 4096x4096 RGB) followed by zeros up to `bytes`. */
function paddedPng(bytes: number): Buffer {
  const png = Buffer.alloc(bytes);
  Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]).copy(png, 0);
  png.writeUInt32BE(13, 8);
  png.write('IHDR', 12, 'latin1');
  png.writeUInt32BE(4096, 16);
  png.writeUInt32BE(4096, 20);
  png[24] = 8; // bit depth
  png[25] = 2; // truecolour
  png.writeUInt32BE(crc32(png.subarray(12, 29)), 29);
  return png;
}

interface BigInitStep extends StepFigures {
  what: string;
  mode: 'together' | 'one after another';
  clients: number;
  /** How the server ended these sessions (they leave once answered: `left`; `timeout` = timed out before its init was applied). */
  endReasons: string;
  frameMiB: number;
  /** Per client: seconds from the first byte sent to the answer. */
  answerSeconds: number[];
  outcomes: string[];
}

async function bigInitStep(
  server: ServerProcess,
  bystander: Bystander,
  what: string,
  clients: number,
  text: Buffer,
  mode: 'together' | 'one after another',
): Promise<BigInitStep> {
  // One masked frame shared by every client (masked as a browser masks: the server unmasks it).
  const wire = frame(Opcode.TEXT, text, true);
  const before = await rssAfterGc(server);
  const sockets = await Promise.all(Array.from({ length: clients }, () => RawSocket.open(server.wsUrl)));
  const window = await openWindow(server, bystander);
  const answerTypes = new Set(['queue_status', 'error', 'session_timeout']);
  const answer = async (c: RawSocket, sent: number): Promise<{ seconds: number; outcome: string }> => {
    const first = () => c.messages.find((m) => answerTypes.has(String(m.message.type)));
    await c.until(() => first() !== undefined || c.isClosed, 'an answer', 180_000).catch(() => undefined);
    const reply = first();
    if (!reply) return { seconds: Number.NaN, outcome: c.isClosed ? 'closed without an answer' : 'no answer' };
    const m = reply.message;
    const outcome = m.type === 'error' ? `error ${String(m.code)}: ${String(m.message).slice(0, 70)}` : String(m.type);
    return { seconds: (reply.at - sent) / 1000, outcome };
  };
  let answers: { seconds: number; outcome: string }[];
  if (mode === 'together') {
    answers = await Promise.all(
      sockets.map((c) => {
        const sent = performance.now();
        void c.write(wire);
        return answer(c, sent);
      }),
    );
  } else {
    // Each client starts once the previous one's frame has left (the socket took it all).
    const pending: Promise<{ seconds: number; outcome: string }>[] = [];
    for (const c of sockets) {
      const sent = performance.now();
      const written = c.write(wire);
      pending.push(answer(c, sent));
      await written;
    }
    answers = await Promise.all(pending);
  }
  // Refused ones are closed by the server; wait for that, then the admitted ones leave.
  await Promise.race([Promise.all(sockets.filter((c) => c.closeFrameAt !== undefined).map((c) => c.closed)), sleep(3000)]);
  const w = await window.close();
  for (const c of sockets) c.destroy();
  const ends = await collectEnds(server, clients, 10_000);
  await sleep(500);
  const after = await measureAfter(server, settleMs);
  return {
    what,
    mode,
    clients,
    frameMiB: round(wire.length / MiB),
    answerSeconds: answers.map((a) => round(a.seconds)),
    outcomes: answers.map((a, i) => `${a.outcome}${sockets[i]?.closeCode ? ` (close ${sockets[i]?.closeCode})` : ''}`),
    endReasons: reasons(ends),
    ...stepFigures(before, w, after),
  };
}

async function bigInit({ quick, log }: Options): Promise<{ figures: Figure[]; details: unknown }> {
  const png = paddedPng(32 * MiB);
  const imageInit = Buffer.concat([
    Buffer.from('{"type":"session_init_v2","client_id":"hostile-big-init","initial_image":{"mime":"image/png","data":"'),
    Buffer.from(png.toString('base64')),
    Buffer.from('"}}'),
  ]);
  // Valid JSON of ~10 MiB: 5 million array elements, far past the opening frame's token bound.
  const bombHead = '{"type":"session_init_v2","curated_prompts":[';
  const tokenBomb = Buffer.from(`${bombHead}${'1,'.repeat(Math.floor((10 * MiB - bombHead.length - 3) / 2))}1]}`);
  // The default init timeout even in --quick: large inits take seconds to arrive and parse here.
  const steps = await withServer(quick, { limits: { init_timeout_seconds: 10 } }, async (server, bystander) => {
    const images = await bigInitStep(server, bystander, '32 MiB PNG inits', quick ? 2 : 4, imageInit, 'together');
    await sleep(500);
    const bomb = await bigInitStep(server, bystander, '10 MiB curated_prompts [1,1,...]', 1, tokenBomb, 'together');
    await sleep(500);
    const serial = await bigInitStep(server, bystander, '32 MiB PNG inits', quick ? 3 : 12, imageInit, 'one after another');
    return [images, bomb, serial];
  });
  const figures: Figure[] = [];
  for (const s of steps) {
    const growth = s.rssPeakMiB - s.rssBeforeMiB;
    const answered = s.answerSeconds.filter(Number.isFinite);
    log(
      `  ${s.clients} x ${s.what}, ${s.mode} (${s.frameMiB} MiB frames): answers after ${s.answerSeconds.join(', ')} s (${[...new Set(s.outcomes)].join('; ')}; server: ${s.endReasons}); ` +
        rssText(s),
    );
    log(`    ${describeBystander(s.bystander)}`);
    log(
      `    → ${stallVerdict(s)} (frames over 256 KiB are parsed in a worker thread; receiving one is not); ` +
        // docs/operations.md: receiving takes about twice the bytes in flight (ws reassembles a
        // frame), and the parser thread holds about four times the one frame it parses.
        `RSS growth ${round(growth)} MiB vs 2 x init_bytes_in_flight + 4 x one frame = ${round(formulaMiB(s.frameMiB))} MiB: ${growth <= formulaMiB(s.frameMiB) ? 'within' : 'OVER'}`,
    );
    const label = `big-init ${s.clients} x ${s.frameMiB} MiB ${s.clients === 1 ? 'token bomb' : s.mode}`;
    figures.push(atMost(`${label}: max stall`, s.stallMs, 'ms', STALL_TARGET_MS, `p99 ${s.loopP99Ms} ms, longest GC ${s.gcMaxMs} ms`));
    figures.push(info(`${label}: RSS growth`, round(growth), 'MiB', `${rssNote(s)}; init_bytes_in_flight ${mib(INIT_BYTES_IN_FLIGHT)}`));
    figures.push(
      info(`${label}: slowest answer`, answered.length ? Math.max(...answered) : Number.NaN, 's', [...new Set(s.outcomes)].join('; ').slice(0, 110)),
    );
    figures.push(...bystanderFigures(label, s.bystander));
  }
  return { figures, details: { steps } };
}

// ---------------------------------------------------------------------- 5. mass-leave

interface MassLeaveStep extends StepFigures {
  sessions: number;
  queued: number;
  how: 'close' | 'terminate';
  connectSeconds: number;
  ended: number;
  /** Seconds from the start of the burst to the last session's end. */
  allEndedAfterS: number;
  /** The first /health request sent after the burst started: ms from the burst start to its answer. */
  firstHealthAfterMs: number;
  healthDuringBurst: { n: number; p50Ms: number; maxMs: number; failed: number };
  fdsBefore: number;
  fdsAfter: number;
}

async function massLeaveStep(server: ServerProcess, bystander: Bystander, n: number, how: 'close' | 'terminate', log: Options['log']): Promise<MassLeaveStep> {
  const clients: BenchClient[] = [];
  const started = performance.now();
  let queued = 0;
  await inBatches(
    Array.from({ length: n }, (_, i) => i),
    128,
    async (i) => {
      let c: BenchClient;
      try {
        c = await BenchClient.connect(server.wsUrl);
      } catch {
        return;
      }
      clients.push(c);
      const answer = c.next('queue_status', 60_000);
      c.send({ type: 'session_init_v2', client_id: `bench-leave-${i}` });
      try {
        await answer;
        queued += 1;
      } catch {
        // counted as not queued
      }
    },
  );
  const connectSeconds = (performance.now() - started) / 1000;
  log(`    ${queued}/${n} queued in ${round(connectSeconds)} s`);
  const prober = await startHealthProber(server.url, 10);
  try {
    await sleep(1000);
    const before = await rssAfterGc(server);
    const fdsBefore = server.openFds();
    await collectEnds(server, 0, 0);
    const window = await openWindow(server, bystander);
    await prober.start();
    await sleep(300);
    const burstStart = performance.now();
    for (const c of clients) {
      if (how === 'close') c.close();
      else c.terminate();
    }
    const ends = await collectEnds(server, clients.length, 60_000, 50);
    await sleep(500);
    const samples = await prober.stop();
    const w = await window.close();
    const fdsAfter = server.openFds();
    const after = await measureAfter(server, settleMs);
    const burstEpoch = epochOf(burstStart);
    const lastEnd = ends.length ? Math.max(...ends.map((e) => e.at)) : Number.NaN;
    const during = samples.filter((s) => s.sentAt >= burstEpoch && s.sentAt <= lastEnd);
    const first = samples.find((s) => s.sentAt >= burstEpoch);
    return {
      sessions: n,
      queued,
      how,
      connectSeconds: round(connectSeconds),
      ended: ends.length,
      allEndedAfterS: round((lastEnd - burstEpoch) / 1000),
      firstHealthAfterMs: first ? round(first.sentAt + first.latencyMs - burstEpoch) : Number.NaN,
      healthDuringBurst: {
        n: during.length,
        p50Ms: round(quantile(during.map((s) => s.latencyMs), 0.5)),
        maxMs: round(during.length ? Math.max(...during.map((s) => s.latencyMs)) : Number.NaN),
        failed: during.filter((s) => s.status !== 200).length,
      },
      fdsBefore,
      fdsAfter,
      ...stepFigures(before, w, after),
    };
  } finally {
    prober.close();
    for (const c of clients) c.terminate();
  }
}

async function massLeave({ quick, log }: Options): Promise<{ figures: Figure[]; details: unknown }> {
  const n = quick ? 500 : 10_000;
  const plan: ('close' | 'terminate')[] = quick ? ['close'] : ['close', 'terminate'];
  const patch = {
    streaming: { max_sessions: n + 64, max_queue: n + 64 },
    limits: { max_connections: n + 256, max_pending_inits: n + 64 },
  };
  const steps: MassLeaveStep[] = [];
  for (const how of plan) {
    log(`  ${n} sessions, leaving with ws ${how}():`);
    steps.push(await withServer(quick, patch, (server, bystander) => massLeaveStep(server, bystander, n, how, log)));
  }
  const figures: Figure[] = [];
  for (const s of steps) {
    log(
      `  ${s.queued} queued sessions ${s.how}() at once: ${s.ended} ended within ${s.allEndedAfterS} s; first /health answered ${s.firstHealthAfterMs} ms after the burst began; ` +
        `/health during the burst p50 ${s.healthDuringBurst.p50Ms} ms, max ${s.healthDuringBurst.maxMs} ms (${s.healthDuringBurst.n} probes, ${s.healthDuringBurst.failed} failed); ` +
        `fds ${s.fdsBefore} → ${s.fdsAfter}; ${rssText(s)}`,
    );
    log(`    ${describeBystander(s.bystander)}`);
    log(`    → ${stallVerdict(s)}`);
    const label = `mass-leave ${s.queued} ${s.how}`;
    figures.push(atMost(`${label}: max stall`, s.stallMs, 'ms', STALL_TARGET_MS, `p99 ${s.loopP99Ms} ms`));
    figures.push(info(`${label}: all sessions ended after`, s.allEndedAfterS, 's', `${s.ended} ended`));
    figures.push(info(`${label}: first /health answer after`, s.firstHealthAfterMs, 'ms', `from the burst's start`));
    figures.push(info(`${label}: /health max during burst`, s.healthDuringBurst.maxMs, 'ms', `p50 ${s.healthDuringBurst.p50Ms} ms, ${s.healthDuringBurst.n} probes`));
    figures.push(info(`${label}: RSS peak`, s.rssPeakMiB, 'MiB', rssNote(s)));
    figures.push(...bystanderFigures(label, s.bystander));
  }
  return { figures, details: { steps } };
}

// ------------------------------------------------------------------- 6. pre-init-hold

interface PreInitStep extends StepFigures {
  pending: number;
  opened: number;
  /** The normal client while the pending connections hold every slot (ms from connecting to the answer). */
  whileHeld: { outcome: string; ms: number; closeCode: number | undefined };
  /** Seconds from opening to the server's close frame, over the pending connections. */
  closeFrameMinS: number;
  closeFrameMaxS: number;
  closeFrames: number;
  closeCodes: string;
  /** Server-side endings of the pending sessions. */
  endReasons: string;
  /** A normal client once they were timed out. */
  afterwards: { outcome: string; ms: number };
  /** The pending connections do not answer the close frame: seconds until their TCP connection went, and how many still stood at the end. */
  tcpClosedMaxS: number;
  tcpStillOpen: number;
  tcpWaitS: number;
}

/**
 * A normal client (it reads everything): connects, sends its init, and reports the first
 * answer: `queue_status` (admitted), an `error`, or a close without either. A raw socket
 * keeps every frame from the first byte, so an answer sent with the upgrade is not missed.
 */
async function normalClient(wsUrl: string): Promise<{ outcome: string; seconds: number; closeCode: number | undefined; client: RawSocket }> {
  const started = performance.now();
  const c = await RawSocket.open(wsUrl);
  await c.sendText(JSON.stringify({ type: 'session_init_v2', client_id: 'bench-normal' }));
  const answer = () => c.messages.find((m) => m.message.type === 'queue_status' || m.message.type === 'error');
  await c.until(() => answer() !== undefined || c.closeFrameAt !== undefined || c.isClosed, 'an answer', 30_000).catch(() => undefined);
  const first = answer();
  if (first?.message.type !== 'queue_status') await c.until(() => c.closeFrameAt !== undefined || c.isClosed, 'the close', 2000).catch(() => undefined);
  const seen = c.messages.map((m) => String(m.message.type)).join(',');
  const outcome = first
    ? first.message.type === 'error'
      ? `error ${String(first.message.code)}`
      : 'queue_status'
    : `no answer (frames [${seen}], ${c.closeCode !== undefined ? `close ${c.closeCode}` : c.isClosed ? 'closed' : 'still open'})`;
  const at = first?.at ?? c.closeFrameAt ?? Number.NaN;
  return { outcome, seconds: (at - started) / 1000, closeCode: c.closeCode, client: c };
}

async function preInitStep(server: ServerProcess, bystander: Bystander, pending: number, quick: boolean): Promise<PreInitStep> {
  const before = await rssAfterGc(server);
  const window = await openWindow(server, bystander);
  const holders: { socket: RawSocket; openedAt: number }[] = [];
  await inBatches(
    Array.from({ length: pending }, (_, i) => i),
    16,
    async () => {
      const socket = await RawSocket.open(server.wsUrl);
      holders.push({ socket, openedAt: performance.now() });
    },
  );
  await sleep(200);
  const held = await normalClient(server.wsUrl);
  held.client.destroy();
  // The pending ones: the server's close frame once init_timeout_seconds passed (the reaper looks every second).
  const told = (h: { socket: RawSocket }) => h.socket.closeFrameAt !== undefined || h.socket.isClosed;
  await Promise.race([
    Promise.all(holders.map((h) => h.socket.until(() => told(h), 'the close frame', (initTimeoutSeconds(quick) + 5) * 1000).catch(() => undefined))),
  ]);
  const closeFrameAfter = holders.filter((h) => h.socket.closeFrameAt !== undefined).map((h) => ((h.socket.closeFrameAt as number) - h.openedAt) / 1000);
  const codes = new Map<string, number>();
  for (const h of holders) {
    const code = h.socket.closeCode !== undefined ? String(h.socket.closeCode) : h.socket.isClosed ? 'no close frame' : 'open';
    codes.set(code, (codes.get(code) ?? 0) + 1);
  }
  const later = await normalClient(server.wsUrl);
  later.client.destroy();
  const ends = await collectEnds(server, pending + 2, 1000);
  const w = await window.close();
  // They never answer the close frame: how long does the server keep their TCP connections?
  const tcpWaitS = quick ? 3 : 35;
  await Promise.race([Promise.all(holders.map((h) => h.socket.closed)), sleep(tcpWaitS * 1000)]);
  const tcpClosed = holders.filter((h) => h.socket.closedAt !== undefined).map((h) => ((h.socket.closedAt as number) - h.openedAt) / 1000);
  for (const h of holders) h.socket.destroy();
  await sleep(500);
  const after = await measureAfter(server, settleMs);
  return {
    pending,
    opened: holders.length,
    whileHeld: { outcome: held.outcome, ms: round(held.seconds * 1000), closeCode: held.closeCode },
    closeFrames: closeFrameAfter.length,
    closeFrameMinS: round(closeFrameAfter.length ? Math.min(...closeFrameAfter) : Number.NaN),
    closeFrameMaxS: round(closeFrameAfter.length ? Math.max(...closeFrameAfter) : Number.NaN),
    closeCodes: [...codes].map(([c, k]) => `${k} x ${c}`).join(', '),
    endReasons: reasons(ends),
    afterwards: { outcome: later.outcome, ms: round(later.seconds * 1000) },
    tcpClosedMaxS: round(tcpClosed.length ? Math.max(...tcpClosed) : Number.NaN),
    tcpStillOpen: holders.length - tcpClosed.length,
    tcpWaitS,
    ...stepFigures(before, w, after),
  };
}

async function preInitHold({ quick, log }: Options): Promise<{ figures: Figure[]; details: unknown }> {
  const pending = 64; // limits.max_pending_inits (default)
  const step = await withServer(quick, {}, (server, bystander) => preInitStep(server, bystander, pending, quick));
  log(
    `  ${step.opened} connections without an init (max_pending_inits ${pending}, init_timeout_seconds ${initTimeoutSeconds(quick)}): ` +
      `a normal client got ${step.whileHeld.outcome}${step.whileHeld.closeCode ? ` + close ${step.whileHeld.closeCode}` : ''} after ${step.whileHeld.ms} ms; ` +
      `the pending ones got their close frame after ${step.closeFrameMinS}-${step.closeFrameMaxS} s (${step.closeCodes}; server: ${step.endReasons}); ` +
      `then a normal client got ${step.afterwards.outcome} after ${step.afterwards.ms} ms; ` +
      `not answering the close, their TCP connections went after ${step.tcpClosedMaxS} s (${step.tcpStillOpen} still open after ${step.tcpWaitS} s more); ` +
      rssText(step),
  );
  log(`    ${describeBystander(step.bystander)}`);
  log(`    → ${stallVerdict(step)}`);
  const figures: Figure[] = [
    atMost('pre-init-hold: max stall', step.stallMs, 'ms', STALL_TARGET_MS, `p99 ${step.loopP99Ms} ms`),
    info('pre-init-hold: normal client answered (slots held)', step.whileHeld.ms, 'ms', `${step.whileHeld.outcome}${step.whileHeld.closeCode ? `, close ${step.whileHeld.closeCode}` : ''}`),
    info('pre-init-hold: pending told to close after (max)', step.closeFrameMaxS, 's', `${step.closeCodes}; init timeout ${initTimeoutSeconds(quick)} s`),
    info('pre-init-hold: normal client answered (after)', step.afterwards.ms, 'ms', step.afterwards.outcome),
    info('pre-init-hold: pending TCP dropped after (max)', step.tcpClosedMaxS, 's', `${step.tcpStillOpen} still open after waiting ${step.tcpWaitS} s`),
    ...bystanderFigures('pre-init-hold', step.bystander),
  ];
  return { figures, details: { step } };
}

// ------------------------------------------------------------------------- the bench

const SCENARIOS: { name: string; title: string; run: (o: Options) => Promise<{ figures: Figure[]; details: unknown }> }[] = [
  { name: 'snapshot-flood', title: 'large continuation state, no reading, snapshot_state flood', run: snapshotFlood },
  { name: 'invalid-flood', title: '`{}` frames from a client that does not read', run: invalidFlood },
  { name: 'ping-flood', title: 'pings from a client that does not read', run: pingFlood },
  { name: 'big-init', title: 'maximal opening frames, and a token bomb', run: bigInit },
  { name: 'mass-leave', title: 'queued sessions closing at once', run: massLeave },
  { name: 'pre-init-hold', title: 'connections that never send an init', run: preInitHold },
];

export const hostile: Benchmark = {
  name: 'hostile',
  title: 'Memory and event-loop stalls under hostile clients (floods, big inits, mass leave, pre-init holds)',
  async run({ quick, log }) {
    settleMs = quick ? 1000 : 5000;
    const figures: Figure[] = [];
    const details: Record<string, unknown> = {
      stallTargetMs: STALL_TARGET_MS,
      limits: { sendHighWaterBytes: HIGH_WATER, sendHardLimitBytes: HARD_LIMIT, clientStallTimeoutSeconds: stallSeconds(quick), initTimeoutSeconds: initTimeoutSeconds(quick) },
    };
    // HOSTILE_SCENARIOS=snapshot-flood,mass-leave runs only those (for working on one);
    // HOSTILE_NODE_ARGS='--cpu-prof --cpu-prof-dir=/tmp/prof' profiles the server.
    const only = process.env.HOSTILE_SCENARIOS?.split(',').map((x) => x.trim()).filter(Boolean);
    for (const scenario of SCENARIOS) {
      if (only?.length && !only.includes(scenario.name)) continue;
      log(` -- ${scenario.name}: ${scenario.title}`);
      const started = performance.now();
      const result = await scenario.run({ quick, log });
      const durationS = round((performance.now() - started) / 1000);
      const prefixed = result.figures;
      log(
        formatTable([{ name: scenario.name, title: scenario.title, figures: prefixed, details: {}, durationS }])
          .split('\n')
          .map((line) => `    ${line}`)
          .join('\n'),
      );
      figures.push(...prefixed);
      details[scenario.name] = result.details;
    }
    return { figures, details };
  },
};
