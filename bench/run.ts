/**
 * `npm run bench` runs every benchmark; `npm run bench -- <name>...` runs some;
 * `--quick` makes each a few-second smoke run; `--out <file>` moves the JSON
 * (default bench/results/latest.json). See docs/benchmarks.md.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { dirname } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import { capacity } from './capacity.js';
import { cluster } from './cluster.js';
import { controlLatency } from './control-latency.js';
import { dreamverse } from './dreamverse.js';
import { encodeEfficiency } from './encode.js';
import { fastvideo } from './fastvideo.js';
import { firstMedia } from './first-media.js';
import { hostile } from './hostile.js';
import { liveStreams } from './live-streams.js';
import { prompts } from './prompts.js';
import { startup } from './startup.js';
import { tail } from './tail.js';
import { formatTable, type Benchmark, type BenchResult } from './lib/report.js';
import { build } from '../scripts/build.js';

const BENCHMARKS: Benchmark[] = [firstMedia, controlLatency, tail, startup, capacity, encodeEfficiency, liveStreams, hostile, cluster, prompts, dreamverse, fastvideo];

function usage(): string {
  return [
    'usage: npm run bench -- [--quick] [--out file] [name...]',
    '',
    ...BENCHMARKS.map((b) => `  ${b.name.padEnd(16)} ${b.title}`),
  ].join('\n');
}

async function main(argv: string[]): Promise<number> {
  let quick = false;
  let out = fileURLToPath(new URL('./results/latest.json', import.meta.url));
  const names: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--quick') quick = true;
    else if (arg === '--out') out = argv[++i] ?? out;
    else if (arg === '--help' || arg === '-h') {
      console.log(usage());
      return 0;
    } else names.push(arg);
  }
  const unknown = names.filter((n) => !BENCHMARKS.some((b) => b.name === n));
  if (unknown.length > 0) {
    console.error(`unknown benchmark: ${unknown.join(', ')}\n\n${usage()}`);
    return 2;
  }
  const selected = names.length ? BENCHMARKS.filter((b) => names.includes(b.name)) : BENCHMARKS;
  // Servers run the compiled code, as users do (LIVEGEN_BENCH_SOURCES=1: the sources through tsx).
  const serverCode = process.env.LIVEGEN_BENCH_SOURCES === '1' ? 'sources' : 'compiled';
  if (serverCode === 'compiled') await build({ ifStale: true, log: (line) => console.log(`   build: ${line}`) });
  console.log(`server code: ${serverCode === 'compiled' ? 'compiled dist/' : 'TypeScript sources through tsx'}`);
  const results: BenchResult[] = [];
  const failed: string[] = [];
  for (const bench of selected) {
    console.log(`== ${bench.name}: ${bench.title}${quick ? ' [quick]' : ''}`);
    const started = performance.now();
    try {
      const r = await bench.run({ quick, log: (line) => console.log(line) });
      results.push({ name: bench.name, title: bench.title, durationS: Math.round((performance.now() - started) / 100) / 10, ...r });
    } catch (err) {
      console.error(`   ${bench.name} failed:`, err);
      failed.push(bench.name);
    }
    console.log(`   (${Math.round((performance.now() - started) / 1000)} s)`);
  }
  console.log(`\n${formatTable(results)}\n`);
  const report = {
    date: new Date().toISOString(),
    quick,
    serverCode,
    machine: {
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model,
      memoryGiB: Math.round(totalmem() / 2 ** 30),
      node: process.version,
      ffmpeg: ffmpegVersion(),
    },
    results,
    failed,
  };
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);
  console.log(`wrote ${out}`);
  return failed.length > 0 ? 1 : 0;
}

function ffmpegVersion(): string | undefined {
  try {
    return execFileSync('ffmpeg', ['-version'], { encoding: 'utf8' }).split('\n')[0];
  } catch {
    return undefined;
  }
}

process.exitCode = await main(process.argv.slice(2));
