import { createInterface } from 'node:readline';
import type { Writable } from 'node:stream';
import { sleep } from '../../async/index.js';
import { ContinuationStateError } from '../errors.js';
import type { Generator } from '../types.js';
import {
  RecordKind,
  WORKER_PROTOCOL,
  decodeJobRequest,
  encodeRecord,
  type ControlMessage,
  type WorkerJobRequest,
  type WorkerMessage,
} from './protocol.js';

type JobErrorCode = Extract<WorkerMessage, { type: 'error' }>['code'];

/**
 * The worker side of the protocol for any in-process `Generator`: reads control lines
 * from stdin, runs one job at a time, writes records to stdout with backpressure. The
 * synthetic worker is this plus `SyntheticGenerator`; a worker in another language
 * implements the same protocol itself (docs/worker-protocol.md).
 */
export interface WorkerRuntimeOptions {
  generator: Generator;
  /** Simulated model load before `ready` (lets tests exercise warming). */
  loadDelayMs?: number;
  input?: NodeJS.ReadableStream;
  output?: Writable;
}

export async function runWorker(options: WorkerRuntimeOptions): Promise<void> {
  const { generator } = options;
  const input = options.input ?? process.stdin;
  const output = options.output ?? process.stdout;
  let current: { id: string; abort: AbortController; done: Promise<void> } | undefined;

  const write = (data: Buffer | string, onFlushed?: () => void): Promise<void> =>
    new Promise((resolve) => {
      if (output.write(data, onFlushed && (() => onFlushed()))) resolve();
      else output.once('drain', () => resolve());
    });
  const message = (value: Record<string, unknown>): Promise<void> => write(`${JSON.stringify(value)}\n`);

  await message({ type: 'hello', protocol: WORKER_PROTOCOL, pid: process.pid });
  if (options.loadDelayMs) await sleep(options.loadDelayMs);
  const capabilities = {
    audio: generator.audio ? { sample_rate: generator.audio.sampleRate, channels: generator.audio.channels } : null,
    continuation_kind: generator.continuationKind ?? null,
    continuation_schema: generator.continuationSchema ?? null,
  };
  await message({ type: 'ready', model_id: generator.modelId, capabilities });

  const run = async (jobId: string | undefined, request: WorkerJobRequest, signal: AbortSignal): Promise<void> => {
    for await (const event of generator.generate(decodeJobRequest(request), signal)) {
      if (!jobId) continue; // warmup: generate, send nothing
      switch (event.type) {
        case 'step':
          await message({ type: 'progress', job_id: jobId, step: event.step, total_steps: event.totalSteps, step_ms: event.stepMs, elapsed_ms: event.elapsedMs });
          break;
        case 'video': {
          const [header, payload] = encodeRecord(RecordKind.VIDEO, event.frame) as [Buffer, Buffer];
          await write(header);
          // The frame goes back to the generator once the pipe has taken it.
          await write(payload, event.release);
          break;
        }
        case 'audio':
          for (const part of encodeRecord(RecordKind.AUDIO, event.samples)) await write(part);
          break;
        case 'done':
          await message({ type: 'result', job_id: jobId, continuation_state: event.continuationState ?? null });
          break;
      }
    }
  };

  const lines = createInterface({ input, crlfDelay: Infinity });
  for await (const line of lines) {
    if (!line.trim()) continue;
    const control = JSON.parse(line) as ControlMessage;
    switch (control.type) {
      case 'warmup': {
        const started = performance.now();
        try {
          await run(undefined, control.request, new AbortController().signal);
          await message({ type: 'warmup_done', timings: { warmup_generate_ms: Math.round(performance.now() - started) } });
        } catch (err) {
          await message({ type: 'error', code: 'warmup_failed', message: (err as Error).message });
        }
        break;
      }
      case 'job': {
        const abort = new AbortController();
        const id = control.job_id;
        const done = run(id, control.request, abort.signal).catch(async (err: unknown) => {
          await message({ type: 'error', job_id: id, ...jobError(err, abort.signal.aborted) });
        });
        current = { id, abort, done };
        void done.finally(() => {
          if (current?.id === id) current = undefined;
        });
        break;
      }
      case 'cancel':
        if (current?.id === control.job_id) current.abort.abort();
        break;
      case 'shutdown':
        current?.abort.abort();
        await current?.done;
        return;
    }
  }
}

/** The `code` and `message` of a job's `error` reply. */
function jobError(err: unknown, cancelled: boolean): { code: JobErrorCode; message: string } {
  if (cancelled) return { code: 'cancelled', message: 'cancelled' };
  // A state the generator cannot read is the client's mistake, not the worker's: the
  // code lets livegen refuse it instead of offering a retry that would fail the same way.
  // The message names the field as it is on the wire (`continuation_state.payload.x`).
  if (err instanceof ContinuationStateError) {
    return { code: 'invalid_continuation', message: err.message.replace(/^continuationState/, 'continuation_state') };
  }
  return { code: 'failed', message: err instanceof Error ? err.message : String(err) };
}
