import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { SessionState } from '../session/index.js';

export interface SegmentFigures {
  generationMs: number;
  e2eMs: number;
  /** From segment start to the first media frame sent. */
  firstMediaMs: number | undefined;
  /** From the first generated video frame to the first fragment handed to the socket, when known. */
  firstFragmentMs?: number | undefined;
  bytes: number;
  frames: number;
}

/** What the metrics read from the server at scrape time (cheap: scrapes are rare, changes are not). */
export interface MetricsSources {
  sessionsByState: () => Record<string, number>;
  queueDepth: () => number;
  workers: () => { total: number; available: number };
}

const SESSION_STATES: readonly string[] = Object.values(SessionState);

/**
 * Prometheus metrics for `GET /metrics`, one registry per server instance.
 *
 * Levels that change on every frame (the send backlog) are pushed as deltas and summed
 * here, so a scrape costs nothing per connection; levels that change rarely (sessions
 * by state, queue depth, workers) are read from the server when scraped.
 */
export class ServerMetrics {
  readonly registry = new Registry();
  private sendBacklogBytes = 0;
  private sendBacklogFrames = 0;

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
    help: 'Segment generation time (request start to the last generator event)',
    buckets: [0.1, 0.5, 1, 2, 5, 10, 30, 60],
    registers: [this.registry],
  });
  private readonly e2eSeconds = new Histogram({
    name: 'livegen_segment_e2e_seconds',
    help: 'Segment request received to the segment fully shipped',
    buckets: [0.1, 0.5, 1, 2, 5, 10, 30, 60],
    registers: [this.registry],
  });
  private readonly firstMediaSeconds = new Histogram({
    name: 'livegen_segment_first_media_seconds',
    help: 'Segment start to its first media byte sent (includes the denoise steps)',
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5],
    registers: [this.registry],
  });
  private readonly firstFragmentSeconds = new Histogram({
    name: 'livegen_segment_first_fragment_seconds',
    help: 'First generated video frame of a segment to its first playable fragment sent',
    buckets: [0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1],
    registers: [this.registry],
  });
  private readonly segmentsCompleted = new Counter({
    name: 'livegen_segments_completed_total',
    help: 'Segments fully shipped',
    registers: [this.registry],
  });
  private readonly bytesSent = new Counter({
    name: 'livegen_media_bytes_sent_total',
    help: 'Media bytes sent to clients (init segments included)',
    registers: [this.registry],
  });
  private readonly framesSent = new Counter({
    name: 'livegen_frames_sent_total',
    help: 'Video frames generated and sent',
    registers: [this.registry],
  });
  private readonly workerRestarts = new Counter({
    name: 'livegen_worker_restarts_total',
    help: 'Worker processes restarted after a crash or a failed health check, by worker',
    labelNames: ['worker'],
    registers: [this.registry],
  });
  private readonly errors = new Counter({
    name: 'livegen_errors_total',
    help: 'Session-ending errors and notices, by code',
    labelNames: ['code'],
    registers: [this.registry],
  });

  constructor(sources: MetricsSources) {
    collectDefaultMetrics({ register: this.registry, prefix: 'livegen_' });
    new Gauge({
      name: 'livegen_sessions',
      help: 'Registered sessions by state',
      labelNames: ['state'],
      registers: [this.registry],
      collect() {
        const counts = sources.sessionsByState();
        // Every state is always present (0 included) so rate and absence queries stay simple.
        for (const state of SESSION_STATES) this.set({ state }, counts[state] ?? 0);
        for (const [state, count] of Object.entries(counts)) if (!SESSION_STATES.includes(state)) this.set({ state }, count);
      },
    });
    new Gauge({
      name: 'livegen_queue_depth',
      help: 'Sessions waiting for a worker',
      registers: [this.registry],
      collect() {
        this.set(sources.queueDepth());
      },
    });
    new Gauge({
      name: 'livegen_workers',
      help: 'Workers by state',
      labelNames: ['state'],
      registers: [this.registry],
      collect() {
        const { total, available } = sources.workers();
        this.set({ state: 'available' }, available);
        this.set({ state: 'busy' }, total - available);
      },
    });
    const backlog = () => ({ bytes: this.sendBacklogBytes, frames: this.sendBacklogFrames });
    new Gauge({
      name: 'livegen_send_queue_bytes',
      help: 'Bytes handed to client sockets and not yet written, over all connections',
      registers: [this.registry],
      collect() {
        this.set(backlog().bytes);
      },
    });
    new Gauge({
      name: 'livegen_send_queue_frames',
      help: 'WebSocket frames handed to client sockets and not yet written, over all connections',
      registers: [this.registry],
      collect() {
        this.set(backlog().frames);
      },
    });
  }

  private readonly llmSeconds = new Histogram({
    name: 'livegen_llm_request_seconds',
    help: 'LLM calls of the prompt layer, by provider, operation and outcome (ok, timeout, rate_limited, server_error, client_error, network, malformed, no_api_key, aborted)',
    labelNames: ['provider', 'operation', 'outcome'],
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 1.8, 3, 5, 10, 20],
    registers: [this.registry],
  });
  private readonly promptFallbacks = new Counter({
    name: 'livegen_prompt_fallbacks_total',
    help: 'Prompt operations that fell back: to a later provider (kind=provider) or to the prompt the session already had (kind=raw)',
    labelNames: ['operation', 'kind'],
    registers: [this.registry],
  });
  private readonly promptBlocks = new Counter({
    name: 'livegen_prompt_blocks_total',
    help: 'Prompts the safety filter blocked, by where they came from and which filter',
    labelNames: ['source', 'filter'],
    registers: [this.registry],
  });

  /** Prompt layer (PromptObserver): one LLM attempt. */
  attempt(operation: string, provider: string, outcome: string, seconds: number): void {
    this.llmSeconds.observe({ provider, operation, outcome }, seconds);
  }

  /** Prompt layer (PromptObserver): an operation fell back. */
  fallback(operation: string, kind: 'raw' | 'provider'): void {
    this.promptFallbacks.inc({ operation, kind });
  }

  /** Prompt layer (PromptObserver): the safety filter blocked a prompt. */
  blocked(source: string, filter: string): void {
    this.promptBlocks.inc({ source, filter });
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
    this.segmentsCompleted.inc();
    this.generationSeconds.observe(f.generationMs / 1000);
    this.e2eSeconds.observe(f.e2eMs / 1000);
    if (f.firstMediaMs !== undefined) this.firstMediaSeconds.observe(f.firstMediaMs / 1000);
    if (f.firstFragmentMs !== undefined) this.firstFragmentSeconds.observe(f.firstFragmentMs / 1000);
    this.bytesSent.inc(f.bytes);
    this.framesSent.inc(f.frames);
  }

  /**
   * A connection's send backlog grew (frame queued) or shrank (frame written): positive
   * deltas on send, negative ones in the send callback. The gauges are the running sums.
   */
  sendBacklogChanged(deltaBytes: number, deltaFrames: number): void {
    this.sendBacklogBytes += deltaBytes;
    this.sendBacklogFrames += deltaFrames;
  }

  workerRestarted(workerId: number | string): void {
    this.workerRestarts.inc({ worker: String(workerId) });
  }

  error(code: string): void {
    this.errors.inc({ code });
  }
}
