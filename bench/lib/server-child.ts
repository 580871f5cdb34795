/**
 * A livegen server alone in its own process, so a benchmark can read its RSS and CPU
 * without the clients' share. Started by `server-process.ts`; speaks over the IPC channel.
 * argv[2]: the config patch as JSON.
 */
import { pino } from 'pino';
import { createLivegenServer } from '../../src/server/index.js';
import { benchConfig } from './config.js';
import { PrerenderedGenerator, prerender } from './prerendered.js';

const patch = JSON.parse(process.argv[2] ?? '{}') as Record<string, unknown>;
/** `prerendered`: every worker replays the same pre-rendered frames at realtime pace instead of rendering. */
const options = JSON.parse(process.argv[3] ?? '{}') as { prerendered?: boolean };
const config = benchConfig(patch);
let generators: PrerenderedGenerator[] | undefined;
if (options.prerendered) {
  const { width, height, fps } = config.default_request.sampling;
  const frames = await prerender(width, height, fps, 48);
  generators = Array.from({ length: config.pool.workers }, () => new PrerenderedGenerator(frames, 'realtime'));
}
const server = createLivegenServer(config, { logger: pino({ level: 'silent' }), ...(generators ? { generators } : {}) });
const url = await server.listen();
const send = (message: unknown): void => void process.send?.(message);
send({ type: 'ready', url });

process.on('message', async (message: { type: string; gc?: boolean; id?: number }) => {
  if (message.type === 'stats') {
    const gc = (globalThis as { gc?: () => void }).gc;
    if (message.gc && gc) gc();
    const mem = process.memoryUsage();
    const cpu = process.cpuUsage();
    const snapshot = await server.inspect();
    send({
      type: 'stats',
      id: message.id,
      rss: mem.rss,
      heapUsed: mem.heapUsed,
      heapTotal: mem.heapTotal,
      external: mem.external,
      arrayBuffers: mem.arrayBuffers,
      cpuUserUs: cpu.user,
      cpuSystemUs: cpu.system,
      sessions: snapshot.sessions.length,
      queueDepth: snapshot.queueDepth,
    });
  } else if (message.type === 'close') {
    void server.close().finally(() => process.exit(0));
  }
});
process.on('disconnect', () => process.exit(0));
