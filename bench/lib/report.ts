/** What every benchmark hands back to the runner: table rows plus free-form details for the JSON. */

export interface Figure {
  /** What was measured, e.g. `first fragment p50`. */
  metric: string;
  value: number;
  unit: string;
  /** The target as text (`<= 150`), when the issue sets one. */
  target?: string;
  /** Whether `value` meets the target; absent when there is none. */
  pass?: boolean;
  /** A short note (conditions, the baseline of a ratio). */
  note?: string;
}

export interface BenchResult {
  name: string;
  title: string;
  figures: Figure[];
  /** Anything else worth keeping in the JSON (per-step tables, raw samples, settings). */
  details: Record<string, unknown>;
  durationS: number;
}

export interface BenchOptions {
  /** A smoke run: a few seconds per benchmark, figures not meaningful. */
  quick: boolean;
  log: (line: string) => void;
}

export interface Benchmark {
  name: string;
  title: string;
  run(options: BenchOptions): Promise<Omit<BenchResult, 'name' | 'title' | 'durationS'>>;
}

export function atMost(metric: string, value: number, unit: string, limit: number, note?: string): Figure {
  return { metric, value, unit, target: `<= ${limit}`, pass: value <= limit, ...(note ? { note } : {}) };
}

export function atLeast(metric: string, value: number, unit: string, limit: number, note?: string): Figure {
  return { metric, value, unit, target: `>= ${limit}`, pass: value >= limit, ...(note ? { note } : {}) };
}

export function info(metric: string, value: number, unit: string, note?: string): Figure {
  return { metric, value, unit, ...(note ? { note } : {}) };
}

/** A plain-text table of every figure, one block per benchmark. */
export function formatTable(results: readonly BenchResult[]): string {
  const rows: string[][] = [['bench', 'metric', 'value', 'unit', 'target', 'ok', 'note']];
  for (const r of results) {
    for (const f of r.figures) {
      rows.push([
        r.name,
        f.metric,
        Number.isFinite(f.value) ? String(f.value) : 'n/a',
        f.unit,
        f.target ?? '',
        f.pass === undefined ? '' : f.pass ? 'yes' : 'NO',
        f.note ?? '',
      ]);
    }
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  const line = (row: string[]) => row.map((cell, i) => (i === 2 ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(rows[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.slice(1).map(line)].join('\n');
}
