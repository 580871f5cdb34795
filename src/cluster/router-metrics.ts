import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** A router's Prometheus metrics: grants, migrations, proxied bytes, hop latency, and the cluster it sees. */
export class RouterMetrics {
  readonly registry = new Registry();

  private readonly grants = new Counter({
    name: 'livegen_router_grants_total',
    help: 'Sessions granted a replica by the global queue, by kind (new session or a move)',
    labelNames: ['kind'],
    registers: [this.registry],
  });
  private readonly queueWait = new Histogram({
    name: 'livegen_router_queue_wait_seconds',
    help: 'Time in the global queue until a replica was granted',
    buckets: [0.001, 0.01, 0.1, 0.5, 1, 5, 15, 60, 300],
    registers: [this.registry],
  });
  private readonly migrations = new Counter({
    name: 'livegen_router_migrations_total',
    help: 'Sessions moved to another replica on the same socket, by reason',
    labelNames: ['reason'],
    registers: [this.registry],
  });
  private readonly bytes = new Counter({
    name: 'livegen_router_proxied_bytes_total',
    help: 'Bytes passed between clients and replicas, by direction (up = to the replica)',
    labelNames: ['direction'],
    registers: [this.registry],
  });
  private readonly hopSeconds = new Histogram({
    name: 'livegen_router_hop_connect_seconds',
    help: 'Time to open the upstream socket to a granted replica (the extra hop a router adds)',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1],
    registers: [this.registry],
  });
  private readonly refusals = new Counter({
    name: 'livegen_router_errors_total',
    help: 'Error frames the router itself sent, by code',
    labelNames: ['code'],
    registers: [this.registry],
  });

  constructor(read: { sessions: () => number; queueDepth: () => number; replicas: () => number; clientBacklogBytes: () => number; heldUpstreams: () => number }) {
    new Gauge({ name: 'livegen_router_sessions', help: 'Client sockets this router holds', registers: [this.registry], collect() { this.set(read.sessions()); } });
    new Gauge({ name: 'livegen_router_queue_depth', help: 'Sessions waiting in the global queue', registers: [this.registry], collect() { this.set(read.queueDepth()); } });
    new Gauge({ name: 'livegen_router_replicas', help: 'Live replicas this router sees', registers: [this.registry], collect() { this.set(read.replicas()); } });
    // What backpressure leaves in this router's memory: bounded by the high watermark per session.
    new Gauge({
      name: 'livegen_router_client_backlog_bytes',
      help: 'Bytes queued to clients and not yet handed to the kernel, over all sessions',
      registers: [this.registry],
      collect() {
        this.set(read.clientBacklogBytes());
      },
    });
    new Gauge({
      name: 'livegen_router_held_upstreams',
      help: "Sessions whose replica socket is not read because the client's backlog passed the high watermark",
      registers: [this.registry],
      collect() {
        this.set(read.heldUpstreams());
      },
    });
  }

  granted(waitMs: number, move: boolean): void {
    this.grants.inc({ kind: move ? 'move' : 'new' });
    this.queueWait.observe(waitMs / 1000);
  }

  migrated(reason: string): void {
    this.migrations.inc({ reason });
  }

  proxied(direction: 'up' | 'down', bytes: number): void {
    this.bytes.inc({ direction }, bytes);
  }

  hop(ms: number): void {
    this.hopSeconds.observe(ms / 1000);
  }

  refused(code: string): void {
    this.refusals.inc({ code });
  }
}
