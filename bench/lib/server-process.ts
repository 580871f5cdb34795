/** Starts `server-child.ts` in a child process and talks to it. */
import { fork, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export interface ServerStats {
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
  cpuUserUs: number;
  cpuSystemUs: number;
  sessions: number;
  queueDepth: number;
}

/** What `probe` reads: no per-session work, so it is cheap with 10,000 sessions. */
export interface ServerProbe {
  rss: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
  cpuUserUs: number;
  cpuSystemUs: number;
  /** The server's event-loop delay since the last reset (`perf_hooks.monitorEventLoopDelay`, 10 ms resolution), ms. */
  loopMaxMs: number;
  loopP99Ms: number;
  loopMeanMs: number;
  loopSamples: number;
  /** Longest and total GC pause (PerformanceObserver 'gc') since the last reset, ms. */
  gcMaxMs: number;
  gcTotalMs: number;
  /** The same stall seen by a 10 ms interval timer: its largest gap between ticks beyond 10 ms. */
  tickGapMaxMs: number;
}

/** A `session ended` log line of the server (collected with `collectEnds`). */
export interface SessionEnd {
  /** Epoch ms, `performance.timeOrigin + performance.now()` in the server process. */
  at: number;
  session: string;
  state: string;
  /** The ending's kind: `left`, `slow_client`, `timeout`, `rejected`... */
  reason: string | undefined;
}

/** The kernel's view of the process's memory (read from /proc by the benchmark, not by the server). */
export interface ProcMemory {
  /** Resident set now, bytes. */
  rss: number;
  /** Peak resident set since the process started or since `resetPeakRss`, bytes. */
  peakRss: number;
}

export interface ServerProcess {
  url: string;
  wsUrl: string;
  pid: number;
  /** Memory, CPU and session counts of the server process; `gc` runs a full GC first. */
  stats(gc?: boolean): Promise<ServerStats>;
  /** Memory, CPU and (with `watchLoop`) event-loop delay; `gc` runs a full GC first, `resetLoop` restarts the stall figures after the read. */
  probe(options?: { gc?: boolean; resetLoop?: boolean }): Promise<ServerProbe>;
  /** The `session ended` lines since the last call (empty unless started with `collectEnds`). */
  ends(): Promise<SessionEnd[]>;
  /** RSS and peak RSS from /proc/<pid>/status, without asking the server (works while its event loop is blocked). */
  memory(): ProcMemory;
  /** Restarts the kernel's peak-RSS counter (VmHWM); false when /proc/<pid>/clear_refs is not writable. */
  resetPeakRss(): boolean;
  /** Open file descriptors of the server process (sockets, pipes, files). */
  openFds(): number;
  close(): Promise<void>;
}

const CHILD = fileURLToPath(new URL('./server-child.ts', import.meta.url));
const REPO = fileURLToPath(new URL('../..', import.meta.url));

export interface ServerProcessOptions {
  /** Workers replay pre-rendered frames at realtime pace (no synthetic rendering cost). */
  prerendered?: boolean;
  /** The server logs at `info` into its process, which keeps every `session ended` line for `ends()`. */
  collectEnds?: boolean;
  /** The server process measures its event-loop stalls and GC pauses (read with `probe`). */
  watchLoop?: boolean;
  /** With `collectEnds`: the server logs at this level and echoes every line to stderr. */
  logLevel?: string;
  /** Extra Node flags for the server process (e.g. `--cpu-prof` to find what stalls it). */
  nodeArgs?: string[];
}

function procStatusKiB(pid: number, field: string): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${field}:`));
  return Number(line?.split(/\s+/)[1] ?? Number.NaN);
}

export async function startServerProcess(patch: Record<string, unknown>, options: ServerProcessOptions = {}): Promise<ServerProcess> {
  // BENCH_SERVER_NODE_ARGS='--cpu-prof --cpu-prof-dir=/tmp/prof' profiles the server of any benchmark.
  const fromEnv = process.env.BENCH_SERVER_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
  const { nodeArgs = fromEnv, ...childOptions } = options;
  const child: ChildProcess = fork(CHILD, [JSON.stringify(patch), JSON.stringify(childOptions)], {
    cwd: REPO,
    execArgv: ['--import', 'tsx', '--expose-gc', ...nodeArgs],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    const onMessage = (m: { type: string; url?: string }) => {
      if (m.type === 'ready' && m.url) {
        child.off('message', onMessage);
        resolve(m.url);
      }
    };
    child.on('message', onMessage);
    child.once('exit', (code) => reject(new Error(`server process exited with ${code} before it listened`)));
  });
  let nextId = 0;
  /** Sends `request` and resolves with the reply of the same type and id. */
  const ask = <T>(request: Record<string, unknown> & { type: string }): Promise<T> => {
    const id = nextId++;
    return new Promise<T>((resolve, reject) => {
      const onMessage = (m: T & { type: string; id: number }) => {
        if (m.type !== request.type || m.id !== id) return;
        child.off('message', onMessage);
        child.off('exit', onExit);
        resolve(m);
      };
      const onExit = (code: number | null) => {
        child.off('message', onMessage);
        reject(new Error(`server process exited with ${code} before it answered ${request.type}`));
      };
      child.on('message', onMessage);
      child.once('exit', onExit);
      child.send({ ...request, id });
    });
  };
  const pid = child.pid as number;
  return {
    url,
    wsUrl: `${url.replace(/^http/, 'ws')}/v1/stream`,
    pid,
    stats(gc = false) {
      return ask<ServerStats>({ type: 'stats', gc });
    },
    probe({ gc = false, resetLoop = false } = {}) {
      return ask<ServerProbe>({ type: 'probe', gc, resetLoop });
    },
    async ends() {
      return (await ask<{ ends: SessionEnd[] }>({ type: 'ends' })).ends;
    },
    memory() {
      return { rss: procStatusKiB(pid, 'VmRSS') * 1024, peakRss: procStatusKiB(pid, 'VmHWM') * 1024 };
    },
    resetPeakRss() {
      try {
        writeFileSync(`/proc/${pid}/clear_refs`, '5');
        return true;
      } catch {
        return false;
      }
    },
    openFds() {
      try {
        return readdirSync(`/proc/${pid}/fd`).length;
      } catch {
        return Number.NaN;
      }
    },
    async close() {
      if (child.exitCode === null && child.connected) child.send({ type: 'close' });
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
