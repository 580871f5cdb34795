/**
 * One ffmpeg process turning raw frames (and audio) into media chunks: the part both
 * segment encoders share. It owns the child's whole life: spawn, input backpressure,
 * reading and re-framing stdout, and turning every way ffmpeg can fail into one
 * `EncoderError` delivered to whoever is waiting (iterator, writes, `end()`), never
 * as an uncaught exception.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Writable } from 'node:stream';
import { AsyncQueue } from '../async/index.js';
import { EncoderAbortedError, EncoderError } from './errors.js';
import { InterleavedInputs, type InputPipeSpec } from './input-pipes.js';
import type { MediaChunk } from './types.js';

/** Splits ffmpeg's stdout into chunks; throws on output it cannot frame. */
export interface OutputFramer {
  push(data: Buffer): MediaChunk[];
  /** stdout ended: the last chunks, or a throw when bytes are left over. */
  end(): MediaChunk[];
}

export interface EncodeSummary {
  /** Video frames written. */
  frames: number;
  /** `frames * 1000 / fps`. */
  durationMs: number;
  /** Fragment chunks (everything after the init chunk). */
  chunks: number;
  /** Bytes of all chunks, init included. */
  bytes: number;
}

export interface PipelineInput {
  /** Raw bytes per second on this pipe. */
  bytesPerSecond: number;
  /** A write must be a whole number of these bytes (a frame; a sample frame). */
  unitBytes: number;
  highWaterBytes: number;
  maxLeadBytes: number;
}

export interface FfmpegPipelineOptions {
  ffmpegPath: string;
  args: readonly string[];
  video: PipelineInput & { fps: number };
  /** Audio on fd 3, or null for none (then `writeAudio` is refused or ignored, see `ignoreAudio`). */
  audio: PipelineInput | null;
  /** Accept and drop audio instead of refusing it (for outputs without an audio track). */
  ignoreAudio?: boolean;
  framer: OutputFramer;
  /** Last chance to touch a chunk before the consumer sees it (late timestamp patching). */
  beforeDeliver?: (chunk: MediaChunk) => void;
  signal?: AbortSignal;
}

const STDERR_TAIL_BYTES = 4096;

export class FfmpegPipeline {
  readonly pid: number | undefined;
  private readonly child: ChildProcess | undefined;
  private readonly inputs: InterleavedInputs;
  /** Unbounded: its input is compressed media, at most one segment's worth, and bounding it would make end() depend on someone reading. */
  private readonly queue: AsyncQueue<MediaChunk>;
  private readonly options: FfmpegPipelineOptions;
  private stderrTail = '';
  private frames = 0;
  private fragments = 0;
  private bytes = 0;
  private endRequested = false;
  private iteratorTaken = false;
  /** Set once: the reason the encode did not (or will not) succeed. */
  private failure: Error | undefined;
  private outcome: 'running' | 'succeeded' | 'failed' = 'running';
  private readonly exited: Promise<void>;
  private markExited: () => void = () => undefined;
  private readonly removeAbortListener: () => void;

  constructor(options: FfmpegPipelineOptions) {
    this.options = options;
    this.exited = new Promise((resolve) => {
      this.markExited = resolve;
    });
    this.queue = new AsyncQueue<MediaChunk>({
      onReturn: () => void this.abort(new Error('chunk consumer stopped reading')),
      beforeDeliver: (chunk) => this.beforeDeliver(chunk),
    });

    // fd 3 exists only when there is audio: ffmpeg reads it as `pipe:3`.
    const stdio: Array<'pipe'> = options.audio ? ['pipe', 'pipe', 'pipe', 'pipe'] : ['pipe', 'pipe', 'pipe'];
    let child: ChildProcess | undefined;
    let spawnError: unknown;
    try {
      child = spawn(options.ffmpegPath, options.args, { stdio });
    } catch (error) {
      spawnError = error; // invalid arguments, or the platform refused synchronously
    }
    // A spawn that fails for lack of descriptors (EMFILE, ENFILE) reports 'error' on the
    // next tick and leaves the stdio streams null: listen first, touch the streams after.
    child?.on('error', (error: NodeJS.ErrnoException) => this.onChildError(error));
    const stdin = child?.stdin;
    const stdout = child?.stdout;
    const stderr = child?.stderr;
    const audioPipe = options.audio ? child?.stdio[3] : undefined;
    if (!child || !stdin || !stdout || !stderr || (options.audio && !audioPipe)) {
      this.child = child;
      this.pid = undefined;
      this.inputs = new InterleavedInputs([], () => undefined);
      this.removeAbortListener = () => undefined;
      if (!child) {
        const code = (spawnError as NodeJS.ErrnoException | undefined)?.code;
        this.failSpawn(code ?? (spawnError instanceof Error ? spawnError.message : String(spawnError)), spawnError);
      } else if (child.pid !== undefined) {
        this.failSpawn('ffmpeg started without its stdio pipes', undefined);
        this.kill();
      }
      // Otherwise the 'error' event follows and onChildError completes the failure.
      return;
    }
    this.child = child;
    this.pid = child.pid;

    const specs: InputPipeSpec[] = [{ name: 'video', stream: stdin, ...options.video }];
    if (audioPipe && options.audio) specs.push({ name: 'audio', stream: audioPipe as Writable, ...options.audio });
    this.inputs = new InterleavedInputs(specs, (name, error) => this.onPipeError(name, error));

    child.on('close', (code: number | null, signal: NodeJS.Signals | null) => this.onClose(code, signal));
    stdout.on('data', (data: Buffer) => this.onOutput(data));
    stdout.on('error', () => undefined); // surfaces through 'close' and the exit status
    stderr.setEncoding('utf8');
    stderr.on('data', (text: string) => {
      this.stderrTail = (this.stderrTail + text).slice(-STDERR_TAIL_BYTES);
    });
    stderr.on('error', () => undefined);

    const signal = options.signal;
    if (signal) {
      const onAbort = (): void => void this.abort(signal.reason);
      if (signal.aborted) queueMicrotask(onAbort);
      else signal.addEventListener('abort', onAbort, { once: true });
      this.removeAbortListener = () => signal.removeEventListener('abort', onAbort);
    } else {
      this.removeAbortListener = () => undefined;
    }
  }

  /** The chunks, in order, as ffmpeg makes them. One consumer; breaking out aborts the encode. */
  chunks(): AsyncIterableIterator<MediaChunk> {
    if (this.iteratorTaken) throw new Error('chunks() can be consumed only once');
    this.iteratorTaken = true;
    return this.queue;
  }

  writeVideo(frame: Buffer, onReleased?: () => void): Promise<void> {
    const refused = this.refuse('video', frame, this.options.video);
    if (refused) return refused;
    this.frames++;
    return this.inputs.write('video', frame, onReleased);
  }

  writeAudio(samples: Buffer): Promise<void> {
    const audio = this.options.audio;
    if (!audio) {
      if (this.options.ignoreAudio) return this.failure ? Promise.reject(this.failure) : Promise.resolve();
      return Promise.reject(new EncoderError('invalid_input', 'this encoder was created without audio'));
    }
    return this.refuse('audio', samples, audio) ?? this.inputs.write('audio', samples);
  }

  /** Close the inputs; resolves with the summary once ffmpeg exited and every chunk is queued. */
  async end(): Promise<EncodeSummary> {
    if (this.failure) throw this.failure;
    this.endRequested = true;
    this.inputs.close();
    await this.exited;
    if (this.outcome !== 'succeeded') throw this.failure ?? new EncoderError('ffmpeg_failed', 'ffmpeg stopped for an unknown reason');
    return this.summary();
  }

  /** Kill ffmpeg now; the iterator, pending writes and `end()` reject with an AbortError. Resolves once the process is gone. */
  abort(reason?: unknown): Promise<void> {
    if (this.outcome === 'running' && !this.failure) {
      this.fail(new EncoderAbortedError(reason));
      this.kill();
    }
    return this.exited;
  }

  summary(): EncodeSummary {
    return {
      frames: this.frames,
      durationMs: (this.frames * 1000) / this.options.video.fps,
      chunks: this.fragments,
      bytes: this.bytes,
    };
  }

  private refuse(name: string, data: Buffer, input: PipelineInput): Promise<void> | undefined {
    if (this.failure) return Promise.reject(this.failure);
    if (this.endRequested) return Promise.reject(new EncoderError('invalid_input', `${name} written after end()`));
    if (data.length % input.unitBytes !== 0 || (name === 'video' && data.length !== input.unitBytes)) {
      return Promise.reject(new EncoderError('invalid_input', `${name} write of ${data.length} bytes is not a whole number of ${input.unitBytes}-byte units`));
    }
    return undefined;
  }

  private beforeDeliver(chunk: MediaChunk): void {
    try {
      this.options.beforeDeliver?.(chunk);
    } catch (error) {
      // A chunk that cannot be finalised breaks the stream for everyone, writer included.
      const failure = new EncoderError('bad_output', `cannot finalise a ${chunk.kind} chunk (${String(error)})`, { cause: error });
      this.fail(failure);
      this.kill();
      throw failure;
    }
  }

  private onOutput(data: Buffer): void {
    if (this.failure) return;
    let chunks: MediaChunk[];
    try {
      chunks = this.options.framer.push(data);
    } catch (error) {
      this.fail(new EncoderError('bad_output', `unreadable ffmpeg output (${String(error)})`, { cause: error }));
      this.kill();
      return;
    }
    this.enqueue(chunks);
  }

  private enqueue(chunks: MediaChunk[]): void {
    for (const chunk of chunks) {
      if (chunk.kind === 'fragment') this.fragments++;
      this.bytes += chunk.data.length;
      this.queue.push(chunk);
    }
  }

  /** A pipe broke: ffmpeg stopped reading, so it is dying or wedged. Make sure it dies; its exit status tells why. */
  private onPipeError(_name: string, _error: Error): void {
    if (this.outcome === 'running') this.kill();
  }

  private onChildError(error: NodeJS.ErrnoException): void {
    // 'error' without a pid: the spawn itself failed, and no 'close' may follow.
    if (this.pid !== undefined || this.outcome !== 'running') return;
    this.failSpawn(error.code ?? error.message, error);
  }

  private failSpawn(detail: string, cause: unknown): void {
    if (this.outcome !== 'running') return;
    this.fail(new EncoderError('spawn_failed', `cannot start ${this.options.ffmpegPath} (${detail})`, { cause }));
    this.settle();
  }

  private onClose(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.outcome !== 'running') return;
    if (!this.failure) {
      const stderr = this.stderrTail;
      if (signal) this.fail(new EncoderError('ffmpeg_killed', `ffmpeg was killed by ${signal}`, { stderr }));
      else if (code !== 0) this.fail(new EncoderError('ffmpeg_failed', `ffmpeg exited with code ${code}`, { stderr }));
      else if (!this.endRequested) this.fail(new EncoderError('ffmpeg_failed', 'ffmpeg exited before its inputs were closed', { stderr }));
    }
    if (!this.failure) {
      try {
        this.enqueue(this.options.framer.end());
      } catch (error) {
        this.fail(new EncoderError('bad_output', `ffmpeg output ended mid-chunk (${String(error)})`, { cause: error, stderr: this.stderrTail }));
      }
    }
    this.settle();
  }

  private settle(): void {
    this.outcome = this.failure ? 'failed' : 'succeeded';
    if (!this.failure) this.queue.finish();
    this.removeAbortListener();
    this.markExited();
  }

  private fail(error: Error): void {
    if (this.failure) return;
    this.failure = error;
    this.queue.fail(error);
    this.inputs.fail(error);
  }

  private kill(): void {
    // Signalling a process that already exited (not yet reaped) is harmless.
    const child = this.child;
    if (child && child.pid !== undefined && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}
