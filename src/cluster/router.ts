/**
 * `livegen router`: the public face of a cluster. It serves `/v1/stream` (each client's
 * socket stays here while an upstream socket goes to the granted replica), the player
 * page, `/health`, `/healthz`, `/readyz`, `/status` (the cluster) and `/metrics`. It keeps
 * no state but its open sockets: the queue, the replicas and the sessions' states are in
 * Redis, so several routers run side by side behind any TCP load balancer.
 */
import type { IncomingMessage, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { pino, type Logger } from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';
import { CloseCode, encodeServerMessage, ErrorCode, errorMessage } from '../protocol/index.js';
import { AccessControl, parseEnvApiKeys } from '../server/access.js';
import { packageVersion } from '../server/app.js';
import type { ServeConfig } from '../server/config.js';
import { MAX_INIT_FRAME_BYTES, sessionPolicyFrom } from '../server/policy.js';
import { createHttpFront } from '../server/http-front.js';
import { sendJson, type Route } from '../server/routes.js';
import { refuseUpgrade } from '../server/upgrade.js';
import { createRedisClient, RedisConcurrencyCounter, RedisRateLimiter, StoreUnavailableError } from '../store/redis.js';
import { ClusterPlacement } from './placement.js';
import { RedisAdmission } from './redis-admission.js';
import { clusterId, clusterKeys } from './replica.js';
import { RedisReplicaRegistry, type ReplicaRecord } from './replicas.js';
import { RoutedSession } from './routed-session.js';
import { RouterMetrics } from './router-metrics.js';

export interface LivegenRouter {
  readonly id: string;
  readonly logger: Logger;
  listen(): Promise<string>;
  readonly url: string;
  /** Stops taking connections, closes every client (1001) and leaves the cluster. */
  close(): Promise<void>;
}

export interface RouterOverrides {
  logger?: Logger;
  env?: NodeJS.ProcessEnv;
  webRoot?: string;
}

export function createRouter(config: ServeConfig, overrides: RouterOverrides = {}): LivegenRouter {
  const cluster = config.cluster;
  if (!cluster) throw new Error('livegen router needs a cluster section (cluster.redis_url)');
  const env = overrides.env ?? process.env;
  const logger = overrides.logger ?? pino({ level: config.logging.level, name: 'livegen-router' });
  const policy = sessionPolicyFrom(config);
  const id = clusterId(cluster);
  const { namespace, channel, presencePrefix } = clusterKeys(cluster);
  const client = createRedisClient(cluster.redis_url);
  const registry = new RedisReplicaRegistry(client, namespace);
  const placement = new ClusterPlacement(client, { namespace, routerId: id, presencePrefix, channel });
  const admission = new RedisAdmission(client, placement, {
    namespace,
    ownerId: id,
    maxQueue: config.streaming.max_queue,
    depthUpdateIntervalMs: config.streaming.queue_depth_update_ms,
    presenceTtlMs: cluster.presence_ttl_ms,
    heartbeatMs: cluster.heartbeat_ms,
  });
  // One count of sessions over every router (queued and streaming), held under this router's presence.
  const sessionCount = new RedisConcurrencyCounter(client, { namespace, holderId: id, leaseMs: cluster.presence_ttl_ms, ownsClient: false });
  const perKey = new RedisConcurrencyCounter(client, { namespace: `${namespace}perkey:`, holderId: id, leaseMs: cluster.presence_ttl_ms, ownsClient: false });
  // Keys, origins, the connection rate per network and sessions per key, counted over every router.
  const access = new AccessControl(config, {
    apiKeys: parseEnvApiKeys(env.LIVEGEN_API_KEYS),
    rateLimiter: new RedisRateLimiter(client, { namespace: `${namespace}rate:`, ownsClient: false }),
    sessionCounter: perKey,
  });
  const sessions = new Set<RoutedSession>();
  /** Client sockets whose opening frame has not arrived yet: bounded by `limits.max_pending_inits`, as on a replica. */
  let pendingInits = 0;
  let replicas: ReplicaRecord[] = [];
  let redisUp = false;
  let shuttingDown = false;

  const metrics = new RouterMetrics({
    sessions: () => sessions.size,
    queueDepth: () => admission.queueDepth,
    replicas: () => replicas.length,
    // Every client socket still open, a session that ended while its client drains included.
    clientBacklogBytes: () => [...wss.clients].reduce((n, ws) => n + ws.bufferedAmount, 0),
    heldUpstreams: () => [...sessions].filter((s) => s.holdingUpstream).length,
  });
  const { limits } = config;
  const services = {
    routerId: id,
    admission,
    placement,
    registry,
    // Redis unreachable: the session waits for it like a queued one, up to the queue timeout.
    takeSessionPlace: async (signal: AbortSignal) => {
      const deadline = performance.now() + policy.queueTimeoutMs;
      for (;;) {
        try {
          return await sessionCount.acquire('sessions', config.streaming.max_sessions);
        } catch (err) {
          if (!(err instanceof StoreUnavailableError) || signal.aborted || performance.now() > deadline) throw err;
          await new Promise((resolve) => setTimeout(resolve, 250));
        }
      }
    },
    releaseSessionPlace: () => void sessionCount.release('sessions').catch(() => undefined),
    metrics,
    logger,
    secret: env.LIVEGEN_CLUSTER_SECRET || undefined,
    initTimeoutMs: policy.initTimeoutSeconds * 1000,
    queueTimeoutMs: policy.queueTimeoutMs,
    highWaterBytes: limits.send_high_water_bytes,
    lowWaterBytes: limits.send_low_water_bytes,
    stallTimeoutMs: limits.client_stall_timeout_seconds * 1000,
    maxFrameBytes: MAX_INIT_FRAME_BYTES,
  };

  // The cluster as this router sees it. A session whose replica stays missing from it moves
  // on; "stays": a Redis restarted empty lists nobody until the replicas' next beats, and
  // their sessions are fine (their sockets are up), so one empty read moves nothing.
  const missingSince = new Map<string, number>();
  const watch = setInterval(() => {
    registry.list().then(
      (list) => {
        replicas = list;
        redisUp = true;
        const now = performance.now();
        const alive = new Set(list.map((r) => r.id));
        for (const id of missingSince.keys()) if (alive.has(id)) missingSince.delete(id);
        for (const session of sessions) {
          const id = session.replica;
          if (id === undefined || alive.has(id)) continue;
          const since = missingSince.get(id) ?? now;
          missingSince.set(id, since);
          if (now - since >= cluster.presence_ttl_ms) session.dropUpstream();
        }
      },
      () => {
        // Redis down says nothing about replicas: what was missing starts counting afresh.
        redisUp = false;
        missingSince.clear();
      },
    );
  }, cluster.heartbeat_ms);
  watch.unref();

  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_INIT_FRAME_BYTES, perMessageDeflate: false });
  const heartbeatMs = limits.heartbeat_interval_seconds * 1000;
  const alive = new WeakMap<WebSocket, boolean>();
  const pings =
    heartbeatMs > 0
      ? setInterval(() => {
          for (const ws of wss.clients) {
            if (alive.get(ws) === false) {
              ws.terminate();
              continue;
            }
            alive.set(ws, false);
            ws.ping();
          }
        }, heartbeatMs)
      : undefined;
  pings?.unref();

  const status = () => {
    const now = Date.now();
    return {
      service: 'livegen-router',
      router_id: id,
      version: packageVersion(),
      redis: redisUp ? 'up' : 'down',
      sessions: sessions.size,
      queue_size: admission.queueDepth,
      total_gpus: replicas.reduce((n, r) => n + r.workers, 0),
      available_gpus: replicas.filter((r) => !r.draining).reduce((n, r) => n + r.available, 0),
      replicas: replicas.map((r) => ({
        id: r.id,
        url: r.url,
        model_id: r.model_id,
        preset: r.preset,
        workers: r.workers,
        ready: r.ready,
        available: r.available,
        sessions: r.sessions,
        queue: r.queue,
        draining: r.draining,
        version: r.version,
        heartbeat_age_ms: Math.max(0, now - r.beat_at),
        routed_here: [...sessions].filter((s) => s.replica === r.id).length,
      })),
    };
  };

  const routes = new Map<string, Route>([
    ['/health', (_req, res) => sendJson(res, 200, { status: 'ok', service: 'livegen-router', sessions: sessions.size, stream_mode: config.streaming.stream_mode, ts: new Date().toISOString() })],
    ['/healthz', (_req, res) => sendJson(res, 200, { status: 'ok', service: 'livegen-router', ts: new Date().toISOString() })],
    [
      '/readyz',
      (_req, res) => {
        const ready = redisUp && !shuttingDown && replicas.some((r) => !r.draining && r.ready > 0);
        const s = status();
        sendJson(res, ready ? 200 : 503, {
          status: ready ? 'ready' : 'warming',
          service: 'livegen-router',
          ready_gpu_workers: replicas.reduce((n, r) => n + r.ready, 0),
          total_gpus: s.total_gpus,
          available_gpus: s.available_gpus,
          queue_size: s.queue_size,
          redis: s.redis,
          ts: new Date().toISOString(),
        });
      },
    ],
    ['/status', (_req, res) => sendJson(res, 200, status())],
    [
      '/metrics',
      async (_req, res) => {
        const text = await metrics.registry.metrics();
        res.writeHead(200, { 'content-type': metrics.registry.contentType });
        res.end(text);
      },
    ],
  ]);
  const webRoot = overrides.webRoot ?? fileURLToPath(new URL('../../web/dist', import.meta.url));

  const http: Server = createHttpFront(limits, { routes, access, webRoot, logger });
  http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => undefined);
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/v1/stream') return refuseUpgrade(socket, 404, `no WebSocket endpoint at ${path}`);
    if (shuttingDown) return refuseUpgrade(socket, 503, 'router is shutting down');
    access.checkUpgrade(req).then(
      (decision) => {
        if (socket.destroyed) return;
        if (!decision.ok) {
          const headers: Record<string, string> = decision.refusal.status === 401 ? { 'WWW-Authenticate': 'Bearer' } : {};
          return refuseUpgrade(socket, decision.refusal.status, decision.refusal.reason, headers);
        }
        wss.handleUpgrade(req, socket, head, (ws) => {
          alive.set(ws, true);
          ws.on('pong', () => alive.set(ws, true));
          ws.on('error', () => undefined);
          // Frames wait (the init among them) until the session listens.
          ws.pause();
          void admitKey(ws, req, decision.keyId);
        });
      },
      (err: unknown) => {
        logger.error({ err }, 'access check failed');
        refuseUpgrade(socket, 503, 'access control is unavailable; retry later');
      },
    );
  });

  /** A key at its session limit is refused (1008, as on a replica); otherwise the session starts and gives its place back when it ends. */
  async function admitKey(ws: WebSocket, req: IncomingMessage, keyId: string | undefined): Promise<void> {
    let admitted: boolean;
    try {
      admitted = await access.openSession(keyId);
    } catch (err) {
      logger.error({ err }, 'session counter failed');
      admitted = false;
    }
    if (!admitted) {
      if (ws.readyState === ws.OPEN) {
        ws.send(encodeServerMessage(errorMessage(ErrorCode.SESSION_REJECTED, 'this API key holds its maximum of concurrent sessions', true)));
        refuseSocket(ws, CloseCode.POLICY_VIOLATION, 'session limit for this key');
      }
      metrics.refused(ErrorCode.SESSION_REJECTED);
      return;
    }
    if (ws.readyState !== ws.OPEN) {
      void access.closeSession(keyId).catch(() => undefined);
      return;
    }
    // Connections that have not sent their init cost memory and a socket but no session
    // place; without this bound a client could hold any number of them (PROTOCOL.md's
    // rules hold through a router as on a replica: session_rejected, close 1013).
    if (pendingInits >= limits.max_pending_inits) {
      ws.send(encodeServerMessage(errorMessage(ErrorCode.SESSION_REJECTED, `router is full: too many connections waiting to initialise (${limits.max_pending_inits})`, true)));
      refuseSocket(ws, CloseCode.TRY_AGAIN_LATER, 'router full');
      metrics.refused(ErrorCode.SESSION_REJECTED);
      void access.closeSession(keyId).catch(() => undefined);
      return;
    }
    const session = new RoutedSession(services, ws, req);
    sessions.add(session);
    pendingInits += 1;
    void session.opened.then(() => (pendingInits -= 1));
    // Uncounted as soon as it ends (before its close frame goes), not when the socket has closed.
    void session.done.then(() => sessions.delete(session));
    ws.resume();
    ws.once('close', () => {
      sessions.delete(session);
      void access.closeSession(keyId).catch(() => undefined);
    });
  }

  /**
   * Closes a socket refused before its session started. It was paused until a session
   * would listen: read again, so the client's answering close frame is seen and the
   * socket goes now rather than at ws's 30 s close timeout.
   */
  function refuseSocket(ws: WebSocket, code: number, reason: string): void {
    ws.resume();
    ws.close(code, reason);
  }

  let baseUrl = '';
  return {
    id,
    logger,
    get url() {
      return baseUrl;
    },
    listen() {
      return new Promise<string>((resolve, reject) => {
        http.once('error', reject);
        http.listen(config.server.port, config.server.host, () => {
          http.off('error', reject);
          const address = http.address() as AddressInfo;
          const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
          baseUrl = `http://${host}:${address.port}`;
          resolve(baseUrl);
        });
      });
    },
    async close() {
      shuttingDown = true;
      clearInterval(watch);
      if (pings) clearInterval(pings);
      for (const ws of wss.clients) ws.close(1001, 'router shutting down');
      admission.close();
      await sessionCount.close();
      await perKey.close();
      wss.close();
      await client.quit().catch(() => client.disconnect());
      const closed = new Promise<void>((resolve) => http.close(() => resolve()));
      http.closeAllConnections();
      await closed;
    },
  };
}
