/**
 * Backpressure for ffmpeg's input pipes (video on stdin, audio on fd 3).
 *
 * ffmpeg 5.1 muxes in timestamp order: when audio lags, it stops taking video until
 * audio arrives (its per-input queue fills, then the pipe). A writer that waits for the
 * video pipe to drain before it writes audio therefore deadlocks. So each pipe gets its
 * own byte watermark: a write resolves once that pipe's unflushed bytes are at or below
 * it, whatever the other pipe does. And a pipe whose media time runs ahead of the other
 * by more than its watermark is let through up to a hard lead cap, because ffmpeg will
 * not drain it until the other pipe catches up, which only the caller can make happen.
 */
import type { Writable } from 'node:stream';

export interface InputPipeSpec {
  name: string;
  stream: Writable;
  /** Raw bytes per second of media on this pipe; turns bytes written into media time. */
  bytesPerSecond: number;
  /** A write resolves once at most this many bytes of the pipe are still unflushed. */
  highWaterBytes: number;
  /** While ahead of the other pipe in media time, writes resolve up to this many unflushed bytes. */
  maxLeadBytes: number;
}

interface Waiter {
  resolve: () => void;
  reject: (error: unknown) => void;
}

class InputPipe {
  pendingBytes = 0;
  writtenBytes = 0;
  readonly waiters: Waiter[] = [];
  closed = false;

  constructor(readonly spec: InputPipeSpec) {}

  get mediaMs(): number {
    return (this.writtenBytes * 1000) / this.spec.bytesPerSecond;
  }

  get highWaterMs(): number {
    return (this.spec.highWaterBytes * 1000) / this.spec.bytesPerSecond;
  }
}

export class InterleavedInputs {
  private readonly pipes = new Map<string, InputPipe>();
  private failure: { error: unknown } | undefined;

  /** `onPipeError` hears the first error of each pipe (EPIPE when ffmpeg stops reading). */
  constructor(specs: readonly InputPipeSpec[], onPipeError: (name: string, error: Error) => void) {
    for (const spec of specs) {
      const pipe = new InputPipe(spec);
      this.pipes.set(spec.name, pipe);
      let reported = false;
      // Without a listener an EPIPE would be an uncaught exception.
      spec.stream.on('error', (error: Error) => {
        if (reported) return;
        reported = true;
        onPipeError(spec.name, error);
      });
    }
  }

  /** Write to a pipe; resolves when the pipe's watermark allows the next write. */
  /**
   * `onReleased` runs once the bytes left Node (written to the pipe, or dropped because
   * the pipe failed): from then on the caller may reuse `data`.
   */
  write(name: string, data: Buffer, onReleased?: () => void): Promise<void> {
    const pipe = this.pipes.get(name);
    if (!pipe) return Promise.reject(new Error(`no input pipe '${name}'`));
    if (this.failure) return Promise.reject(this.failure.error);
    if (pipe.closed) return Promise.reject(new Error(`input pipe '${name}' is closed`));
    if (data.length === 0) {
      onReleased?.();
      return Promise.resolve();
    }
    pipe.pendingBytes += data.length;
    pipe.writtenBytes += data.length;
    pipe.spec.stream.write(data, () => {
      // Called once the bytes reached the kernel (or failed; the error event reports that).
      pipe.pendingBytes -= data.length;
      onReleased?.();
      this.release();
    });
    return new Promise<void>((resolve, reject) => {
      pipe.waiters.push({ resolve, reject });
      this.release();
    });
  }

  /** Bytes written to a pipe so far (accepted, not necessarily flushed). */
  writtenBytes(name: string): number {
    return this.pipes.get(name)?.writtenBytes ?? 0;
  }

  /** End every pipe: ffmpeg sees EOF once the buffered bytes are flushed. */
  close(): void {
    for (const pipe of this.pipes.values()) {
      if (pipe.closed) continue;
      pipe.closed = true;
      pipe.spec.stream.end();
    }
  }

  /** Reject waiting and future writes with `error` and stop writing. */
  fail(error: unknown): void {
    if (this.failure) return;
    this.failure = { error };
    for (const pipe of this.pipes.values()) {
      pipe.closed = true;
      for (const waiter of pipe.waiters.splice(0)) waiter.reject(error);
      // Bytes still queued in Node would only hit a dead or killed process.
      pipe.spec.stream.destroy();
    }
  }

  private release(): void {
    if (this.failure) return;
    for (const pipe of this.pipes.values()) {
      if (pipe.waiters.length === 0 || !this.mayProceed(pipe)) continue;
      for (const waiter of pipe.waiters.splice(0)) waiter.resolve();
    }
  }

  private mayProceed(pipe: InputPipe): boolean {
    if (pipe.pendingBytes <= pipe.spec.highWaterBytes) return true;
    if (pipe.pendingBytes > pipe.spec.maxLeadBytes) return false;
    for (const other of this.pipes.values()) {
      if (other === pipe || other.closed) continue;
      if (pipe.mediaMs - other.mediaMs > pipe.highWaterMs) return true;
    }
    return false;
  }
}
