/**
 * The synthetic generator, run in a worker thread. Rendering a frame is the costly part
 * of the in-process generator (a full RGB24 frame every 1/fps, per stream): in a thread
 * it no longer holds the server's event loop, so control frames and media of every
 * session are answered on time. Frames arrive as transferred buffers; the thread keeps
 * at most `FRAME_CREDITS` frames ahead of the consumer, and reuses each buffer once the
 * encoder hands it back.
 *
 * One `SyntheticRenderThread` serves every threaded generator of a server (the pool's
 * in-process workers share it, jobs told apart by id): one thread to start and to hold
 * in memory however many workers there are, and the first segment of a second worker
 * does not wait for a thread to start.
 */
import type { Worker } from 'node:worker_threads';
import { AsyncQueue, startThread } from '../async/index.js';
import { ContinuationStateError, InvalidSegmentRequestError } from './errors.js';
import { SyntheticGenerator, type SyntheticGeneratorOptions } from './synthetic.js';
import type { FromThread, ThreadError, ToThread } from './thread-protocol.js';
import type { AudioFormat, ContinuationState, GenerationEvent, Generator, SegmentRequest } from './types.js';

function rebuild(error: ThreadError): Error {
  if (error.name === 'ContinuationStateError') return new ContinuationStateError(error.field ?? 'continuationState', error.message.replace(/^[^:]*: /, ''));
  if (error.name === 'InvalidSegmentRequestError') return new InvalidSegmentRequestError(error.field ?? 'request', error.message.replace(/^[^:]*: /, ''));
  const rebuilt = new Error(error.message);
  rebuilt.name = error.name;
  return rebuilt;
}

/**
 * A worker thread rendering synthetic frames for any number of generators with the same
 * options. It starts with the first job and is restarted by the next job after a crash.
 */
export class SyntheticRenderThread {
  private thread: Worker | undefined;
  private readonly jobs = new Map<number, AsyncQueue<FromThread>>();
  private nextId = 1;
  private closed = false;

  constructor(readonly options: SyntheticGeneratorOptions = {}) {}

  /** Starts a job; its messages arrive on the returned queue until `end`. */
  open(request: SegmentRequest): { id: number; events: AsyncQueue<FromThread> } {
    if (this.closed) throw new Error('the synthetic render thread was closed');
    const thread = this.ensureThread();
    const id = this.nextId++;
    const events = new AsyncQueue<FromThread>();
    this.jobs.set(id, events);
    thread.postMessage({ type: 'job', id, request } satisfies ToThread);
    return { id, events };
  }

  /** Forgets a job (its consumer is done with it). */
  forget(id: number): void {
    this.jobs.delete(id);
  }

  send(message: ToThread, transfer: ArrayBuffer[] = []): void {
    this.thread?.postMessage(message, transfer);
  }

  /** Stops the thread; jobs still running fail. */
  async close(): Promise<void> {
    this.closed = true;
    const thread = this.thread;
    this.thread = undefined;
    for (const events of this.jobs.values()) events.fail(new Error('the generator was closed'));
    this.jobs.clear();
    await thread?.terminate();
  }

  private ensureThread(): Worker {
    if (this.thread) return this.thread;
    const thread = startThread(import.meta.url, 'synthetic-thread', { workerData: this.options });
    thread.unref();
    thread.on('message', (message: FromThread) => {
      const events = this.jobs.get(message.id);
      if (!events) return;
      events.push(message);
      if (message.type === 'end') events.finish();
    });
    const onDeath = (err: Error): void => {
      if (this.thread !== thread) return;
      this.thread = undefined;
      for (const events of this.jobs.values()) events.fail(err);
      this.jobs.clear();
    };
    thread.on('error', onDeath);
    thread.on('exit', (code) => onDeath(new Error(`the synthetic generator thread exited with code ${code}`)));
    this.thread = thread;
    return thread;
  }
}

export class ThreadedSyntheticGenerator implements Generator {
  /** Answers what needs no rendering (identity, audio format, state checks) on this thread. */
  private readonly local: SyntheticGenerator;
  private readonly renderer: SyntheticRenderThread;
  /** Whether `close()` stops the thread: only one this generator made for itself. */
  private readonly ownsRenderer: boolean;

  /** Renders on a shared render thread (with its options), or on a thread of its own made from `options`. */
  constructor(from: SyntheticGeneratorOptions | SyntheticRenderThread = {}) {
    this.ownsRenderer = !(from instanceof SyntheticRenderThread);
    this.renderer = from instanceof SyntheticRenderThread ? from : new SyntheticRenderThread(from);
    this.local = new SyntheticGenerator(this.renderer.options);
  }

  get modelId(): string {
    return this.local.modelId;
  }

  get audio(): AudioFormat | null {
    return this.local.audio;
  }

  get continuationKind(): string {
    return this.local.continuationKind;
  }

  get continuationSchema(): Record<string, unknown> {
    return this.local.continuationSchema;
  }

  checkContinuation(state: ContinuationState): string | undefined {
    return this.local.checkContinuation(state);
  }

  async *generate(request: SegmentRequest, signal: AbortSignal): AsyncGenerator<GenerationEvent> {
    signal.throwIfAborted();
    const renderer = this.renderer;
    const { id, events } = renderer.open(request);
    const send = (message: ToThread, transfer: ArrayBuffer[] = []): void => renderer.send(message, transfer);
    const onAbort = (): void => {
      send({ type: 'cancel', id });
      events.fail(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    let ended = false;
    try {
      for await (const message of events) {
        switch (message.type) {
          case 'step':
            yield { type: 'step', step: message.step, totalSteps: message.totalSteps, stepMs: message.stepMs, elapsedMs: message.elapsedMs };
            break;
          case 'video': {
            const buffer = message.frame.buffer as ArrayBuffer;
            let released = false;
            // The thread may send the next frame as soon as this one is taken.
            send({ type: 'credit', id });
            yield {
              type: 'video',
              frame: Buffer.from(buffer, message.frame.byteOffset, message.frame.byteLength),
              release: () => {
                if (released) return;
                released = true;
                send({ type: 'buffer', buffer }, [buffer]);
              },
            };
            break;
          }
          case 'audio':
            yield { type: 'audio', samples: Buffer.from(message.samples.buffer, message.samples.byteOffset, message.samples.byteLength) };
            break;
          case 'done':
            yield { type: 'done', continuationState: message.continuationState };
            break;
          case 'end':
            ended = true;
            if (message.error) throw rebuild(message.error);
            return;
        }
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      renderer.forget(id);
      // The consumer stopped early (abort, encoder failure): the thread stops too.
      if (!ended) send({ type: 'cancel', id });
    }
  }

  /** Stops the thread if this generator owns it (a shared one is closed by its owner). */
  async close(): Promise<void> {
    if (this.ownsRenderer) await this.renderer.close();
  }
}
