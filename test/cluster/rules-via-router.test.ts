import { afterAll, beforeAll, describe } from 'vitest';
import { protocolRules } from '../server/rules.suite.js';
import { startRedis, type TestRedis } from '../support/redis-server.js';
import { startInProcessCluster } from './in-process.js';

/**
 * PROTOCOL.md's rules through a router: every test gets a router and one replica of its
 * own (in this process, on real loopback sockets) sharing a real redis-server, with the
 * test's config patch applied to both, and a client that talks only to the router.
 */
let redis: TestRedis;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis?.stop();
});

describe('PROTOCOL.md rules through a router in front of a replica', () => {
  protocolRules(async (patch, parts) => {
    const cluster = await startInProcessCluster(redis.url, { patch, generators: () => parts?.generators });
    const replicaSessions = async () => (await Promise.all(cluster.replicas.map((r) => r.inspect()))).flatMap((s) => s.sessions);
    return {
      wsUrl: cluster.wsUrl,
      // What the router holds (its /health count) and what the replicas hold.
      sessionCount: async () => {
        const health = (await (await fetch(`${cluster.router.url}/health`)).json()) as { sessions: number };
        return health.sessions + (await replicaSessions()).length;
      },
      sessions: replicaSessions,
      close: () => cluster.close(),
    };
  });
});
