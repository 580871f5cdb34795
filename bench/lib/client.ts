/**
 * A lean protocol client for benchmarks: it keeps no history (10,000 of them must fit in
 * one process) and stamps every arrival with `performance.now()`.
 */
import { performance } from 'node:perf_hooks';
import WebSocket from 'ws';

export interface JsonMessage {
  type: string;
  [key: string]: unknown;
}

type Waiter = { type: string; resolve: (m: { message: JsonMessage; at: number }) => void };

export class BenchClient {
  readonly closed: Promise<{ code: number; at: number }>;
  /** Called for every JSON message, after waiters. */
  onJson: ((message: JsonMessage, at: number) => void) | undefined;
  onBinary: ((data: Buffer, at: number) => void) | undefined;
  private waiters: Waiter[] = [];
  private isClosed = false;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      const at = performance.now();
      if (isBinary) {
        this.onBinary?.(data, at);
        return;
      }
      const message = JSON.parse(data.toString('utf8')) as JsonMessage;
      if (this.waiters.length > 0) {
        const ready = this.waiters.filter((w) => w.type === message.type);
        if (ready.length > 0) {
          this.waiters = this.waiters.filter((w) => w.type !== message.type);
          for (const w of ready) w.resolve({ message, at });
        }
      }
      this.onJson?.(message, at);
    });
    ws.on('error', () => undefined); // 'close' follows and tells the code
    this.closed = new Promise((resolve) =>
      ws.on('close', (code: number) => {
        this.isClosed = true;
        resolve({ code, at: performance.now() });
      }),
    );
  }

  static connect(wsUrl: string, timeoutMs = 30_000): Promise<BenchClient> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(wsUrl, { perMessageDeflate: false, handshakeTimeout: timeoutMs });
      const client = new BenchClient(ws);
      ws.once('open', () => resolve(client));
      ws.once('error', reject);
    });
  }

  get isOpen(): boolean {
    return !this.isClosed && this.ws.readyState === WebSocket.OPEN;
  }

  send(message: Record<string, unknown>): void {
    this.ws.send(JSON.stringify(message));
  }

  /** The next message of `type` (arriving after this call). */
  next(type: string, timeoutMs = 30_000): Promise<{ message: JsonMessage; at: number }> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${type}`));
      }, timeoutMs);
      const waiter: Waiter = {
        type,
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
      };
      this.waiters.push(waiter);
    });
  }

  close(): void {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close();
  }

  terminate(): void {
    this.ws.terminate();
  }
}

/** Runs `task` over `items` with at most `limit` in flight. */
export async function inBatches<T>(items: readonly T[], limit: number, task: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      await task(items[i] as T, i);
    }
  });
  await Promise.all(workers);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * `count` `snapshot_state` round trips of a session that holds a state, one at a time,
 * 2-6 ms apart (a steady trickle, not a flood); the times in ms.
 */
export async function snapshotRoundTrips(probe: BenchClient, count: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    const reply = probe.next('continuation_state_snapshot', 10_000);
    const sent = performance.now();
    probe.send({ type: 'snapshot_state' });
    const { at } = await reply;
    out.push(at - sent);
    await sleep(2 + (i % 5));
  }
  return out;
}
