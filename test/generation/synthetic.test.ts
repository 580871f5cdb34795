import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type GenerationEvent,
  InvalidSegmentRequestError,
  SYNTHETIC_CONTINUATION_KIND,
  SyntheticGenerator,
  frameIndexStripLayout,
  promptColour,
  readFrameIndex,
} from '../../src/generation/index.js';
import { collect, doneOf, framesOf, request } from './helpers.js';

const live = () => new AbortController().signal;

/** The pixel at (x, y) of an RGB24 frame. */
function pixel(frame: Buffer, width: number, x: number, y: number): number[] {
  const p = (y * width + x) * 3;
  return [frame[p]!, frame[p + 1]!, frame[p + 2]!];
}

describe('SyntheticGenerator identity', () => {
  it('reports its model id, audio format and continuation kind', () => {
    const generator = new SyntheticGenerator();
    expect(generator.modelId).toBe('livegen/synthetic');
    expect(generator.audio).toEqual({ sampleRate: 48_000, channels: 1 });
    expect(generator.continuationKind).toBe(SYNTHETIC_CONTINUATION_KIND);
    expect(new SyntheticGenerator({ audio: null, modelId: 'm' })).toMatchObject({ audio: null, modelId: 'm' });
  });

  it('rejects bad options naming the option', () => {
    expect(() => new SyntheticGenerator({ stepMs: -1 })).toThrow(/stepMs/);
    expect(() => new SyntheticGenerator({ audio: { sampleRate: 0, channels: 1 } })).toThrow(/audio.sampleRate/);
    expect(() => new SyntheticGenerator({ audio: { sampleRate: 48_000, channels: 0 } })).toThrow(/audio.channels/);
  });
});

describe('SyntheticGenerator events', () => {
  it('emits one step event per inference step, counting from 1, before any frame', async () => {
    const events = await collect(new SyntheticGenerator().generate(request({ numInferenceSteps: 5 }), live()));
    const steps = events.filter((e) => e.type === 'step');
    expect(steps.map((e) => e.step)).toEqual([1, 2, 3, 4, 5]);
    for (const step of steps) {
      expect(step.totalSteps).toBe(5);
      expect(step.stepMs).toBeGreaterThanOrEqual(0);
    }
    const elapsed = steps.map((e) => e.elapsedMs);
    expect(elapsed).toEqual([...elapsed].sort((a, b) => a - b));
    const firstVideo = events.findIndex((e) => e.type === 'video');
    expect(events.slice(0, firstVideo).every((e) => e.type === 'step')).toBe(true);
  });

  it('measures each step as at least stepMs', async () => {
    const events = await collect(
      new SyntheticGenerator({ stepMs: 15 }).generate(request({ numInferenceSteps: 3, numFrames: 1 }), live()),
    );
    const steps = events.filter((e) => e.type === 'step');
    for (const step of steps) expect(step.stepMs).toBeGreaterThanOrEqual(14);
    expect(steps.at(-1)!.elapsedMs).toBeGreaterThanOrEqual(3 * 14);
  });

  it('yields numFrames RGB24 frames of width*height*3 bytes, then done last', async () => {
    for (const [width, height] of [
      [160, 96],
      [320, 240],
      [66, 34],
    ] as const) {
      const events = await collect(
        new SyntheticGenerator({ audio: null }).generate(request({ width, height, numFrames: 7 }), live()),
      );
      const frames = framesOf(events);
      expect(frames).toHaveLength(7);
      for (const frame of frames) expect(frame.length).toBe(width * height * 3);
      expect(events.filter((e) => e.type === 'done')).toHaveLength(1);
      expect(doneOf(events).continuationState?.kind).toBe(SYNTHETIC_CONTINUATION_KIND);
    }
  });

  it('yields each frame followed by its audio', async () => {
    const events = await collect(new SyntheticGenerator().generate(request({ numInferenceSteps: 0, numFrames: 4 }), live()));
    expect(events.map((e) => e.type)).toEqual([
      ...['video', 'audio', 'video', 'audio', 'video', 'audio', 'video', 'audio'],
      'done',
    ]);
  });

  it('yields no audio when built with audio: null', async () => {
    const events = await collect(new SyntheticGenerator({ audio: null }).generate(request(), live()));
    expect(events.some((e) => e.type === 'audio')).toBe(false);
  });

  it('yields a new buffer for every frame', async () => {
    const frames = framesOf(await collect(new SyntheticGenerator().generate(request({ numFrames: 5 }), live())));
    expect(new Set(frames.map((f) => f.buffer)).size).toBe(5);
  });
});

describe('SyntheticGenerator pictures', () => {
  it('gives identical bytes for the same prompt and seed', async () => {
    const a = await collect(new SyntheticGenerator().generate(request(), live()));
    const b = await collect(new SyntheticGenerator().generate(request(), live()));
    expect(Buffer.concat(framesOf(a)).equals(Buffer.concat(framesOf(b)))).toBe(true);
  });

  it('moves: consecutive frames differ outside the strip', async () => {
    const { width, height } = request();
    const frames = framesOf(await collect(new SyntheticGenerator().generate(request(), live())));
    const { stripHeight } = frameIndexStripLayout(width, height);
    const below = (f: Buffer) => f.subarray(stripHeight * width * 3);
    for (let i = 1; i < frames.length; i++) expect(below(frames[i]!).equals(below(frames[i - 1]!))).toBe(false);
  });

  it('differs with the seed', async () => {
    const a = framesOf(await collect(new SyntheticGenerator().generate(request({ seed: 1 }), live())));
    const b = framesOf(await collect(new SyntheticGenerator().generate(request({ seed: 2 }), live())));
    expect(a[0]!.equals(b[0]!)).toBe(false);
  });

  it('paints the background in the prompt colour, different for different prompts', async () => {
    const { width, height } = request();
    const first = async (prompt: string) =>
      framesOf(await collect(new SyntheticGenerator().generate(request({ prompt, numFrames: 1 }), live())))[0]!;
    const [red, blue] = [promptColour('a red fox'), promptColour('a blue whale')];
    expect(red).not.toEqual(blue);
    // Which column is background (not the bar) differs by frame; sample both sides.
    const y = frameIndexStripLayout(width, height).stripHeight; // first row below the strip is unshaded to 1 part in 100
    for (const [prompt, colour] of [
      ['a red fox', red],
      ['a blue whale', blue],
    ] as const) {
      const frame = await first(prompt);
      const candidates = [pixel(frame, width, 0, y), pixel(frame, width, width - 1, y)];
      const close = candidates.some((p) => p.every((v, i) => Math.abs(v - colour[i]!) <= colour[i]! * 0.1 + 1));
      expect(close, `${prompt}: ${JSON.stringify(candidates)} vs ${JSON.stringify(colour)}`).toBe(true);
    }
  });

  it('picks saturated, stable colours', () => {
    expect(promptColour('same')).toEqual(promptColour('same'));
    for (const prompt of ['', 'a', 'b', 'sunset over the sea', '日本語のプロンプト']) {
      const c = promptColour(prompt);
      expect(c.every((v) => Number.isInteger(v) && v >= 0 && v <= 255)).toBe(true);
      expect(Math.max(...c) - Math.min(...c)).toBeGreaterThan(150);
    }
  });

  it('stamps each frame with its index, starting at 0 for a fresh clip', async () => {
    const { width, height } = request();
    const frames = framesOf(await collect(new SyntheticGenerator().generate(request({ numFrames: 10 }), live())));
    expect(frames.map((f) => readFrameIndex(f, width, height))).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });
});

describe('SyntheticGenerator init image', () => {
  let dir = '';
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'livegen-gen-'));
    await writeFile(join(dir, 'a.png'), 'image bytes A');
    await writeFile(join(dir, 'b.png'), 'image bytes B');
    await writeFile(join(dir, 'empty.png'), '');
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const firstFrame = async (initImagePath?: string) =>
    framesOf(await collect(new SyntheticGenerator().generate(request({ numFrames: 1, initImagePath }), live())))[0]!;

  it('tints the bottom-right corner by the image bytes', async () => {
    const { width, height } = request();
    const [none, a, a2, b] = [
      await firstFrame(),
      await firstFrame(join(dir, 'a.png')),
      await firstFrame(join(dir, 'a.png')),
      await firstFrame(join(dir, 'b.png')),
    ];
    const corner = (f: Buffer) => pixel(f, width, width - 2, height - 2);
    expect(corner(a)).toEqual(corner(a2));
    expect(corner(a)).not.toEqual(corner(b));
    expect(corner(a)).not.toEqual(corner(none));
    expect(pixel(a, width, 0, height - 2)).toEqual(pixel(none, width, 0, height - 2)); // only the corner changes
  });

  it('throws a clear error for a missing or empty image', async () => {
    await expect(firstFrame(join(dir, 'missing.png'))).rejects.toThrow(/initImagePath: cannot read init image .*missing\.png.*ENOENT/);
    await expect(firstFrame(join(dir, 'empty.png'))).rejects.toThrow(/initImagePath: .*empty/);
  });
});

describe('SyntheticGenerator request validation', () => {
  const cases: Array<[string, Parameters<typeof request>[0], RegExp]> = [
    ['odd width', { width: 161 }, /^width: must be an even integer/],
    ['odd height', { height: 95 }, /^height: .*even/],
    ['zero width', { width: 0 }, /^width:/],
    ['negative height', { height: -96 }, /^height:/],
    ['too small to hold the strip', { width: 32 }, /^width:/],
    ['zero frames', { numFrames: 0 }, /^numFrames: must be a positive integer, got 0/],
    ['fractional frames', { numFrames: 2.5 }, /^numFrames:/],
    ['zero fps', { fps: 0 }, /^fps:/],
    ['NaN fps', { fps: Number.NaN }, /^fps:/],
    ['negative steps', { numInferenceSteps: -1 }, /^numInferenceSteps:/],
    ['fractional seed', { seed: 0.5 }, /^seed:/],
    ['infinite guidance', { guidanceScale: Infinity }, /^guidanceScale:/],
  ];
  for (const [name, overrides, message] of cases) {
    it(`rejects ${name}`, async () => {
      const run = collect(new SyntheticGenerator().generate(request(overrides), live()));
      await expect(run).rejects.toThrow(InvalidSegmentRequestError);
      await expect(run).rejects.toThrow(message);
    });
  }
});

describe('SyntheticGenerator abort', () => {
  const isAbort = (error: unknown) => error instanceof Error && error.name === 'AbortError';

  it('rejects at once when the signal is already aborted', async () => {
    const controller = new AbortController();
    controller.abort();
    const seen: GenerationEvent[] = [];
    const run = (async () => {
      for await (const e of new SyntheticGenerator().generate(request(), controller.signal)) seen.push(e);
    })();
    await expect(run).rejects.toSatisfy(isAbort);
    expect(seen).toEqual([]);
  });

  it('stops a long step as soon as the signal aborts', async () => {
    const controller = new AbortController();
    // A step of 10 minutes: the test can only finish if the wait is cut short.
    const generator = new SyntheticGenerator({ stepMs: 600_000 });
    const seen: GenerationEvent[] = [];
    setTimeout(() => controller.abort(), 20);
    const run = (async () => {
      for await (const e of generator.generate(request(), controller.signal)) seen.push(e);
    })();
    await expect(run).rejects.toSatisfy(isAbort);
    expect(seen).toEqual([]);
  });

  it('throws the signal reason when one is given', async () => {
    const controller = new AbortController();
    const reason = new Error('client left');
    setTimeout(() => controller.abort(reason), 5);
    await expect(collect(new SyntheticGenerator({ stepMs: 600_000 }).generate(request(), controller.signal))).rejects.toBe(
      reason,
    );
  });

  it('yields nothing more once aborted between steps', async () => {
    const controller = new AbortController();
    const seen: GenerationEvent[] = [];
    const run = (async () => {
      for await (const e of new SyntheticGenerator({ stepMs: 1 }).generate(request({ numInferenceSteps: 6 }), controller.signal)) {
        seen.push(e);
        if (e.type === 'step' && e.step === 2) controller.abort();
      }
    })();
    await expect(run).rejects.toSatisfy(isAbort);
    expect(seen.map((e) => e.type)).toEqual(['step', 'step']);
  });

  it('yields nothing more once aborted between frames', async () => {
    for (const pace of ['fast', 'realtime'] as const) {
      const controller = new AbortController();
      const seen: GenerationEvent[] = [];
      const run = (async () => {
        const generator = new SyntheticGenerator({ pace, stepMs: 0 });
        for await (const e of generator.generate(request({ numFrames: 50 }), controller.signal)) {
          seen.push(e);
          if (framesOf(seen).length === 3) controller.abort();
        }
      })();
      await expect(run).rejects.toSatisfy(isAbort);
      expect(framesOf(seen), pace).toHaveLength(3);
      expect(seen.at(-1)!.type, pace).toBe('video');
    }
  });

  it('stops waiting for a realtime frame when the signal aborts', async () => {
    const controller = new AbortController();
    const seen: GenerationEvent[] = [];
    const run = (async () => {
      // 0.01 fps: the second frame is 100 s away, longer than the test timeout.
      const generator = new SyntheticGenerator({ pace: 'realtime', stepMs: 0 });
      for await (const e of generator.generate(request({ numFrames: 3, fps: 0.01 }), controller.signal)) {
        seen.push(e);
        if (e.type === 'video') setTimeout(() => controller.abort(), 20);
      }
    })();
    await expect(run).rejects.toSatisfy(isAbort);
    expect(framesOf(seen)).toHaveLength(1);
  });
});

describe('SyntheticGenerator pace', () => {
  it('realtime: frame k arrives no earlier than k/fps after the first', async () => {
    const fps = 30;
    const numFrames = 6;
    const times: number[] = [];
    const generator = new SyntheticGenerator({ pace: 'realtime', stepMs: 0 });
    for await (const e of generator.generate(request({ fps, numFrames }), live())) {
      if (e.type === 'video') times.push(performance.now());
    }
    expect(times).toHaveLength(numFrames);
    for (let k = 1; k < numFrames; k++) expect(times[k]! - times[0]!).toBeGreaterThanOrEqual((k * 1000) / fps - 1);
    expect(times.at(-1)! - times[0]!).toBeGreaterThanOrEqual(((numFrames - 1) * 1000) / fps - 1);
  });

  it('realtime defaults to a visible step delay; fast to none', () => {
    expect(new SyntheticGenerator({ pace: 'realtime' }).stepMs).toBeGreaterThan(0);
    expect(new SyntheticGenerator({ pace: 'fast' }).stepMs).toBe(0);
  });

  it('fast: lets timers run while generating', async () => {
    let ticks = 0;
    const timer = setInterval(() => ticks++, 0);
    try {
      await collect(new SyntheticGenerator().generate(request({ numFrames: 60, numInferenceSteps: 40 }), live()));
    } finally {
      clearInterval(timer);
    }
    expect(ticks).toBeGreaterThan(0);
  });
});
