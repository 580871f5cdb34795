import { describe, expect, it } from 'vitest';
import {
  type ContinuationState,
  ContinuationStateError,
  SYNTHETIC_CONTINUATION_KIND,
  SyntheticGenerator,
  readFrameIndex,
} from '../../src/generation/index.js';
import { collect, doneOf, framesOf, request } from './helpers.js';

const live = () => new AbortController().signal;

async function segment(overrides: Parameters<typeof request>[0], generator = new SyntheticGenerator()) {
  const events = await collect(generator.generate(request(overrides), live()));
  return { events, frames: framesOf(events), state: doneOf(events).continuationState! };
}

describe('synthetic continuation', () => {
  it('ends every segment with a state naming the next frame', async () => {
    const { state } = await segment({ numFrames: 9 });
    expect(state.kind).toBe(SYNTHETIC_CONTINUATION_KIND);
    expect(state.payload).toMatchObject({ nextFrameIndex: 9, fps: 24, sampleRate: 48_000, prompt: 'a lighthouse at dusk' });
  });

  it('continues frame indices from the previous segment', async () => {
    const { width, height } = request();
    const one = await segment({ numFrames: 5 });
    const two = await segment({ numFrames: 4, continuationState: one.state, prompt: 'a new prompt' });
    expect(two.frames.map((f) => readFrameIndex(f, width, height))).toEqual([5, 6, 7, 8]);
    expect(doneOf(two.events).continuationState?.payload.nextFrameIndex).toBe(9);
  });

  it('starts at frame 0 without a state', async () => {
    const { width, height } = request();
    await segment({ numFrames: 5 });
    const fresh = await segment({ numFrames: 2 });
    expect(fresh.frames.map((f) => readFrameIndex(f, width, height))).toEqual([0, 1]);
  });

  it('makes two continued segments the same pictures as one long segment, across a JSON round trip', async () => {
    const whole = await segment({ numFrames: 12 });
    const first = await segment({ numFrames: 7 });
    const hydrated = JSON.parse(JSON.stringify(first.state)) as ContinuationState;
    // The second request's own seed must not move the picture: the clip's motion continues.
    const second = await segment({ numFrames: 5, continuationState: hydrated, seed: 999 });
    expect(Buffer.concat([...first.frames, ...second.frames]).equals(Buffer.concat(whole.frames))).toBe(true);
    expect(second.state).toEqual(whole.state);
  });

  it('wraps the strip index at 2^24 while the global index runs on', async () => {
    const { width, height } = request();
    const { state } = await segment({ numFrames: 1 });
    const near = { ...state, payload: { ...state.payload, nextFrameIndex: 2 ** 24 - 2 } };
    const next = await segment({ numFrames: 4, continuationState: near });
    expect(next.frames.map((f) => readFrameIndex(f, width, height))).toEqual([2 ** 24 - 2, 2 ** 24 - 1, 0, 1]);
    expect(next.state.payload.nextFrameIndex).toBe(2 ** 24 + 2);
  });

  it('rejects a state of another kind, naming the kind', async () => {
    const state = { kind: 'ltx2.v1', payload: { nextFrameIndex: 3 } };
    const run = segment({ continuationState: state });
    await expect(run).rejects.toThrow(ContinuationStateError);
    await expect(run).rejects.toThrow(/continuationState\.kind: expected "livegen\.synthetic\.v1", got "ltx2\.v1"/);
  });

  it('rejects malformed payloads, naming the field', async () => {
    const { state } = await segment({ numFrames: 1 });
    const broken: Array<[Record<string, unknown>, RegExp]> = [
      [{ nextFrameIndex: -1 }, /payload\.nextFrameIndex: must be an integer/],
      [{ nextFrameIndex: '3' }, /payload\.nextFrameIndex/],
      [{ nextFrameIndex: undefined }, /payload\.nextFrameIndex: .*got undefined/],
      [{ audioPhase: 1 }, /payload\.audioPhase: must be a number in \[0, 1\)/],
      [{ audioPhase: Number.NaN }, /payload\.audioPhase/],
      [{ fps: 0 }, /payload\.fps/],
      [{ sampleRate: 'x' }, /payload\.sampleRate/],
      [{ motionSeed: 2 ** 32 }, /payload\.motionSeed/],
      [{ prompt: 5 }, /payload\.prompt/],
      [{ audioOriginFrame: 10, nextFrameIndex: 5 }, /payload\.audioOriginFrame: must not be after nextFrameIndex/],
    ];
    for (const [patch, message] of broken) {
      const bad = { kind: state.kind, payload: { ...state.payload, ...patch } };
      await expect(segment({ continuationState: bad }), JSON.stringify(patch)).rejects.toThrow(message);
    }
    for (const payload of [null, [], 'x']) {
      const bad = { kind: state.kind, payload } as unknown as ContinuationState;
      await expect(segment({ continuationState: bad })).rejects.toThrow(/continuationState\.payload: must be an object/);
    }
  });
});
