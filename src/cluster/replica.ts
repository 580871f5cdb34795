/**
 * What `livegen serve` does differently when its config has a `cluster` section: it keeps
 * the states behind resume tokens in Redis (so a router can move a session to another
 * replica, or a client resume on any router), holds token claims cluster-wide, announces
 * itself to routers on every heartbeat, and trusts a router's "continued story" headers.
 * Loaded only in that case, so a single server never loads the Redis client.
 */
import { hostname } from 'node:os';
import type { IncomingMessage } from 'node:http';
import type { ClusterMembership, ReplicaDescription } from '../server/app.js';
import type { ClusterConfig } from '../server/config.js';
import type { ContinuedStory } from '../server/session-driver.js';
import { createRedisClient, RedisContinuationStore } from '../store/redis.js';
import { RedisClaimLock } from './claims.js';
import { ReplicaAgent } from './replica-agent.js';
import { RedisReplicaRegistry } from './replicas.js';
import { readStory } from './story-headers.js';

export interface JoinOptions {
  /** How long a resume-token claim may last (longer than a session waits before it is active). */
  claimTtlMs: number;
  /** Where `LIVEGEN_CLUSTER_SECRET` is read (default: process.env). */
  env?: NodeJS.ProcessEnv;
  onError?: (err: unknown) => void;
}

/** Names shared by routers and replicas: the key prefix and the queue's channel. */
export function clusterKeys(config: ClusterConfig): { namespace: string; channel: string; presencePrefix: string } {
  const namespace = `${config.namespace}:`;
  return { namespace, channel: `${namespace}queue:events`, presencePrefix: `${namespace}owner:` };
}

/** This process's id in the cluster: the configured one, or hostname-pid. */
export function clusterId(config: ClusterConfig): string {
  return config.id ?? `${hostname()}-${process.pid}`.replace(/[^A-Za-z0-9._-]/g, '-');
}

export function joinCluster(config: ClusterConfig, options: JoinOptions): ClusterMembership {
  const env = options.env ?? process.env;
  const client = createRedisClient(config.redis_url);
  const { namespace, channel } = clusterKeys(config);
  const secret = env.LIVEGEN_CLUSTER_SECRET || undefined;
  const id = clusterId(config);
  const registry = new RedisReplicaRegistry(client, namespace);
  let agent: ReplicaAgent | undefined;
  return {
    id,
    resumeStore: new RedisContinuationStore(client, { namespace, ownsClient: false }),
    claims: new RedisClaimLock(client, namespace, options.claimTtlMs),
    start(describe: (url: string) => ReplicaDescription, listenUrl: string): void {
      const url = config.advertise_url ?? listenUrl;
      agent = new ReplicaAgent(client, registry, {
        describe: () => ({ id, url, ...describe(url) }),
        heartbeatMs: config.heartbeat_ms,
        presenceTtlMs: config.presence_ttl_ms,
        channel,
        onError: options.onError,
      });
    },
    nudge: () => agent?.nudge(),
    drain: async () => {
      await agent?.drain();
    },
    continuedStory: (req: IncomingMessage): ContinuedStory | undefined => readStory(req, secret),
    async close(): Promise<void> {
      await agent?.close();
      await client.quit().catch(() => client.disconnect());
    },
  };
}
