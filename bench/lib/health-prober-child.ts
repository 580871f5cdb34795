/**
 * Polls a server's `GET /health` from its own process, so the latencies it records are
 * the server's and not those of a benchmark process busy with thousands of clients.
 * argv[2]: the URL; argv[3]: the interval, ms. IPC: `start`, then `stop` → `samples`.
 */
import { Agent, get } from 'node:http';
import { performance } from 'node:perf_hooks';

const url = process.argv[2] as string;
const intervalMs = Number(process.argv[3] ?? 10);
const agent = new Agent({ keepAlive: true, maxSockets: 1 });
/** [sent at (epoch ms), latency ms, HTTP status (0: failed)] */
let samples: [number, number, number][] = [];
let running = false;

function probe(): Promise<void> {
  const sent = performance.now();
  return new Promise((resolve) => {
    const done = (status: number) => {
      samples.push([performance.timeOrigin + sent, performance.now() - sent, status]);
      resolve();
    };
    const req = get(url, { agent }, (res) => {
      res.resume();
      res.once('end', () => done(res.statusCode ?? 0));
      res.once('error', () => done(0));
    });
    req.once('error', () => done(0));
  });
}

async function loop(): Promise<void> {
  while (running) {
    const started = performance.now();
    await probe();
    const wait = intervalMs - (performance.now() - started);
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  }
}

let stopped: Promise<void> = Promise.resolve();
process.on('message', async (message: { type: string }) => {
  if (message.type === 'start') {
    samples = [];
    running = true;
    stopped = loop();
    process.send?.({ type: 'started' });
  } else if (message.type === 'stop') {
    running = false;
    await stopped;
    process.send?.({ type: 'samples', samples });
  }
});
process.on('disconnect', () => process.exit(0));
process.send?.({ type: 'ready' });
