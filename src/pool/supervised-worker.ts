import type { ContinuationState, GenerationEvent, Generator, SegmentRequest } from '../generation/types.js';
import { WorkerFailure, WorkerProcess, type WorkerMessage, type WorkerProcessOptions } from '../generation/worker/index.js';
import type { PoolWorker, WorkerHealth } from './pool-worker.js';

/** One `log` message of a worker process (docs/worker-protocol.md), tagged with the worker it came from. */
export interface WorkerLogEntry {
  workerId: number;
  /** As the worker wrote it (`debug`, `info`, `warn`, `error` by convention); `info` when it gave none. */
  level: string;
  message: string;
  /** Structured context the worker attached, if any. */
  fields?: Record<string, unknown>;
}

export interface SupervisorOptions {
  /** First restart delay; doubles per consecutive failure. */
  restartBaseMs: number;
  restartMaxMs: number;
  onEvent?: (event: { workerId: number; kind: 'ready' | 'failed' | 'restarting'; detail?: string; delayMs?: number }) => void;
  /** Every `log` message of the current worker process, so it reaches the server's log. */
  onLog?: (entry: WorkerLogEntry) => void;
}

/**
 * Keeps one worker process alive: starts it, admits it only once ready (and warmed),
 * restarts it with exponential backoff when it dies, hangs or fails to start. As a
 * `Generator` it forwards to whichever process is current.
 */
export class SupervisedWorker implements PoolWorker, Generator {
  private process: WorkerProcess | undefined;
  private listeners: (() => void)[] = [];
  private failures = 0;
  private restartTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private lastError: string | null = null;
  private warmupSucceeded = false;
  restarts = 0;
  readonly generator: Generator = this;

  constructor(
    readonly id: number,
    private readonly processOptions: WorkerProcessOptions,
    private readonly supervisor: SupervisorOptions,
  ) {}

  get modelId(): string {
    return this.process?.modelId ?? 'worker';
  }

  get audio() {
    return this.process?.audio ?? null;
  }

  get continuationKind(): string | undefined {
    return this.process?.continuationKind;
  }

  get continuationSchema(): Record<string, unknown> | undefined {
    return this.process?.continuationSchema;
  }

  /** Asks the current process, which knows what it accepts once it has sent `ready`; undefined before. */
  checkContinuation(state: ContinuationState): string | undefined {
    return this.process?.checkContinuation(state);
  }

  get acceptsWork(): boolean {
    return !this.stopped && this.process?.phase === 'ready';
  }

  generate(request: SegmentRequest, signal: AbortSignal): AsyncIterable<GenerationEvent> {
    const current = this.process;
    if (!current) throw new WorkerFailure('worker is not running', 'unavailable');
    return current.generate(request, signal);
  }

  start(): void {
    if (this.stopped || this.process?.alive) return;
    const proc = new WorkerProcess(this.processOptions);
    this.process = proc;
    proc.on('idle', () => this.changed());
    proc.on('dead', (failure: WorkerFailure) => this.onDead(proc, failure));
    proc.on('log', (message: Extract<WorkerMessage, { type: 'log' }>) => this.onLog(proc, message));
    proc.start().then(
      () => {
        this.failures = 0;
        this.lastError = null;
        this.warmupSucceeded = this.processOptions.warmup;
        this.supervisor.onEvent?.({ workerId: this.id, kind: 'ready' });
        this.changed();
      },
      () => undefined, // reported through 'dead'
    );
    this.changed();
  }

  async stop(graceMs: number): Promise<void> {
    this.stopped = true;
    clearTimeout(this.restartTimer);
    await this.process?.shutdown(graceMs);
    this.changed();
  }

  onChange(listener: () => void): void {
    this.listeners.push(listener);
  }

  health(): WorkerHealth {
    const p = this.process;
    const alive = Boolean(p?.alive);
    return {
      ready: alive && (p?.phase === 'ready' || p?.phase === 'busy' || p?.phase === 'draining'),
      process_alive: alive,
      current_model_id: alive ? (p?.modelId ?? null) : null,
      warmup_enabled: this.processOptions.warmup,
      warmup_success: this.warmupSucceeded,
      warmup_error: this.processOptions.warmup ? this.lastError : null,
      warmup_timings: p?.warmupTimings ?? {},
      restarts: this.restarts,
      pid: alive ? (p?.pid ?? null) : null,
    };
  }

  private onDead(proc: WorkerProcess, failure: WorkerFailure): void {
    if (proc !== this.process) return;
    this.lastError = failure.message;
    if (failure.reason === 'warmup_failed' || failure.reason === 'load_failed' || failure.reason === 'start_timeout') {
      this.warmupSucceeded = false;
    }
    this.supervisor.onEvent?.({ workerId: this.id, kind: 'failed', detail: failure.message });
    this.changed();
    if (this.stopped) return;
    // The first failure after a healthy run restarts at once (a crash or a kill for an
    // ignored cancel should cost the queue as little as possible); consecutive failures
    // back off exponentially so a broken model does not spin.
    const delayMs = this.failures === 0 ? 0 : Math.min(this.supervisor.restartMaxMs, this.supervisor.restartBaseMs * 2 ** (this.failures - 1));
    this.failures += 1;
    this.supervisor.onEvent?.({ workerId: this.id, kind: 'restarting', delayMs });
    this.restartTimer = setTimeout(() => {
      this.restarts += 1;
      this.start();
    }, delayMs);
  }

  private onLog(proc: WorkerProcess, message: Extract<WorkerMessage, { type: 'log' }>): void {
    if (proc !== this.process) return;
    const entry: WorkerLogEntry = { workerId: this.id, level: message.level ?? 'info', message: message.message };
    if (message.fields) entry.fields = message.fields;
    this.supervisor.onLog?.(entry);
  }

  private changed(): void {
    for (const listener of this.listeners) listener();
  }
}
