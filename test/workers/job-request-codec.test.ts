import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { SegmentRequest } from '../../src/generation/index.js';
import { decodeJobRequest, encodeJobRequest, type WorkerJobRequest } from '../../src/generation/worker/index.js';

const segmentRequest: fc.Arbitrary<SegmentRequest> = fc.record(
  {
    prompt: fc.string(),
    negativePrompt: fc.string(),
    seed: fc.maxSafeNat(),
    numInferenceSteps: fc.nat(100),
    guidanceScale: fc.double({ noNaN: true, noDefaultInfinity: true }),
    width: fc.integer({ min: 64, max: 4096 }),
    height: fc.integer({ min: 32, max: 4096 }),
    fps: fc.double({ min: 1, max: 240, noNaN: true }),
    numFrames: fc.integer({ min: 1, max: 1000 }),
    initImagePath: fc.string({ minLength: 1 }),
    continuationState: fc.record({ kind: fc.string({ minLength: 1 }), payload: fc.dictionary(fc.string(), fc.jsonValue()) }),
  },
  { requiredKeys: ['prompt', 'seed', 'numInferenceSteps', 'guidanceScale', 'width', 'height', 'fps', 'numFrames'] },
);

describe('the worker job request codec', () => {
  it('round-trips every segment request, across JSON as on the pipe', () => {
    fc.assert(
      fc.property(segmentRequest, (request) => {
        const wire = encodeJobRequest(request);
        // JSON.parse(JSON.stringify) turns -0 into 0; compare as the pipe delivers it.
        const expected = JSON.parse(JSON.stringify(request)) as SegmentRequest;
        expect(decodeJobRequest(JSON.parse(JSON.stringify(wire)) as WorkerJobRequest)).toStrictEqual(expected);
        expect(encodeJobRequest(decodeJobRequest(wire))).toStrictEqual(wire);
      }),
    );
  });

  it('spells every field the way the protocol documents, leaving absent ones out', () => {
    const wire = encodeJobRequest({
      prompt: 'p',
      negativePrompt: 'n',
      seed: 1,
      numInferenceSteps: 2,
      guidanceScale: 3.5,
      width: 64,
      height: 32,
      fps: 24,
      numFrames: 8,
      initImagePath: '/tmp/initial.png',
      continuationState: { kind: 'k', payload: { a: 1 } },
    });
    expect(wire).toStrictEqual({
      prompt: 'p',
      negative_prompt: 'n',
      seed: 1,
      num_inference_steps: 2,
      guidance_scale: 3.5,
      width: 64,
      height: 32,
      fps: 24,
      num_frames: 8,
      init_image_path: '/tmp/initial.png',
      continuation_state: { kind: 'k', payload: { a: 1 } },
    });
    const bare = encodeJobRequest({ prompt: 'p', seed: 1, numInferenceSteps: 2, guidanceScale: 3.5, width: 64, height: 32, fps: 24, numFrames: 8 });
    expect(Object.keys(bare)).toEqual(['prompt', 'seed', 'num_inference_steps', 'guidance_scale', 'width', 'height', 'fps', 'num_frames']);
  });

  it('reads null optional fields from a wire request as absent', () => {
    const wire = { ...encodeJobRequest({ prompt: 'p', seed: 1, numInferenceSteps: 2, guidanceScale: 3.5, width: 64, height: 32, fps: 24, numFrames: 8 }), negative_prompt: null, init_image_path: null, continuation_state: null };
    expect(decodeJobRequest(wire as unknown as WorkerJobRequest)).toStrictEqual({ prompt: 'p', seed: 1, numInferenceSteps: 2, guidanceScale: 3.5, width: 64, height: 32, fps: 24, numFrames: 8 });
  });
});
