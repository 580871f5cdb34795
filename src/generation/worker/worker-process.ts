import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import { z } from 'zod';
import { AsyncQueue, abortable } from '../../async/index.js';
import type { AudioFormat, ContinuationState, GenerationEvent, Generator, SegmentRequest } from '../types.js';
import {
  WORKER_PROTOCOL,
  WorkerProtocolError,
  WorkerRecordReader,
  encodeJobRequest,
  type ControlMessage,
  type WorkerJobRequest,
  type WorkerMessage,
  type WorkerRecord,
} from './protocol.js';

export interface WorkerProcessOptions {
  command: string;
  args: readonly string[];
  env?: Record<string, string>;
  cwd?: string;
  /** The GPU this worker owns: exported as `CUDA_VISIBLE_DEVICES`. */
  gpuId: number;
  /** From spawn to `ready`. */
  startTimeoutMs: number;
  /** Run a warmup job before declaring ready. */
  warmup: boolean;
  warmupTimeoutMs: number;
  /** Warmup request (small); required when `warmup` is on. */
  warmupRequest?: WorkerJobRequest;
  /** A job with no progress, frame or audio for this long is a hung worker. */
  progressTimeoutMs: number;
  /** How long a cancelled job may take to stop before the process is killed. */
  cancelTimeoutMs: number;
  /** Largest binary record accepted (a frame of the largest size served). */
  maxRecordBytes: number;
  /** Bytes of received-but-unconsumed media at which stdout is paused (default 32 MiB). */
  maxBufferedBytes?: number;
}

const DEFAULT_MAX_BUFFERED_BYTES = 32 * 1024 * 1024;

/**
 * Why a job or the process failed. All but two mean the process is gone (or never came
 * up): `job_error` and `invalid_continuation` fail one job and leave the worker ready.
 * `invalid_continuation` is the worker refusing the request's continuation state, a
 * client's mistake that retrying cannot fix.
 */
export type WorkerFailureReason =
  | 'exit'
  | 'hung'
  | 'protocol'
  | 'job_error'
  | 'invalid_continuation'
  | 'start_timeout'
  | 'warmup_failed'
  | 'load_failed'
  | 'unavailable';

/** The worker failed: crashed, hung, spoke garbage or reported an error. */
export class WorkerFailure extends Error {
  override readonly name = 'WorkerFailure';
  constructor(
    message: string,
    readonly reason: WorkerFailureReason,
  ) {
    super(message);
  }
}

export type WorkerPhase = 'starting' | 'warming' | 'ready' | 'busy' | 'draining' | 'dead';

interface ActiveJob {
  id: string;
  width: number;
  height: number;
  /** What the worker reported and the consumer has not taken yet; ends or fails when the job settles. */
  events: AsyncQueue<GenerationEvent>;
  settled: boolean;
  started: number;
  cancelTimer: NodeJS.Timeout | undefined;
}

/** Bytes an event holds against the job's buffer budget. */
function mediaBytes(event: GenerationEvent): number {
  if (event.type === 'video') return event.frame.length;
  if (event.type === 'audio') return event.samples.length;
  return 0;
}

/**
 * One worker child process speaking the livegen worker protocol. It is a `Generator`:
 * `generate()` sends a job and yields the frames, audio and steps the worker reports.
 * It does not restart itself; the pool's supervisor owns that.
 */
export class WorkerProcess extends EventEmitter implements Generator {
  private child: ChildProcess | undefined;
  private readonly reader: WorkerRecordReader;
  private phaseValue: WorkerPhase = 'starting';
  private job: ActiveJob | undefined;
  private progressTimer: NodeJS.Timeout | undefined;
  private pendingReady: { resolve: () => void; reject: (err: Error) => void } | undefined;
  private startTimer: NodeJS.Timeout | undefined;
  private stderrTail = '';
  modelId = 'worker';
  audio: AudioFormat | null = null;
  continuationKind: string | undefined;
  /** JSON Schema of the continuation payload, as the worker declared it in `ready`. */
  continuationSchema: Record<string, unknown> | undefined;
  /** `continuationSchema`, compiled once when `ready` arrives. */
  private continuationPayload: z.ZodType | undefined;
  warmupTimings: Record<string, number> = {};
  readonly spawnedAt = performance.now();

  constructor(private readonly options: WorkerProcessOptions) {
    super();
    this.reader = new WorkerRecordReader(options.maxRecordBytes);
  }

  get phase(): WorkerPhase {
    return this.phaseValue;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get alive(): boolean {
    return this.phaseValue !== 'dead';
  }

  /** Last lines the worker wrote to stderr, for error messages. */
  get stderr(): string {
    return this.stderrTail;
  }

  /**
   * Spawns the process and resolves once it is ready (after warmup when on). Rejects with
   * a `WorkerFailure` when it dies, times out, or fails to load or warm up; the process
   * is killed in that case.
   */
  start(): Promise<void> {
    const { command, args, env, cwd, gpuId } = this.options;
    return new Promise<void>((resolve, reject) => {
      this.pendingReady = { resolve, reject };
      this.startTimer = setTimeout(
        () => this.fail(new WorkerFailure(`worker not ready within ${this.options.startTimeoutMs} ms`, 'start_timeout')),
        this.options.startTimeoutMs,
      );
      let child: ChildProcess;
      try {
        child = spawn(command, [...args], {
          cwd,
          env: { ...process.env, ...env, CUDA_VISIBLE_DEVICES: String(gpuId), LIVEGEN_WORKER_PROTOCOL: WORKER_PROTOCOL },
          stdio: ['pipe', 'pipe', 'pipe'],
        });
      } catch (err) {
        this.fail(new WorkerFailure(`cannot start worker: ${(err as Error).message}`, 'exit'));
        return;
      }
      this.child = child;
      child.on('error', (err) => this.fail(new WorkerFailure(`worker process error: ${err.message}`, 'exit')));
      child.on('exit', (code, signal) => {
        const how = signal ? `signal ${signal}` : `code ${code}`;
        const tail = this.stderrTail.trim().split('\n').slice(-3).join(' | ');
        this.fail(new WorkerFailure(`worker exited with ${how}${tail ? `: ${tail}` : ''}`, 'exit'));
      });
      child.stdin?.on('error', () => undefined); // EPIPE after death is reported by 'exit'
      child.stdout?.on('data', (chunk: Buffer) => this.onStdout(chunk));
      child.stderr?.on('data', (chunk: Buffer) => {
        this.stderrTail = (this.stderrTail + chunk.toString('utf8')).slice(-4096);
      });
    });
  }

  /**
   * Checks a state a client wants to resume from against what the worker declared in
   * `ready`: its `continuation_kind`, then its `continuation_schema`. Returns the first
   * problem as `kind: …` or `payload.<path>: <reason>`, or undefined when the state passes
   * (or before `ready`, when nothing is declared yet).
   */
  checkContinuation(state: ContinuationState): string | undefined {
    if (this.continuationKind !== undefined && state.kind !== this.continuationKind) {
      return `kind: expected ${JSON.stringify(this.continuationKind)}, got ${JSON.stringify(state.kind)}`;
    }
    const result = this.continuationPayload?.safeParse(state.payload);
    if (!result || result.success) return undefined;
    const issue = result.error.issues[0];
    if (!issue) return 'payload: does not match the worker\'s continuation_schema';
    return `${['payload', ...issue.path.map(String)].join('.')}: ${issue.message}`;
  }

  async *generate(request: SegmentRequest, signal: AbortSignal): AsyncGenerator<GenerationEvent> {
    if (this.phaseValue !== 'ready') throw new WorkerFailure(`worker is ${this.phaseValue}, not ready`, 'unavailable');
    signal.throwIfAborted();
    const job: ActiveJob = {
      id: randomBytes(8).toString('hex'),
      width: request.width,
      height: request.height,
      events: new AsyncQueue<GenerationEvent>({
        sizeOf: mediaBytes,
        highWaterBytes: this.options.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES,
        // Backpressure: stop reading the pipe while the consumer (an encoder) is behind, so
        // the worker's writes block instead of frames piling up here. Only the current job
        // steers the pipe; a settled job's queue no longer may.
        onPressure: (over) => {
          if (this.job === job) this.setReading(!over);
        },
      }),
      settled: false,
      started: performance.now(),
      cancelTimer: undefined,
    };
    this.job = job;
    this.phaseValue = 'busy';
    this.send({ type: 'job', job_id: job.id, request: encodeJobRequest(request) });
    this.armProgressTimer();
    // One listener for the whole job, so the worker hears of an abort at once even while
    // the consumer is busy elsewhere; each wait below takes and removes its own through
    // `abortable`, so a long-lived signal collects nothing however many events there are.
    const onAbort = (): void => this.cancel(job);
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      while (true) {
        signal.throwIfAborted();
        const next = await abortable(job.events.next(), signal);
        if (next.done) return;
        yield next.value;
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      // The consumer stopped early (abort, encoder failure): the worker must stop too.
      if (!job.settled) this.cancel(job);
      // Drop whatever is still queued; that also lifts the pressure it held on the pipe.
      void job.events.return();
    }
  }

  /** Asks the worker to exit, killing it after `graceMs`. */
  async shutdown(graceMs: number): Promise<void> {
    const child = this.child;
    if (!child || this.phaseValue === 'dead') return;
    this.send({ type: 'shutdown' });
    child.stdin?.end();
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  }

  /** Kills the process now (SIGKILL). */
  kill(reason: string, kind: WorkerFailure['reason'] = 'exit'): void {
    this.fail(new WorkerFailure(reason, kind));
  }

  // ------------------------------------------------------------------ internals

  private cancel(job: ActiveJob): void {
    if (job.settled || job.cancelTimer) return;
    this.phaseValue = 'draining';
    this.send({ type: 'cancel', job_id: job.id });
    // From now on output is dropped, not queued: read on, or the acknowledgement could sit
    // behind a paused pipe until the cancel timeout kills a worker that did stop.
    this.setReading(true);
    // A worker that ignores cancel is killed; the supervisor restarts it.
    job.cancelTimer = setTimeout(
      () => this.kill(`worker did not stop within ${this.options.cancelTimeoutMs} ms of cancel`, 'hung'),
      this.options.cancelTimeoutMs,
    );
  }

  private onStdout(chunk: Buffer): void {
    let records: WorkerRecord[];
    try {
      records = this.reader.push(chunk);
    } catch (err) {
      this.fail(new WorkerFailure(`worker protocol error: ${(err as Error).message}`, 'protocol'));
      return;
    }
    for (const record of records) {
      if (this.phaseValue === 'dead') return;
      try {
        this.onRecord(record);
      } catch (err) {
        this.fail(err instanceof WorkerFailure ? err : new WorkerFailure(`worker protocol error: ${(err as Error).message}`, 'protocol'));
        return;
      }
    }
  }

  private onRecord(record: WorkerRecord): void {
    if (record.kind === 'message') {
      this.onMessage(record.message);
      return;
    }
    const job = this.job;
    if (!job || job.settled) throw new WorkerProtocolError(`${record.kind} record outside a job`);
    if (record.kind === 'video') {
      const expected = job.width * job.height * 3;
      if (record.data.length !== expected) {
        throw new WorkerProtocolError(`video frame of ${record.data.length} bytes, expected ${expected} (${job.width}x${job.height} RGB24)`);
      }
      this.push(job, { type: 'video', frame: record.data });
    } else {
      const unit = 4 * (this.audio?.channels ?? 1);
      if (!this.audio || record.data.length % unit !== 0) {
        throw new WorkerProtocolError(this.audio ? `audio record of ${record.data.length} bytes is not whole f32 samples` : 'audio from a worker that declared none');
      }
      this.push(job, { type: 'audio', samples: record.data });
    }
  }

  private onMessage(message: WorkerMessage): void {
    switch (message.type) {
      case 'hello':
        if (message.protocol !== WORKER_PROTOCOL) {
          throw new WorkerFailure(`worker speaks ${message.protocol}, livegen speaks ${WORKER_PROTOCOL}`, 'protocol');
        }
        return;
      case 'ready': {
        if (this.phaseValue !== 'starting') throw new WorkerProtocolError('ready sent twice');
        this.modelId = message.model_id;
        const audio = message.capabilities.audio;
        this.audio = audio ? { sampleRate: audio.sample_rate, channels: audio.channels } : null;
        this.continuationKind = message.capabilities.continuation_kind ?? undefined;
        this.continuationSchema = message.capabilities.continuation_schema ?? undefined;
        this.continuationPayload = this.continuationSchema && compileContinuationSchema(this.continuationSchema);
        this.warmupTimings.load_ms = Math.round(performance.now() - this.spawnedAt);
        if (this.options.warmup && this.options.warmupRequest) {
          this.phaseValue = 'warming';
          this.send({ type: 'warmup', request: this.options.warmupRequest });
          clearTimeout(this.startTimer);
          this.startTimer = setTimeout(
            () => this.fail(new WorkerFailure(`warmup did not finish within ${this.options.warmupTimeoutMs} ms`, 'warmup_failed')),
            this.options.warmupTimeoutMs,
          );
        } else {
          this.becomeReady();
        }
        return;
      }
      case 'warmup_done':
        if (this.phaseValue !== 'warming') throw new WorkerProtocolError('warmup_done without a warmup');
        this.warmupTimings = { ...this.warmupTimings, ...message.timings, warmup_ms: Math.round(performance.now() - this.spawnedAt) - (this.warmupTimings.load_ms ?? 0) };
        this.becomeReady();
        return;
      case 'progress': {
        const job = this.currentJob(message.job_id);
        if (!job) return;
        const elapsed = message.elapsed_ms ?? performance.now() - job.started;
        this.push(job, { type: 'step', step: message.step, totalSteps: message.total_steps, stepMs: message.step_ms ?? 0, elapsedMs: elapsed });
        return;
      }
      case 'result': {
        const job = this.currentJob(message.job_id);
        if (!job) return;
        this.push(job, { type: 'done', continuationState: message.continuation_state ?? undefined });
        this.settle(job, undefined);
        return;
      }
      case 'error': {
        if (this.phaseValue === 'starting' || this.phaseValue === 'warming') {
          const reason = this.phaseValue === 'warming' ? 'warmup_failed' : 'load_failed';
          throw new WorkerFailure(`worker ${reason.replace('_', ' ')}: ${message.message}`, reason);
        }
        const job = message.job_id ? this.currentJob(message.job_id) : this.job;
        if (!job) return;
        this.settle(job, jobFailure(message, job.cancelTimer !== undefined));
        return;
      }
      case 'log':
        this.emit('log', message);
        return;
    }
  }

  private currentJob(jobId: string): ActiveJob | undefined {
    const job = this.job;
    if (!job || job.id !== jobId) throw new WorkerProtocolError(`message for unknown job ${jobId}`);
    return job.settled ? undefined : job;
  }

  private push(job: ActiveJob, event: GenerationEvent): void {
    this.armProgressTimer();
    if (job.cancelTimer) return; // cancelled: drop output until the worker acknowledges
    job.events.push(event);
  }

  private setReading(on: boolean): void {
    const stdout = this.child?.stdout;
    if (on) stdout?.resume();
    else stdout?.pause();
  }

  /**
   * Ends the job. Events already queued still reach the consumer before the end; a
   * failure is reported at the consumer's next pull and drops them, the segment being
   * lost anyway.
   */
  private settle(job: ActiveJob, failure: Error | undefined): void {
    if (job.settled) return;
    job.settled = true;
    clearTimeout(job.cancelTimer);
    clearTimeout(this.progressTimer);
    this.job = undefined;
    // Nothing more of this job can arrive, so its queue no longer needs to hold the pipe.
    this.setReading(true);
    if (failure) job.events.fail(failure);
    else job.events.finish();
    if (this.phaseValue === 'busy' || this.phaseValue === 'draining') {
      this.phaseValue = 'ready';
      this.emit('idle');
    }
  }

  private armProgressTimer(): void {
    clearTimeout(this.progressTimer);
    if (!this.job) return;
    this.progressTimer = setTimeout(
      () => this.kill(`worker made no progress for ${this.options.progressTimeoutMs} ms`, 'hung'),
      this.options.progressTimeoutMs,
    );
  }

  private becomeReady(): void {
    clearTimeout(this.startTimer);
    this.phaseValue = 'ready';
    const pending = this.pendingReady;
    this.pendingReady = undefined;
    pending?.resolve();
    this.emit('idle');
  }

  private send(message: ControlMessage): void {
    const stdin = this.child?.stdin;
    if (!stdin || stdin.destroyed || !stdin.writable) return;
    stdin.write(`${JSON.stringify(message)}\n`);
  }

  /** The one way to die: kill the process, fail the job and the start, tell the supervisor. */
  private fail(failure: WorkerFailure): void {
    if (this.phaseValue === 'dead') return;
    this.phaseValue = 'dead';
    clearTimeout(this.startTimer);
    clearTimeout(this.progressTimer);
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    const pending = this.pendingReady;
    this.pendingReady = undefined;
    pending?.reject(failure);
    if (this.job) this.settle(this.job, failure);
    this.emit('dead', failure);
  }
}

/** How a job's `error` message ends the job: undefined for an acknowledged cancel. */
function jobFailure(message: Extract<WorkerMessage, { type: 'error' }>, cancelAsked: boolean): WorkerFailure | undefined {
  // `cancelled` acknowledges our cancel; unasked, it is a failure like any other.
  if (message.code === 'cancelled' && cancelAsked) return undefined;
  // The worker's message names the field (`continuation_state.payload.x: …`) for the client.
  if (message.code === 'invalid_continuation') return new WorkerFailure(message.message, 'invalid_continuation');
  return new WorkerFailure(`worker error: ${message.message}`, 'job_error');
}

/**
 * Compiles a worker's `continuation_schema`. A schema that cannot be compiled (a keyword
 * zod's converter does not support, a dangling `$ref`) makes `ready` a protocol error:
 * a worker whose declared check cannot run would let unreadable states through.
 */
function compileContinuationSchema(schema: Record<string, unknown>): z.ZodType {
  try {
    return z.fromJSONSchema(schema as Parameters<typeof z.fromJSONSchema>[0]);
  } catch (err) {
    throw new WorkerProtocolError(`continuation_schema cannot be compiled: ${(err as Error).message}`);
  }
}
