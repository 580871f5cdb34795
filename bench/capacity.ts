/**
 * 3. Capacity: N connected sessions held by one server process, all but one queued (one
 * worker). Reports the server's RSS (alone: it runs in its own process, the clients
 * here), the time to admit them all (connect + init until each got its first
 * `queue_status`), the `queue_status` frames that took, and whether every one of them was
 * still connected after a hold period.
 */
import { performance } from 'node:perf_hooks';
import { BenchClient, sleep } from './lib/client.js';
import { atLeast, atMost, info, type Benchmark, type Figure } from './lib/report.js';
import { startServerProcess, type ServerStats } from './lib/server-process.js';
import { round } from './lib/stats.js';

const MiB = 1024 * 1024;

interface CapacityStep {
  sessions: number;
  admitted: number;
  admitSeconds: number;
  /** Admission did not finish within the time limit. */
  timedOut: boolean;
  queueStatusFrames: number;
  connectErrors: number;
  closedDuringHold: number;
  heldAfterSeconds: number;
  baselineRssMiB: number;
  rssMiB: number;
  rssAfterGcMiB: number;
  heapUsedMiB: number;
  perSessionKiB: number;
  serverSessions: number;
  serverQueueDepth: number;
}

export async function measureCapacity(sessions: number, limitS: number, holdS: number, log: (line: string) => void): Promise<CapacityStep> {
  const server = await startServerProcess({
    streaming: { max_sessions: sessions + 16, max_queue: sessions + 16, queue_timeout_seconds: 3600, session_timeout_seconds: 3600 },
    // Every session holds a connection; clients connect 128 at a time, each pending until its init.
    limits: { max_connections: sessions + 64, max_pending_inits: 256 },
  });
  const clients: BenchClient[] = [];
  let queueStatusFrames = 0;
  let connectErrors = 0;
  let admitted = 0;
  try {
    await sleep(500);
    const baseline: ServerStats = await server.stats(true);
    const started = performance.now();
    const deadline = started + limitS * 1000;
    let nextIndex = 0;
    let allAdmitted!: () => void;
    const done = new Promise<void>((resolve) => (allAdmitted = resolve));
    // Connections are opened `concurrency` at a time; a slot frees when its session is admitted.
    const concurrency = 128;
    const openOne = async (): Promise<void> => {
      while (nextIndex < sessions && performance.now() < deadline) {
        const i = nextIndex++;
        let client: BenchClient;
        try {
          client = await BenchClient.connect(server.wsUrl);
        } catch {
          connectErrors += 1;
          continue;
        }
        clients.push(client);
        let first = true;
        const admittedNow = new Promise<void>((resolve) => {
          client.onJson = (m) => {
            if (m.type !== 'queue_status') return;
            queueStatusFrames += 1;
            if (first) {
              first = false;
              admitted += 1;
              if (admitted === sessions) allAdmitted();
              resolve();
            }
          };
          void client.closed.then(() => resolve());
        });
        client.send({ type: 'session_init_v2', client_id: `bench-capacity-${i}` });
        await admittedNow;
      }
    };
    const openers = Promise.all(Array.from({ length: concurrency }, openOne));
    const timer = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), limitS * 1000).unref());
    const outcome = await Promise.race([done.then(() => 'done' as const), timer, openers.then(() => 'openers' as const)]);
    const admitSeconds = (performance.now() - started) / 1000;
    const timedOut = outcome !== 'done' && admitted < sessions;
    if (timedOut) log(`  ${sessions}: only ${admitted} admitted after ${round(admitSeconds)} s (limit ${limitS} s)`);
    await sleep(holdS * 1000);
    const closedDuringHold = clients.filter((c) => !c.isOpen).length;
    const loaded = await server.stats(false);
    const afterGc = await server.stats(true);
    return {
      sessions,
      admitted,
      admitSeconds: round(admitSeconds),
      timedOut,
      queueStatusFrames,
      connectErrors,
      closedDuringHold,
      heldAfterSeconds: holdS,
      baselineRssMiB: round(baseline.rss / MiB),
      rssMiB: round(loaded.rss / MiB),
      rssAfterGcMiB: round(afterGc.rss / MiB),
      heapUsedMiB: round(afterGc.heapUsed / MiB),
      perSessionKiB: admitted > 0 ? round((afterGc.rss - baseline.rss) / 1024 / admitted) : Number.NaN,
      serverSessions: loaded.sessions,
      serverQueueDepth: loaded.queueDepth,
    };
  } finally {
    for (const c of clients) c.terminate();
    await server.close();
  }
}

export const capacity: Benchmark = {
  name: 'capacity',
  title: 'Sessions held by one process (all but one queued): RSS and time to admit',
  async run({ quick, log }) {
    const plan = quick
      ? [
          { sessions: 200, limitS: 20, holdS: 1 },
          { sessions: 1000, limitS: 30, holdS: 1 },
        ]
      : [
          { sessions: 1000, limitS: 60, holdS: 3 },
          { sessions: 10_000, limitS: 180, holdS: 5 },
        ];
    const steps: CapacityStep[] = [];
    for (const p of plan) {
      const s = await measureCapacity(p.sessions, p.limitS, p.holdS, log);
      log(
        `  ${s.sessions}: admitted ${s.admitted} in ${s.admitSeconds} s (${s.queueStatusFrames} queue_status frames), RSS ${s.rssMiB} MiB ` +
          `(baseline ${s.baselineRssMiB}, after GC ${s.rssAfterGcMiB}, ${s.perSessionKiB} KiB/session), ${s.closedDuringHold} closed during hold, ${s.connectErrors} connect errors`,
      );
      steps.push(s);
    }
    const figures: Figure[] = [];
    for (const s of steps) {
      const errors = s.sessions - s.admitted + s.closedDuringHold + s.connectErrors;
      if (s.sessions === 1000) figures.push(atMost(`RSS @ ${s.sessions} sessions`, s.rssMiB, 'MiB', 300, `baseline ${s.baselineRssMiB} MiB`));
      else figures.push(info(`RSS @ ${s.sessions} sessions`, s.rssMiB, 'MiB', `baseline ${s.baselineRssMiB} MiB`));
      figures.push(info(`per-session memory @ ${s.sessions}`, s.perSessionKiB, 'KiB', 'RSS growth after GC / sessions'));
      figures.push(info(`time to admit ${s.sessions}`, s.admitSeconds, 's', `${s.queueStatusFrames} queue_status frames${s.timedOut ? ', TIMED OUT' : ''}`));
      figures.push(atMost(`errors @ ${s.sessions} sessions`, errors, 'sessions', 0, 'not admitted + closed during hold + connect errors'));
      figures.push(atLeast(`held @ ${s.sessions} sessions`, s.admitted - s.closedDuringHold, 'sessions', s.sessions));
    }
    return { figures, details: { steps } };
  },
};
