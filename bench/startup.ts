/**
 * Start-up cost of `livegen serve`, run as a user runs it (`node bin/livegen.js serve`):
 * time from spawn to the `livegen listening` log line, resident memory 2 s after that
 * (VmRSS of the server process, and of its child processes, e.g. tsx's esbuild), and
 * the WebSocket handshake time to the running server (p50/p90 over sequential
 * handshakes on loopback). Two modes: `compiled` (dist/, what every start path runs once
 * built) and `sources` (LIVEGEN_DEV=1: the TypeScript sources through tsx).
 *
 * `npx tsx bench/startup.ts [--quick] [--bin path/to/livegen.js] [--mode compiled|sources]...`
 * prints the figures; `startup` is the Benchmark for bench/run.ts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import WebSocket from 'ws';
import { stopChild } from './lib/child.js';
import { info, type Benchmark, type Figure } from './lib/report.js';
import { median, ratio, round, summarize, type Summary } from './lib/stats.js';

const DEFAULT_BIN = fileURLToPath(new URL('../bin/livegen.js', import.meta.url));
const KiB = 1024;

export type StartMode = 'compiled' | 'sources';

export interface StartSample {
  startMs: number;
  /** VmRSS of the server process 2 s after its listening line, KiB. */
  rssKiB: number;
  /** VmRSS of its descendant processes at the same moment, KiB. */
  childrenRssKiB: number;
  children: string[];
}

export interface StartupMeasure {
  mode: StartMode;
  starts: StartSample[];
  handshakeMs: Summary;
}

/** `VmRSS` of a process in KiB (0 when it is gone). */
export function vmRssKiB(pid: number): number {
  try {
    const line = readFileSync(`/proc/${pid}/status`, 'utf8')
      .split('\n')
      .find((l) => l.startsWith('VmRSS:'));
    return line ? Number(line.replace(/\D+/g, '')) : 0;
  } catch {
    return 0;
  }
}

/** Every descendant of a process (Linux: /proc/PID/task/TID/children of each thread). */
export function descendants(pid: number): number[] {
  const out: number[] = [];
  const walk = (p: number) => {
    // A child belongs to the thread that spawned it (tsx's loader thread spawns esbuild).
    let kids: string[] = [];
    try {
      for (const tid of readdirSync(`/proc/${p}/task`)) {
        kids = kids.concat(readFileSync(`/proc/${p}/task/${tid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean));
      }
    } catch {
      return;
    }
    for (const t of kids) {
      out.push(Number(t));
      walk(Number(t));
    }
  };
  walk(pid);
  return out;
}

function commandOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).slice(0, 2).join(' ');
  } catch {
    return '?';
  }
}

interface Started {
  child: ChildProcess;
  url: string;
  startMs: number;
}

function startServer(bin: string, mode: StartMode): Promise<Started> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('LIVEGEN_')));
  if (mode === 'sources') env.LIVEGEN_DEV = '1';
  const t0 = performance.now();
  const child = spawn(process.execPath, [bin, 'serve', '--port', '0', '--log-level', 'info'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise<Started>((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`no listening line within 30 s; stderr: ${err}`));
    }, 30_000);
    child.stderr?.on('data', (d: Buffer) => (err += d.toString('utf8')));
    child.stdout?.on('data', (d: Buffer) => {
      const startMs = performance.now() - t0;
      out += d.toString('utf8');
      const match = /"msg":"livegen listening on (http:\/\/[^"]+)"/.exec(out);
      if (!match) return;
      clearTimeout(timer);
      if (mode === 'compiled' && err.includes('running the TypeScript sources')) {
        child.kill('SIGKILL');
        reject(new Error(`compiled mode ran the sources (dist/ missing or stale: npm run build): ${err}`));
        return;
      }
      child.stdout?.removeAllListeners('data');
      child.stdout?.resume();
      resolve({ child, url: match[1] as string, startMs });
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited (${code}) before listening; stderr: ${err}`));
    });
  });
}

/** One WebSocket handshake (upgrade request to `open`), then a close that is waited for. */
export async function handshake(wsUrl: string): Promise<number> {
  const t0 = performance.now();
  const ws = new WebSocket(wsUrl);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const ms = performance.now() - t0;
  const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()));
  ws.close(1000);
  await closed;
  return ms;
}

export async function measureStartup(options: { bin?: string; mode: StartMode; starts: number; handshakes: number; log?: (line: string) => void }): Promise<StartupMeasure> {
  const bin = options.bin ?? DEFAULT_BIN;
  const starts: StartSample[] = [];
  let handshakes: number[] = [];
  for (let i = 0; i < options.starts; i++) {
    const { child, url, startMs } = await startServer(bin, options.mode);
    try {
      await new Promise((resolve) => setTimeout(resolve, 2000));
      const pid = child.pid as number;
      const kids = descendants(pid);
      const sample: StartSample = {
        startMs,
        rssKiB: vmRssKiB(pid),
        childrenRssKiB: kids.reduce((sum, k) => sum + vmRssKiB(k), 0),
        children: kids.map(commandOf),
      };
      starts.push(sample);
      options.log?.(`   ${options.mode}: start ${round(startMs)} ms, RSS ${round(sample.rssKiB / KiB)} MiB (+${round(sample.childrenRssKiB / KiB)} MiB in ${kids.length} children)`);
      // Handshakes on the last start only: warm up a few, then measure one at a time.
      if (i === options.starts - 1) {
        const wsUrl = `${url.replace(/^http/, 'ws')}/v1/stream`;
        for (let w = 0; w < 10; w++) await handshake(wsUrl);
        handshakes = [];
        for (let h = 0; h < options.handshakes; h++) handshakes.push(await handshake(wsUrl));
      }
    } finally {
      await stopChild(child);
    }
  }
  return { mode: options.mode, starts, handshakeMs: summarize(handshakes) };
}

function figuresOf(m: StartupMeasure): Figure[] {
  const rss = median(m.starts.map((s) => s.rssKiB)) / KiB;
  const kids = median(m.starts.map((s) => s.childrenRssKiB)) / KiB;
  return [
    info(`${m.mode}: start to listening, median`, round(median(m.starts.map((s) => s.startMs))), 'ms', `${m.starts.length} starts`),
    info(`${m.mode}: idle RSS 2 s after start`, round(rss), 'MiB', 'VmRSS of the server process'),
    info(`${m.mode}: idle RSS of child processes`, round(kids), 'MiB', m.starts[0]?.children.join('; ') || 'none'),
    info(`${m.mode}: WebSocket handshake p50`, Math.round(m.handshakeMs.p50 * 100) / 100, 'ms', `p90 ${round(m.handshakeMs.p90)} ms over ${m.handshakeMs.n}`),
  ];
}

export const startup: Benchmark = {
  name: 'startup',
  title: 'livegen serve: start-up time, idle RSS, WebSocket handshake (compiled vs sources through tsx)',
  async run({ quick, log }) {
    const starts = quick ? 1 : 5;
    const handshakes = quick ? 20 : 200;
    const compiled = await measureStartup({ mode: 'compiled', starts, handshakes, log });
    const sources = await measureStartup({ mode: 'sources', starts, handshakes, log });
    const cStart = median(compiled.starts.map((s) => s.startMs));
    const sStart = median(sources.starts.map((s) => s.startMs));
    const cRss = median(compiled.starts.map((s) => s.rssKiB + s.childrenRssKiB));
    const sRss = median(sources.starts.map((s) => s.rssKiB + s.childrenRssKiB));
    return {
      figures: [
        ...figuresOf(compiled),
        ...figuresOf(sources),
        info('start-up time, compiled / sources', ratio(cStart, sStart), 'x'),
        info('idle RSS with children, compiled / sources', ratio(cRss, sRss), 'x'),
        info('handshake p50, compiled / sources', ratio(compiled.handshakeMs.p50, sources.handshakeMs.p50), 'x'),
      ],
      details: { compiled, sources },
    };
  },
};

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const args = process.argv.slice(2);
  const quick = args.includes('--quick');
  const binAt = args.indexOf('--bin');
  const bin = binAt >= 0 ? args[binAt + 1] : undefined;
  const modes = args.flatMap((a, i) => (args[i - 1] === '--mode' ? [a as StartMode] : []));
  for (const mode of modes.length ? modes : (['compiled', 'sources'] as StartMode[])) {
    const m = await measureStartup({ bin, mode, starts: quick ? 1 : 5, handshakes: quick ? 20 : 200, log: console.log });
    for (const f of figuresOf(m)) console.log(`${f.metric}: ${f.value} ${f.unit}${f.note ? ` (${f.note})` : ''}`);
  }
}
