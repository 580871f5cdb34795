import { afterEach, describe, expect, it } from 'vitest';
import { ContinuationStateError, SyntheticGenerator, SyntheticRenderThread, ThreadedSyntheticGenerator } from '../../src/generation/index.js';
import type { GenerationEvent, SegmentRequest } from '../../src/generation/index.js';
import { probeMedia, startServer, TestClient, type TestServer } from '../server/harness.js';

const REQUEST: SegmentRequest = {
  prompt: 'a threaded fox',
  seed: 7,
  numInferenceSteps: 3,
  guidanceScale: 1,
  width: 96,
  height: 64,
  fps: 24,
  numFrames: 12,
};

const generators: ThreadedSyntheticGenerator[] = [];
let server: TestServer | undefined;
afterEach(async () => {
  for (const g of generators.splice(0)) await g.close();
  await server?.close();
  server = undefined;
});

function threaded(): ThreadedSyntheticGenerator {
  const g = new ThreadedSyntheticGenerator({ pace: 'fast', stepMs: 0, audio: { sampleRate: 48000, channels: 1 } });
  generators.push(g);
  return g;
}

async function collect(events: AsyncIterable<GenerationEvent>, release = true): Promise<GenerationEvent[]> {
  const out: GenerationEvent[] = [];
  for await (const event of events) {
    if (event.type === 'video') {
      out.push({ type: 'video', frame: Buffer.from(event.frame) });
      if (release) event.release?.();
    } else {
      out.push(event);
    }
  }
  return out;
}

describe('ThreadedSyntheticGenerator', () => {
  it('yields exactly what the in-process generator yields: steps, frames, audio and the state', async () => {
    const inProcess = await collect(new SyntheticGenerator({ pace: 'fast', stepMs: 0, audio: { sampleRate: 48000, channels: 1 } }).generate(REQUEST, new AbortController().signal));
    const fromThread = await collect(threaded().generate(REQUEST, new AbortController().signal));
    const shape = (events: GenerationEvent[]) => events.map((e) => (e.type === 'step' ? { ...e, stepMs: 0, elapsedMs: 0 } : e));
    expect(shape(fromThread)).toEqual(shape(inProcess));
  });

  it('keeps going when the consumer never releases its frames (the thread only reuses buffers it gets back)', async () => {
    const events = await collect(threaded().generate(REQUEST, new AbortController().signal), false);
    expect(events.filter((e) => e.type === 'video')).toHaveLength(REQUEST.numFrames);
  });

  it('stops a job when the signal aborts, and runs the next job on the same thread', async () => {
    const g = threaded();
    const controller = new AbortController();
    const long = { ...REQUEST, numFrames: 10_000 };
    let frames = 0;
    await expect(
      (async () => {
        for await (const event of g.generate(long, controller.signal)) {
          if (event.type === 'video') {
            frames += 1;
            event.release?.();
            if (frames === 5) controller.abort(new Error('left'));
          }
        }
      })(),
    ).rejects.toThrow('left');
    expect(frames).toBeLessThan(10);
    const next = await collect(g.generate(REQUEST, new AbortController().signal));
    expect(next.filter((e) => e.type === 'video')).toHaveLength(REQUEST.numFrames);
  });

  it('throws the generation layer\'s own error for a state it cannot read', async () => {
    const bad = { ...REQUEST, continuationState: { kind: 'livegen.synthetic.v1', payload: { nextFrameIndex: 'x' } } };
    await expect(collect(threaded().generate(bad, new AbortController().signal))).rejects.toBeInstanceOf(ContinuationStateError);
  });

  it('shares one render thread between generators: jobs run side by side, closing a generator leaves the thread to its owner', async () => {
    const options = { pace: 'fast' as const, stepMs: 0, audio: { sampleRate: 48000, channels: 1 } };
    const shared = new SyntheticRenderThread(options);
    try {
      const a = new ThreadedSyntheticGenerator(shared);
      const b = new ThreadedSyntheticGenerator(shared);
      // The shared thread's options decide (audio on).
      expect(a.audio).toEqual({ sampleRate: 48000, channels: 1 });
      const expected = await collect(new SyntheticGenerator(options).generate(REQUEST, new AbortController().signal));
      const other = { ...REQUEST, prompt: 'a second fox' };
      const expectedOther = await collect(new SyntheticGenerator(options).generate(other, new AbortController().signal));
      const [fromA, fromB] = await Promise.all([collect(a.generate(REQUEST, new AbortController().signal)), collect(b.generate(other, new AbortController().signal))]);
      const frames = (events: GenerationEvent[]) => events.filter((e) => e.type === 'video');
      expect(frames(fromA)).toEqual(frames(expected));
      expect(frames(fromB)).toEqual(frames(expectedOther));
      await a.close();
      expect(frames(await collect(b.generate(REQUEST, new AbortController().signal)))).toEqual(frames(expected));
      // The owner closes it: a job under way fails, a new one is refused.
      const long = b.generate({ ...REQUEST, numFrames: 10_000 }, new AbortController().signal);
      await long.next();
      await shared.close();
      await expect(collect(long)).rejects.toThrow('the generator was closed');
      await expect(collect(b.generate(REQUEST, new AbortController().signal))).rejects.toThrow('closed');
    } finally {
      await shared.close();
    }
  });

  it('continues the story across segments through a server: frame indices run on', async () => {
    server = await startServer({ generator: { synthetic: { thread: true } } });
    const client = await TestClient.init(server.wsUrl);
    await client.waitFor('gpu_assigned');
    client.send({ type: 'segment_prompt_source', prompt: 'one' });
    client.send({ type: 'segment_prompt_source', prompt: 'two' });
    await client.waitFor('ltx2_segment_complete', 2);
    const { width, height } = server.server.policy.sampling;
    const first = await probeMedia(Buffer.concat(client.segmentMedia(0)), width, height);
    const second = await probeMedia(Buffer.concat(client.segmentMedia(1)), width, height);
    const indices = [...first.frameIndices, ...second.frameIndices];
    expect(indices).toEqual(indices.map((_, i) => i));
    client.close();
  });
});
