/**
 * The worker thread behind a threaded synthetic generator: renders frames (the costly
 * part: a full RGB24 frame per 1/fps) off the server's event loop and transfers them.
 * Options come as `workerData` (SyntheticGeneratorOptions).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Notifier } from '../async/index.js';
import { SyntheticGenerator, type SyntheticGeneratorOptions } from './synthetic.js';
import { FRAME_CREDITS, type FromThread, type ToThread } from './thread-protocol.js';

const port = parentPort;
if (!port) throw new Error('synthetic-thread runs as a worker thread');

/** Buffers the main side has handed back, by size, ready to carry another frame. */
const spare = new Map<number, ArrayBuffer[]>();
// Frames are rendered straight into the buffers that travel: each one is transferred as
// it is (no copy), and comes back through `spare` once the encoder has written it.
const generator = new SyntheticGenerator(workerData as SyntheticGeneratorOptions, {
  take: (size) => ({ buffer: Buffer.from(bufferFor(size)), release: () => undefined }),
});

interface Job {
  abort: AbortController;
  credits: number;
  creditArrived: Notifier;
}
const jobs = new Map<number, Job>();
/** Buffers kept for reuse per running job: its credits plus what the encoder's pipe holds. */
const SPARE_PER_JOB = 2 * FRAME_CREDITS + 4;

function post(message: FromThread, transfer: ArrayBuffer[] = []): void {
  port?.postMessage(message, transfer);
}

function bufferFor(size: number): ArrayBuffer {
  const buffer = spare.get(size)?.pop();
  return buffer ?? new ArrayBuffer(size);
}

async function run(id: number, job: Job, request: Extract<ToThread, { type: 'job' }>['request']): Promise<void> {
  try {
    for await (const event of generator.generate(request, job.abort.signal)) {
      switch (event.type) {
        case 'step':
          post({ type: 'step', id, step: event.step, totalSteps: event.totalSteps, stepMs: event.stepMs, elapsedMs: event.elapsedMs });
          break;
        case 'video': {
          while (job.credits <= 0) await job.creditArrived.wait(job.abort.signal);
          job.credits -= 1;
          const frame = new Uint8Array(event.frame.buffer, event.frame.byteOffset, event.frame.byteLength);
          post({ type: 'video', id, frame }, [frame.buffer as ArrayBuffer]);
          break;
        }
        case 'audio': {
          const samples = new Uint8Array(event.samples.length);
          samples.set(event.samples);
          post({ type: 'audio', id, samples }, [samples.buffer]);
          break;
        }
        case 'done':
          post({ type: 'done', id, continuationState: event.continuationState });
          break;
      }
    }
    post({ type: 'end', id });
  } catch (err) {
    const e = err as Error & { field?: string };
    post({ type: 'end', id, error: { name: e.name ?? 'Error', message: e.message ?? String(err), field: e.field } });
  } finally {
    jobs.delete(id);
  }
}

port.on('message', (message: ToThread) => {
  switch (message.type) {
    case 'job': {
      const job: Job = { abort: new AbortController(), credits: FRAME_CREDITS, creditArrived: new Notifier() };
      jobs.set(message.id, job);
      void run(message.id, job, message.request);
      return;
    }
    case 'credit': {
      const job = jobs.get(message.id);
      if (!job) return;
      job.credits += 1;
      job.creditArrived.notify();
      return;
    }
    case 'buffer': {
      // Enough for every running job's frames in flight: a buffer dropped here is a fresh
      // 1.7 MB allocation (zeroed, page-faulted) for the next frame at 1024x576.
      const list = spare.get(message.buffer.byteLength) ?? [];
      if (list.length < SPARE_PER_JOB * Math.max(1, jobs.size)) list.push(message.buffer);
      spare.set(message.buffer.byteLength, list);
      return;
    }
    case 'cancel':
      jobs.get(message.id)?.abort.abort(new Error('cancelled'));
      return;
  }
});
