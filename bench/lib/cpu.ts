/** Whole-machine CPU use from /proc/stat, to show how close a run came to saturation. */
import { readFileSync } from 'node:fs';

export interface CpuSample {
  busy: number;
  total: number;
}

export function cpuSample(): CpuSample {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const fields = line.trim().split(/\s+/).slice(1).map(Number);
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0); // idle + iowait
  const total = fields.reduce((s, x) => s + x, 0);
  return { busy: total - idle, total };
}

/** Busy share of all cores between two samples, 0..1. */
export function cpuBusy(from: CpuSample, to: CpuSample): number {
  const total = to.total - from.total;
  return total > 0 ? (to.busy - from.busy) / total : 0;
}
