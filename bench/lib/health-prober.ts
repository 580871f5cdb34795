/** Starts `health-prober-child.ts`: `GET /health` every few ms from a process of its own. */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const CHILD = fileURLToPath(new URL('./health-prober-child.ts', import.meta.url));

export interface HealthSample {
  /** When the request was sent, epoch ms (comparable with `performance.timeOrigin + performance.now()` here). */
  sentAt: number;
  latencyMs: number;
  /** HTTP status; 0 when the request failed. */
  status: number;
}

export interface HealthProber {
  start(): Promise<void>;
  /** Stops polling and returns every sample since `start`. */
  stop(): Promise<HealthSample[]>;
  close(): void;
}

export async function startHealthProber(baseUrl: string, intervalMs = 10): Promise<HealthProber> {
  const child = fork(CHILD, [`${baseUrl}/health`, String(intervalMs)], {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const reply = <T>(type: string): Promise<T> =>
    new Promise((resolve) => {
      const on = (m: { type: string } & T) => {
        if (m.type !== type) return;
        child.off('message', on);
        resolve(m);
      };
      child.on('message', on);
    });
  await reply('ready');
  return {
    async start() {
      const started = reply('started');
      child.send({ type: 'start' });
      await started;
    },
    async stop() {
      const answer = reply<{ samples: [number, number, number][] }>('samples');
      child.send({ type: 'stop' });
      const { samples } = await answer;
      return samples.map(([sentAt, latencyMs, status]) => ({ sentAt, latencyMs, status }));
    },
    close() {
      child.kill();
    },
  };
}
