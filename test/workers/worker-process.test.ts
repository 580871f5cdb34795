import { getEventListeners } from 'node:events';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { sleep } from '../../src/async/index.js';
import { SYNTHETIC_CONTINUATION_KIND, SYNTHETIC_CONTINUATION_SCHEMA, type GenerationEvent } from '../../src/generation/index.js';
import { WorkerFailure, WorkerProcess, type WorkerProcessOptions } from '../../src/generation/worker/index.js';
import { SupervisedWorker, type WorkerLogEntry } from '../../src/pool/supervised-worker.js';
import { collect, doneOf, framesOf, request } from '../generation/helpers.js';

// WorkerProcess and SupervisedWorker over real child processes: the synthetic worker
// (the TypeScript runtime around SyntheticGenerator), the faulty fixture, and the
// FastVideo bridge on its stub package.
const SYNTHETIC = fileURLToPath(new URL('../../workers/synthetic/main.ts', import.meta.url));
const FAULTY = fileURLToPath(new URL('../fixtures/workers/faulty-worker.mjs', import.meta.url));
const BRIDGE = fileURLToPath(new URL('../../workers/fastvideo/livegen_fastvideo_worker.py', import.meta.url));
const STUB = fileURLToPath(new URL('../fixtures/fastvideo-stub', import.meta.url));

const small = { width: 64, height: 32, fps: 120, numInferenceSteps: 2 };

function options(command: string, args: string[], env: Record<string, string>, extra: Partial<WorkerProcessOptions> = {}): WorkerProcessOptions {
  return {
    command,
    args,
    env,
    gpuId: 0,
    startTimeoutMs: 20_000,
    warmup: false,
    warmupTimeoutMs: 20_000,
    progressTimeoutMs: 5_000,
    cancelTimeoutMs: 2_000,
    maxRecordBytes: 1 << 20,
    ...extra,
  };
}

const synthetic = (env: Record<string, string> = {}, extra: Partial<WorkerProcessOptions> = {}) =>
  options(process.execPath, ['--import', 'tsx', SYNTHETIC], { LIVEGEN_SYNTHETIC_STEP_MS: '1', ...env }, extra);
const faulty = (fault: string, env: Record<string, string> = {}) => options(process.execPath, [FAULTY], { FAULT: fault, ...env });

const running: { shutdown(graceMs: number): Promise<void> }[] = [];
async function started(opts: WorkerProcessOptions): Promise<WorkerProcess> {
  const proc = new WorkerProcess(opts);
  running.push(proc);
  await proc.start();
  return proc;
}
afterEach(async () => {
  await Promise.all(running.splice(0).map((p) => p.shutdown(1000)));
});

/** Resolves once the process is ready again after a job, or has died (so a test fails fast, not at its timeout). */
function backFromJob(proc: WorkerProcess): Promise<'ready' | 'dead'> {
  if (proc.phase === 'ready' || proc.phase === 'dead') return Promise.resolve(proc.phase);
  return new Promise((resolve) => {
    proc.once('idle', () => resolve('ready'));
    proc.once('dead', () => resolve('dead'));
  });
}

async function failureOf(events: AsyncIterable<GenerationEvent>): Promise<WorkerFailure> {
  try {
    await collect(events);
  } catch (err) {
    if (err instanceof WorkerFailure) return err;
    throw err;
  }
  throw new Error('the job succeeded');
}

describe('WorkerProcess job events', () => {
  it('streams a 48-frame realtime segment under one long-lived signal without piling listeners on it', async () => {
    const warnings: Error[] = [];
    const onWarning = (warning: Error): void => void warnings.push(warning);
    process.on('warning', onWarning);
    try {
      const proc = await started(synthetic({ LIVEGEN_SYNTHETIC_PACE: 'realtime' }));
      const signal = new AbortController().signal;
      // Count at every add, not only between events: a wait's listener lives while it waits.
      let peak = 0;
      const add = signal.addEventListener.bind(signal);
      signal.addEventListener = ((...args: Parameters<AbortSignal['addEventListener']>) => {
        add(...args);
        peak = Math.max(peak, getEventListeners(signal, 'abort').length);
      }) as AbortSignal['addEventListener'];

      const events: GenerationEvent[] = [];
      for await (const event of proc.generate(request({ ...small, numFrames: 48 }), signal)) {
        peak = Math.max(peak, getEventListeners(signal, 'abort').length);
        events.push(event);
      }
      expect(framesOf(events)).toHaveLength(48);
      expect(events.filter((e) => e.type === 'audio').length).toBeGreaterThan(0);
      expect(peak).toBeGreaterThan(0);
      expect(peak).toBeLessThanOrEqual(2);
      expect(getEventListeners(signal, 'abort').length).toBeLessThanOrEqual(2);

      // A second segment on the same signal adds nothing either.
      await collect(proc.generate(request({ ...small, numFrames: 8, continuationState: doneOf(events).continuationState }), signal));
      expect(getEventListeners(signal, 'abort').length).toBeLessThanOrEqual(2);
      expect(peak).toBeLessThanOrEqual(2);
      await sleep(20); // process warnings are emitted on a later tick
      expect(warnings.filter((w) => w.name === 'MaxListenersExceededWarning')).toEqual([]);
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('delivers every frame in order to a consumer slower than the worker, with a buffer budget of two frames', async () => {
    const frameBytes = small.width * small.height * 3;
    const proc = await started(synthetic({}, { maxBufferedBytes: 2 * frameBytes }));
    const frames: Buffer[] = [];
    for await (const event of proc.generate(request({ ...small, numFrames: 30 }), new AbortController().signal)) {
      if (event.type !== 'video') continue;
      frames.push(Buffer.from(event.frame));
      if (frames.length % 5 === 0) await sleep(20);
    }
    const reference = framesOf(await collect(proc.generate(request({ ...small, numFrames: 30 }), new AbortController().signal)));
    expect(frames).toHaveLength(30);
    expect(Buffer.concat(frames).equals(Buffer.concat(reference))).toBe(true);
  });

  it('cancels a job whose consumer stops while the pipe is paused, and the worker acknowledges instead of being killed', async () => {
    const frameBytes = small.width * small.height * 3;
    const proc = await started(synthetic({}, { maxBufferedBytes: 2 * frameBytes, cancelTimeoutMs: 3_000 }));
    let seen = 0;
    for await (const event of proc.generate(request({ ...small, numFrames: 2_000 }), new AbortController().signal)) {
      if (event.type !== 'video') continue;
      seen += 1;
      if (seen === 3) await sleep(200); // the worker runs ahead: the budget is exceeded, the pipe paused
      if (seen === 4) break;
    }
    expect(await backFromJob(proc)).toBe('ready');
    const again = await collect(proc.generate(request({ ...small, numFrames: 3 }), new AbortController().signal));
    expect(framesOf(again)).toHaveLength(3);
  });

  it('cancels the worker as soon as the signal aborts', async () => {
    const proc = await started(synthetic({ LIVEGEN_SYNTHETIC_PACE: 'realtime' }));
    const controller = new AbortController();
    const seen: GenerationEvent[] = [];
    const run = (async () => {
      for await (const event of proc.generate(request({ ...small, fps: 24, numFrames: 240 }), controller.signal)) seen.push(event);
    })();
    while (!seen.some((e) => e.type === 'video')) await sleep(5);
    controller.abort(new Error('client left'));
    await expect(run).rejects.toThrow('client left');
    expect(await backFromJob(proc)).toBe('ready');
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
  });
});

describe('continuation states a worker cannot read', () => {
  const goodPayload = async (proc: WorkerProcess) =>
    doneOf(await collect(proc.generate(request({ ...small, numFrames: 2 }), new AbortController().signal))).continuationState!;

  it('are refused by checkContinuation once the synthetic worker has declared its schema in ready', async () => {
    const proc = new WorkerProcess(synthetic());
    running.push(proc);
    expect(proc.checkContinuation({ kind: 'anything', payload: {} })).toBeUndefined(); // nothing declared yet
    await proc.start();
    expect(proc.continuationKind).toBe(SYNTHETIC_CONTINUATION_KIND);
    expect(proc.continuationSchema).toEqual(SYNTHETIC_CONTINUATION_SCHEMA);

    const state = await goodPayload(proc);
    expect(proc.checkContinuation(state)).toBeUndefined();
    expect(proc.checkContinuation(JSON.parse(JSON.stringify(state)))).toBeUndefined();
    expect(proc.checkContinuation({ ...state, payload: { ...state.payload, extra: 'ignored' } })).toBeUndefined();

    const bad = (patch: Record<string, unknown>) => proc.checkContinuation({ ...state, payload: { ...state.payload, ...patch } });
    expect(bad({ nextFrameIndex: -1 })).toMatch(/^payload\.nextFrameIndex: .*>=0/);
    expect(bad({ nextFrameIndex: 2.5 })).toMatch(/^payload\.nextFrameIndex: .*int/);
    expect(bad({ audioPhase: 1 })).toMatch(/^payload\.audioPhase: .*<1/);
    expect(bad({ fps: 0 })).toMatch(/^payload\.fps: /);
    expect(bad({ sampleRate: 'x' })).toMatch(/^payload\.sampleRate: /);
    expect(bad({ motionSeed: 2 ** 32 })).toMatch(/^payload\.motionSeed: /);
    expect(bad({ prompt: 5 })).toMatch(/^payload\.prompt: .*expected string/);
    expect(proc.checkContinuation({ kind: SYNTHETIC_CONTINUATION_KIND, payload: {} })).toMatch(/^payload\.nextFrameIndex: /);
    expect(proc.checkContinuation({ kind: 'ltx2.v1', payload: state.payload })).toBe(
      `kind: expected "${SYNTHETIC_CONTINUATION_KIND}", got "ltx2.v1"`,
    );
  });

  it('fail the job with reason invalid_continuation when only the worker can tell, and the worker stays ready', async () => {
    const proc = await started(synthetic());
    const state = await goodPayload(proc);
    // JSON Schema cannot relate two fields, so this passes the declared schema; the generator refuses it.
    const damaged = { ...state, payload: { ...state.payload, audioOriginFrame: 10, nextFrameIndex: 5 } };
    expect(proc.checkContinuation(damaged)).toBeUndefined();
    const failure = await failureOf(proc.generate(request({ ...small, continuationState: damaged }), new AbortController().signal));
    expect(failure.reason).toBe('invalid_continuation');
    expect(failure.message).toMatch(/^continuation_state\.payload\.audioOriginFrame: must not be after nextFrameIndex/);
    expect(proc.phase).toBe('ready');
    expect(framesOf(await collect(proc.generate(request({ ...small, numFrames: 2 }), new AbortController().signal)))).toHaveLength(2);
  });

  it('map a worker error with code invalid_continuation to that reason, and other job errors to job_error', async () => {
    const proc = await started(faulty('reject_continuation'));
    const failure = await failureOf(
      proc.generate(request({ ...small, continuationState: { kind: 'faulty.v1', payload: { frames: 'x' } } }), new AbortController().signal),
    );
    expect(failure).toMatchObject({ reason: 'invalid_continuation', message: 'continuation_state.payload.frames: must be a number' });
    expect(proc.phase).toBe('ready');
    const fresh = await collect(proc.generate(request({ ...small, numFrames: 2 }), new AbortController().signal));
    expect(framesOf(fresh)).toHaveLength(2);
  });

  it('are answered with invalid_continuation by the FastVideo bridge when the kind is not the one it declares', async () => {
    const proc = await started(
      options('python3', [BRIDGE, '--model-path', '/models/stub', '--continuation-kind', 'fastvideo.stub.v1'], {
        PYTHONPATH: STUB,
        PYTHONUNBUFFERED: '1',
      }),
    );
    const failure = await failureOf(
      proc.generate(request({ ...small, continuationState: { kind: 'livegen.synthetic.v1', payload: {} } }), new AbortController().signal),
    );
    expect(failure.reason).toBe('invalid_continuation');
    expect(failure.message).toBe('continuation_state.kind: expected "fastvideo.stub.v1", got "livegen.synthetic.v1"');
    expect(proc.phase).toBe('ready');
  });

  it('make a worker whose continuation_schema cannot be compiled fail its start as a protocol error', async () => {
    const proc = new WorkerProcess(faulty('none', { CAPABILITIES: JSON.stringify({ continuation_schema: { type: 'object', if: {} } }) }));
    running.push(proc);
    const failure = await proc.start().then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(failure).toBeInstanceOf(WorkerFailure);
    expect(failure).toMatchObject({ reason: 'protocol', message: expect.stringMatching(/continuation_schema cannot be compiled/) });
  });
});

describe('SupervisedWorker', () => {
  function supervised(opts: WorkerProcessOptions, logs: WorkerLogEntry[] = []): { worker: SupervisedWorker; ready: Promise<void> } {
    let onReady: () => void = () => undefined;
    const ready = new Promise<void>((resolve) => (onReady = resolve));
    const worker = new SupervisedWorker(7, opts, {
      restartBaseMs: 100,
      restartMaxMs: 1000,
      onEvent: (event) => event.kind === 'ready' && onReady(),
      onLog: (entry) => logs.push(entry),
    });
    running.push({ shutdown: (graceMs) => worker.stop(graceMs) });
    return { worker, ready };
  }

  it('hands every log message of its worker process to onLog, tagged with the worker id', async () => {
    const logs: WorkerLogEntry[] = [];
    const { worker, ready } = supervised(faulty('chatty'), logs);
    worker.start();
    await ready;
    await collect(worker.generate(request({ ...small, numFrames: 2 }), new AbortController().signal));
    expect(logs).toHaveLength(2);
    expect(logs[0]).toEqual({ workerId: 7, level: 'warn', message: 'loading weights', fields: { shard: 1, of: 2 } });
    expect(logs[1]).toEqual({ workerId: 7, level: 'info', message: expect.stringMatching(/^job [0-9a-f]+: 2 frames$/) });
  });

  it('forwards checkContinuation and the declared schema to its current process, once that is ready', async () => {
    const schema = { type: 'object', properties: { frames: { type: 'integer', minimum: 0 } }, required: ['frames'] };
    const { worker, ready } = supervised(
      faulty('none', { CAPABILITIES: JSON.stringify({ continuation_kind: 'faulty.v1', continuation_schema: schema }) }),
    );
    expect(worker.checkContinuation({ kind: 'other', payload: {} })).toBeUndefined();
    worker.start();
    await ready;
    expect(worker.continuationSchema).toEqual(schema);
    expect(worker.checkContinuation({ kind: 'faulty.v1', payload: { frames: 3 } })).toBeUndefined();
    expect(worker.checkContinuation({ kind: 'faulty.v1', payload: { frames: -3 } })).toMatch(/^payload\.frames: /);
    expect(worker.checkContinuation({ kind: 'faulty.v1', payload: {} })).toMatch(/^payload\.frames: /);
    expect(worker.checkContinuation({ kind: 'other', payload: { frames: 3 } })).toBe('kind: expected "faulty.v1", got "other"');
  });
});
