/**
 * Shared helpers of the reliability suites (fuzz.test.ts, soak.test.ts): raw frames that
 * JSON.stringify cannot build (10k-deep nesting), iterative JSON comparison, bounded
 * waits, HTTP probes that leave no keep-alive socket behind, and process introspection
 * (open handles, child processes) for leak checks.
 */
import { get } from 'node:http';
import { readdir, readFile } from 'node:fs/promises';
import { TestClient } from '../server/harness.js';

/** Preformatted JSON text inserted verbatim by `toJson` (deep nesting, NaN, broken syntax). */
export class RawJson {
  constructor(readonly text: string) {}
}

/**
 * Serialises a frame. Unlike JSON.stringify it never recurses into `RawJson` (so a 20k-deep
 * array costs nothing), and it keeps lone surrogates as `\udXXX` escapes (JSON.stringify of a
 * string does that too), so they reach the server as lone surrogates, not as U+FFFD.
 */
export function toJson(value: unknown): string {
  if (value instanceof RawJson) return value.text;
  if (Array.isArray(value)) return `[${value.map(toJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    return `{${Object.entries(value)
      .map(([k, v]) => `${JSON.stringify(k)}:${toJson(v)}`)
      .join(',')}}`;
  }
  if (value === undefined) return 'null';
  return JSON.stringify(value);
}

/** `depth` nested arrays: `[[[...]]]`. */
export function deepArrayText(depth: number): string {
  return '['.repeat(depth) + ']'.repeat(depth);
}

/** `depth` nested objects: `{"a":{"a":...{}}}`. */
export function deepObjectText(depth: number): string {
  return '{"a":'.repeat(depth) + '{}' + '}'.repeat(depth);
}

/** Deep equality of JSON values without recursion (the values may be 20k levels deep). */
export function jsonEqual(a: unknown, b: unknown): boolean {
  const stack: [unknown, unknown][] = [[a, b]];
  while (stack.length > 0) {
    const [x, y] = stack.pop() as [unknown, unknown];
    if (x === y) continue;
    if (typeof x === 'number' && typeof y === 'number' && Number.isNaN(x) && Number.isNaN(y)) continue;
    if (x === null || y === null || typeof x !== 'object' || typeof y !== 'object') return false;
    if (Array.isArray(x) !== Array.isArray(y)) return false;
    if (Array.isArray(x) && Array.isArray(y)) {
      if (x.length !== y.length) return false;
      for (let i = 0; i < x.length; i++) stack.push([x[i], y[i]]);
      continue;
    }
    const xk = Object.keys(x as object);
    const yk = Object.keys(y as object);
    if (xk.length !== yk.length) return false;
    for (const k of xk) {
      if (!Object.prototype.hasOwnProperty.call(y, k)) return false;
      stack.push([(x as Record<string, unknown>)[k], (y as Record<string, unknown>)[k]]);
    }
  }
  return true;
}

/** A 1x1 PNG, as an `initial_image` payload (any bytes would do for the synthetic generator). */
export const TINY_PNG_BASE64 =
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==';

/** Polls `predicate` every `stepMs` until it holds; throws naming `what` after `timeoutMs`. */
export async function waitUntil(predicate: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000, stepMs = 20): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await predicate()) return;
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, stepMs));
  }
}

/** Resolves with `promise`, or rejects after `ms` naming `what`. */
export async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * GET `path` with a fresh connection that is closed afterwards (no agent, no keep-alive),
 * so a probe leaves no socket behind to confuse a handle count.
 */
export function httpGet(baseUrl: string, path: string, timeoutMs = 5000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = get(`${baseUrl}${path}`, { agent: false, headers: { connection: 'close' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`GET ${path} timed out`)));
    req.on('error', reject);
  });
}

/** `/healthz` answers 200 with `status: "ok"`: the server process is alive and serving. */
export async function expectHealthy(baseUrl: string): Promise<void> {
  const { status, body } = await httpGet(baseUrl, '/healthz');
  const parsed = JSON.parse(body) as { status?: string };
  if (status !== 200 || parsed.status !== 'ok') throw new Error(`/healthz answered ${status} ${body}`);
}

/** Connects a TestClient that tolerates socket errors (ECONNRESET after a 1009, EPIPE...). */
export async function connectQuiet(wsUrl: string): Promise<TestClient> {
  const client = await TestClient.connect(wsUrl);
  client.ws.on('error', () => undefined);
  return client;
}

/** Sends one frame exactly as given (text frames as their UTF-8 bytes, unchanged). */
export function sendFrame(client: TestClient, data: Buffer, binary: boolean): void {
  if (client.ws.readyState !== client.ws.OPEN) return;
  client.ws.send(data, { binary });
}

/**
 * Checks every segment the client saw completed: the binary frames between its `media_init`
 * and its `media_segment_complete` are `chunks` fragments (plus the fMP4 initialization
 * segment in `av_fmp4` mode; JPEG mode has none) and `bytes` bytes in all.
 */
export function checkSegmentsComplete(client: TestClient): { segments: number; problems: string[] } {
  const problems: string[] = [];
  let segments = 0;
  for (const done of client.ofType('media_segment_complete')) {
    const media = client.segmentMedia(done.segment_idx);
    const bytes = media.reduce((n, b) => n + b.length, 0);
    const mode = client.ofType('media_init').find((m) => m.segment_idx === done.segment_idx)?.mode;
    const initFrames = mode === 'legacy_jpeg' ? 0 : 1;
    if (media.length !== done.chunks + initFrames) {
      problems.push(`segment ${done.segment_idx} (${mode}): ${media.length - initFrames} fragments received, chunks says ${done.chunks}`);
    }
    if (done.bytes !== undefined && bytes !== done.bytes) problems.push(`segment ${done.segment_idx}: ${bytes} bytes received, bytes says ${done.bytes}`);
    segments += 1;
  }
  return { segments, problems };
}

/** Counts of `process.getActiveResourcesInfo()` by type (TCPSocketWrap, Timeout, ProcessWrap...). */
export function activeResources(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const type of process.getActiveResourcesInfo()) counts[type] = (counts[type] ?? 0) + 1;
  return counts;
}

/** Direct children of `pid`, read from /proc (spawning `ps` would list `ps` itself). */
export async function childProcesses(pid: number = process.pid): Promise<{ pid: number; comm: string }[]> {
  const out: { pid: number; comm: string }[] = [];
  let entries: string[];
  try {
    entries = await readdir('/proc');
  } catch {
    return out;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = await readFile(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    // pid (comm) state ppid ... ; comm may contain spaces and parentheses, so split at the last ')'.
    const close = stat.lastIndexOf(')');
    const comm = stat.slice(stat.indexOf('(') + 1, close);
    const fields = stat.slice(close + 2).split(' ');
    if (Number(fields[1]) === pid) out.push({ pid: Number(entry), comm });
  }
  return out;
}

/** A small seeded PRNG (mulberry32), so a soak's script is reproducible from its seed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
