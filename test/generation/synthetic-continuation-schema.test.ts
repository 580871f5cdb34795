import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  SYNTHETIC_CONTINUATION_KIND,
  SYNTHETIC_CONTINUATION_SCHEMA,
  SyntheticGenerator,
  decodeSyntheticContinuation,
} from '../../src/generation/index.js';

// The synthetic generator declares a JSON Schema of its continuation payload (what a
// worker sends as `continuation_schema`, and livegen compiles with z.fromJSONSchema).
// It must accept exactly what decodeSyntheticContinuation accepts, but for the one rule
// JSON Schema cannot state: audioOriginFrame not after nextFrameIndex.
const compiled = z.fromJSONSchema(SYNTHETIC_CONTINUATION_SCHEMA as Parameters<typeof z.fromJSONSchema>[0]);

const valid = {
  nextFrameIndex: 48,
  fps: 24,
  sampleRate: 48_000,
  audioPhase: 0.25,
  audioOriginFrame: 0,
  audioOriginSample: 0,
  motionSeed: 42,
  prompt: 'a lighthouse at dusk',
};

/** Values around every boundary the decoder draws, and of every JSON type. */
const anyValue = fc.oneof(
  fc.constantFrom(0, -0, 1, -1, 0.5, 0.999999, 1.5, 24, 2 ** 24, 2 ** 32 - 1, 2 ** 32, 2 ** 40, 2 ** 40 + 1, 2 ** 53 - 1, 2 ** 53, 1e300),
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.constantFrom(null, true, '3', '', [], {}, undefined),
);

function decodes(payload: Record<string, unknown>): boolean {
  try {
    decodeSyntheticContinuation({ kind: SYNTHETIC_CONTINUATION_KIND, payload });
    return true;
  } catch {
    return false;
  }
}

describe('the synthetic continuation schema', () => {
  it('is what the generator declares, and accepts a state it wrote', () => {
    expect(new SyntheticGenerator().continuationSchema).toBe(SYNTHETIC_CONTINUATION_SCHEMA);
    expect(compiled.safeParse(valid).success).toBe(true);
    expect(decodes(valid)).toBe(true);
  });

  it('accepts exactly the payloads decodeSyntheticContinuation accepts', () => {
    const field = fc.constantFrom(...(Object.keys(valid) as (keyof typeof valid)[]));
    const patch = fc.array(fc.tuple(field, anyValue), { minLength: 1, maxLength: 3 });
    fc.assert(
      fc.property(patch, fc.boolean(), (changes, drop) => {
        const payload: Record<string, unknown> = { ...valid };
        for (const [name, value] of changes) {
          if (drop && value === undefined) delete payload[name];
          else payload[name] = value;
        }
        // Keep the cross-field rule out of the comparison: it is the decoder's alone.
        const origin = payload.audioOriginFrame;
        const next = payload.nextFrameIndex;
        fc.pre(!(typeof origin === 'number' && typeof next === 'number' && origin > next));
        expect(compiled.safeParse(payload).success, JSON.stringify(payload)).toBe(decodes(payload));
      }),
      { numRuns: 2000 },
    );
  });

  it('lets unknown fields through, as the decoder ignores them', () => {
    expect(compiled.safeParse({ ...valid, note: 'x' }).success).toBe(true);
  });
});
