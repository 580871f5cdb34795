import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface SegmentFigures {
  generationMs: number;
  e2eMs: number;
  /** From segment start to the first media frame sent. */
  firstMediaMs: number | undefined;
  bytes: number;
  frames: number;
}

/** Prometheus metrics for `GET /metrics`, one registry per server instance. */
export class ServerMetrics {
  readonly registry = new Registry();
  private readonly sessionsOpened = new Counter({
    name: 'livegen_sessions_opened_total',
    help: 'WebSocket sessions registered',
    registers: [this.registry],
  });
  private readonly sessionsRejected = new Counter({
    name: 'livegen_sessions_rejected_total',
    help: 'Connections refused because the server held its maximum of sessions',
    registers: [this.registry],
  });
  private readonly sessionsEnded = new Counter({
    name: 'livegen_sessions_ended_total',
    help: 'Sessions ended, by final state',
    labelNames: ['state'],
    registers: [this.registry],
  });
  private readonly queueWaitSeconds = new Histogram({
    name: 'livegen_queue_wait_seconds',
    help: 'Time from init to a bound worker',
    buckets: [0.001, 0.01, 0.1, 0.5, 1, 5, 15, 60, 300],
    registers: [this.registry],
  });
  private readonly generationSeconds = new Histogram({
    name: 'livegen_segment_generation_seconds',
    help: 'Segment generation time',
    buckets: [0.1, 0.5, 1, 2, 5, 10, 30, 60],
    registers: [this.registry],
  });
  private readonly e2eSeconds = new Histogram({
    name: 'livegen_segment_e2e_seconds',
    help: 'Segment request to last media frame sent',
    buckets: [0.1, 0.5, 1, 2, 5, 10, 30, 60],
    registers: [this.registry],
  });
  private readonly firstMediaSeconds = new Histogram({
    name: 'livegen_segment_first_media_seconds',
    help: 'Segment start to first media byte sent',
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5],
    registers: [this.registry],
  });
  private readonly bytesSent = new Counter({
    name: 'livegen_media_bytes_sent_total',
    help: 'Media bytes sent to clients',
    registers: [this.registry],
  });
  private readonly framesSent = new Counter({
    name: 'livegen_frames_sent_total',
    help: 'Video frames generated and sent',
    registers: [this.registry],
  });
  private readonly errors = new Counter({
    name: 'livegen_errors_total',
    help: 'Session-ending errors and notices, by code',
    labelNames: ['code'],
    registers: [this.registry],
  });

  constructor(gauges: { sessionsByState: () => Record<string, number>; queueDepth: () => number; workers: () => { total: number; available: number } }) {
    collectDefaultMetrics({ register: this.registry, prefix: 'livegen_process_' });
    new Gauge({
      name: 'livegen_sessions',
      help: 'Registered sessions by state',
      labelNames: ['state'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const [state, count] of Object.entries(gauges.sessionsByState())) this.set({ state }, count);
      },
    });
    new Gauge({
      name: 'livegen_queue_depth',
      help: 'Sessions waiting for a worker',
      registers: [this.registry],
      collect() {
        this.set(gauges.queueDepth());
      },
    });
    new Gauge({
      name: 'livegen_workers',
      help: 'Workers by availability',
      labelNames: ['availability'],
      registers: [this.registry],
      collect() {
        const { total, available } = gauges.workers();
        this.set({ availability: 'available' }, available);
        this.set({ availability: 'busy' }, total - available);
      },
    });
  }

  sessionOpened(): void {
    this.sessionsOpened.inc();
  }

  sessionRejected(): void {
    this.sessionsRejected.inc();
    this.errors.inc({ code: 'session_rejected' });
  }

  sessionClosed(state: string): void {
    this.sessionsEnded.inc({ state });
  }

  queueWait(ms: number): void {
    this.queueWaitSeconds.observe(ms / 1000);
  }

  segmentCompleted(f: SegmentFigures): void {
    this.generationSeconds.observe(f.generationMs / 1000);
    this.e2eSeconds.observe(f.e2eMs / 1000);
    if (f.firstMediaMs !== undefined) this.firstMediaSeconds.observe(f.firstMediaMs / 1000);
    this.bytesSent.inc(f.bytes);
    this.framesSent.inc(f.frames);
  }

  error(code: string): void {
    this.errors.inc({ code });
  }
}
