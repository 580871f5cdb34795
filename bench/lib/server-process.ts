/** Starts `server-child.ts` in a child process and talks to it. */
import { fork, type ChildProcess } from 'node:child_process';
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

export interface ServerProcess {
  url: string;
  wsUrl: string;
  pid: number;
  /** Memory, CPU and session counts of the server process; `gc` runs a full GC first. */
  stats(gc?: boolean): Promise<ServerStats>;
  close(): Promise<void>;
}

const CHILD = fileURLToPath(new URL('./server-child.ts', import.meta.url));
const REPO = fileURLToPath(new URL('../..', import.meta.url));

export interface ServerProcessOptions {
  /** Workers replay pre-rendered frames at realtime pace (no synthetic rendering cost). */
  prerendered?: boolean;
}

export async function startServerProcess(patch: Record<string, unknown>, options: ServerProcessOptions = {}): Promise<ServerProcess> {
  const child: ChildProcess = fork(CHILD, [JSON.stringify(patch), JSON.stringify(options)], {
    cwd: REPO,
    execArgv: ['--import', 'tsx', '--expose-gc'],
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
  return {
    url,
    wsUrl: `${url.replace(/^http/, 'ws')}/v1/stream`,
    pid: child.pid as number,
    stats(gc = false) {
      const id = nextId++;
      return new Promise<ServerStats>((resolve) => {
        const onMessage = (m: ServerStats & { type: string; id: number }) => {
          if (m.type !== 'stats' || m.id !== id) return;
          child.off('message', onMessage);
          resolve(m);
        };
        child.on('message', onMessage);
        child.send({ type: 'stats', gc, id });
      });
    },
    async close() {
      if (child.exitCode === null && child.connected) child.send({ type: 'close' });
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
