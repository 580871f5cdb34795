/**
 * A cluster inside the test process: a router (`createRouter`) and replicas
 * (`createLivegenServer` with `joinCluster`, as `livegen serve` builds them) on real
 * loopback sockets, sharing a real redis-server. Much cheaper than processes, so a test
 * can have a cluster of its own; and the replicas can take test generators and be
 * inspected.
 */
import { pino, type Logger } from 'pino';
import { createRouter, type LivegenRouter } from '../../src/cluster/router.js';
import { joinCluster } from '../../src/cluster/replica.js';
import type { Generator } from '../../src/generation/index.js';
import { createLivegenServer, mergeConfigInput, parseConfig, type LivegenServer } from '../../src/server/index.js';
import { TEST_CONFIG } from '../server/harness.js';
import { waitUntil } from './processes.js';

export interface InProcessCluster {
  router: LivegenRouter;
  replicas: LivegenServer[];
  /** The router's `/v1/stream`. */
  wsUrl: string;
  /** One sample of the router's `/metrics` (value by series, labels included: `name{label="x"}`). */
  routerMetrics(): Promise<Map<string, number>>;
  close(): Promise<void>;
}

export interface InProcessClusterOptions {
  /** Patch over the test config, for the router and every replica alike. */
  patch?: Record<string, unknown>;
  replicas?: number;
  /** Generators of replica i (one per worker slot); default: the configured synthetic one. */
  generators?: (replica: number) => Generator[] | undefined;
  routerLogger?: Logger;
}

let clusters = 0;

export async function startInProcessCluster(redisUrl: string, options: InProcessClusterOptions = {}): Promise<InProcessCluster> {
  // A namespace of its own: nothing a previous test left in Redis (records, queue, counts) is seen.
  const namespace = `t${process.pid}-${++clusters}`;
  const configFor = (id: string) =>
    parseConfig(
      mergeConfigInput(mergeConfigInput(TEST_CONFIG, options.patch ?? {}), {
        cluster: { redis_url: redisUrl, id, namespace, heartbeat_ms: 100, presence_ttl_ms: 1000 },
      }),
    );
  // No LIVEGEN_CLUSTER_SECRET from the environment: routers and replicas agree on none.
  const env = {};
  const replicas: LivegenServer[] = [];
  let router: LivegenRouter | undefined;
  const close = async () => {
    await router?.close();
    await Promise.all(replicas.map((r) => r.close(0)));
  };
  try {
    for (let i = 0; i < (options.replicas ?? 1); i++) {
      const config = configFor(`replica-${i}`);
      if (!config.cluster) throw new Error('the replica config has no cluster section');
      const membership = joinCluster(config.cluster, { claimTtlMs: 60_000, env });
      const server = createLivegenServer(config, { logger: pino({ level: 'silent' }), cluster: membership, generators: options.generators?.(i) });
      replicas.push(server);
      await server.listen();
    }
    router = createRouter(configFor('router'), { logger: options.routerLogger ?? pino({ level: 'silent' }), env });
    const base = await router.listen();
    // Ready: Redis answers and the router lists a replica with a ready worker.
    await waitUntil(async () => ((await fetch(`${base}/readyz`)).status === 200 ? true : undefined), 'the router to see a ready replica');
    return {
      router,
      replicas,
      wsUrl: `${base.replace(/^http/, 'ws')}/v1/stream`,
      routerMetrics: async () => parseMetrics(await (await fetch(`${base}/metrics`)).text()),
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

/** Prometheus text to a map of series to value (comments skipped). */
export function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    out.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return out;
}
