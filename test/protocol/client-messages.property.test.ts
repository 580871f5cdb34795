import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { parseClientMessage } from '../../src/protocol/index.js';
import { CLIENT_TYPES } from './helpers.js';

const RUNS = { numRuns: 200 };

type Frame = Record<string, unknown>;

// ---- arbitraries for valid client frames, written from PROTOCOL.md ----

const text = fc.string({ unit: 'binary', maxLength: 40 });
const optionalText = fc.option(text, { nil: null });
const bool = fc.boolean();
const base64 = fc.uint8Array({ minLength: 1, maxLength: 96 }).map((bytes) => Buffer.from(bytes).toString('base64'));

const initialImage = fc.record(
  {
    mime: fc.constantFrom('image/png', 'image/jpeg', 'image/jpg', 'image/webp'),
    name: optionalText,
    data: base64,
  },
  { requiredKeys: ['mime', 'data'] },
);

// zod drops `__proto__` keys of records and objects (a prototype-pollution guard), so
// generated keys leave it out; everything else round-trips.
const safeKey = (k: string): boolean => k !== '__proto__';

const continuationState = fc.record({
  kind: fc.string({ minLength: 1, maxLength: 20 }),
  payload: fc.dictionary(fc.string({ maxLength: 10 }).filter(safeKey), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 5 }),
});

const INIT_KEYS = new Set([
  'type',
  'client_id',
  'preset',
  'preset_label',
  'curated_prompts',
  'initial_image',
  'enhancement_enabled',
  'auto_extension_enabled',
  'loop_generation_enabled',
  'single_clip_mode',
  'stream_mode',
  'continuation_state',
]);

const sessionInit = fc
  .tuple(
    fc.record(
      {
        client_id: optionalText,
        preset: optionalText,
        preset_label: optionalText,
        curated_prompts: fc.array(text, { maxLength: 5 }),
        initial_image: fc.option(initialImage, { nil: null }),
        enhancement_enabled: bool,
        auto_extension_enabled: bool,
        loop_generation_enabled: bool,
        single_clip_mode: bool,
        stream_mode: fc.constantFrom('av_fmp4', 'legacy_jpeg'),
        continuation_state: fc.option(continuationState, { nil: null }),
      },
      { requiredKeys: [] },
    ),
    // Unknown extra fields, which session_init_v2 keeps.
    fc.dictionary(
      fc.string({ minLength: 1, maxLength: 12 }).filter((k) => !INIT_KEYS.has(k) && safeKey(k)),
      fc.jsonValue({ maxDepth: 2 }),
      { maxKeys: 3 },
    ),
  )
  .map(([fields, extra]): Frame => ({ ...extra, ...fields, type: 'session_init_v2' }));

const segmentPromptSource = fc
  .record(
    {
      prompt: text,
      negative_prompt: optionalText,
      source: fc.constantFrom('curated', 'enhanced', 'user', 'auto_extension'),
      seed: fc.option(fc.maxSafeInteger(), { nil: null }),
      num_inference_steps: fc.option(fc.integer({ min: 1, max: 1000 }), { nil: null }),
      guidance_scale: fc.option(fc.double({ noNaN: true, noDefaultInfinity: true }), { nil: null }),
    },
    { requiredKeys: ['prompt'] },
  )
  .map((fields): Frame => ({ type: 'segment_prompt_source', ...fields }));

const seedPromptsUpdated = fc
  .record({ seed_prompts: fc.array(text, { maxLength: 5 }) }, { requiredKeys: [] })
  .map((fields): Frame => ({ type: 'seed_prompts_updated', ...fields }));

const toggle = (type: string, field: 'enabled' | 'paused') => fc.boolean().map((v): Frame => ({ type, [field]: v }));

const VALID: Record<(typeof CLIENT_TYPES)[number], fc.Arbitrary<Frame>> = {
  session_init_v2: sessionInit,
  segment_prompt_source: segmentPromptSource,
  seed_prompts_updated: seedPromptsUpdated,
  enhancement_updated: toggle('enhancement_updated', 'enabled'),
  auto_extension_updated: toggle('auto_extension_updated', 'enabled'),
  loop_generation_updated: toggle('loop_generation_updated', 'enabled'),
  generation_paused_updated: toggle('generation_paused_updated', 'paused'),
  snapshot_state: fc.constant({ type: 'snapshot_state' }),
};

const anyValidFrame = fc.oneof(...Object.values(VALID));

/** The documented defaults, filled in for fields a frame leaves out. */
const DEFAULTS: Partial<Record<(typeof CLIENT_TYPES)[number], Frame>> = {
  session_init_v2: {
    curated_prompts: [],
    enhancement_enabled: false,
    auto_extension_enabled: false,
    loop_generation_enabled: false,
    single_clip_mode: false,
    stream_mode: 'av_fmp4',
  },
  segment_prompt_source: { source: 'user' },
  seed_prompts_updated: { seed_prompts: [] },
};

/** What a frame should parse to: its JSON round trip with the defaults filled in. */
function expectedMessage(frame: Frame): Frame {
  const wire = JSON.parse(JSON.stringify(frame)) as Frame;
  const defaults = DEFAULTS[wire.type as (typeof CLIENT_TYPES)[number]] ?? {};
  return { ...defaults, ...wire };
}

const KNOWN = new Set<string>(CLIENT_TYPES);

describe('valid client frames (property)', () => {
  for (const type of CLIENT_TYPES) {
    it(`any generated valid ${type} parses and keeps its fields`, () => {
      fc.assert(
        fc.property(VALID[type], (frame) => {
          const result = parseClientMessage(JSON.stringify(frame));
          if (!result.ok) throw new Error(`rejected ${JSON.stringify(frame)}: ${result.error.message}`);
          expect(result.message).toEqual(expectedMessage(frame));
        }),
        RUNS,
      );
    });
  }

  it('any generated valid frame parses the same from a Buffer as from a string', () => {
    fc.assert(
      fc.property(anyValidFrame, (frame) => {
        const json = JSON.stringify(frame);
        expect(parseClientMessage(Buffer.from(json, 'utf8'))).toEqual(parseClientMessage(json));
      }),
      RUNS,
    );
  });

  it('any generated valid frame sent as a binary frame is rejected', () => {
    fc.assert(
      fc.property(anyValidFrame, (frame) => {
        const result = parseClientMessage(Buffer.from(JSON.stringify(frame)), { binary: true });
        expect(result.ok).toBe(false);
        expect(result.ok ? undefined : result.error.code).toBe('invalid_message');
      }),
      RUNS,
    );
  });
});

describe('mutated type (property)', () => {
  const badType = fc.oneof(
    fc.string({ maxLength: 30 }).filter((s) => !KNOWN.has(s)),
    fc.constantFrom('__proto__', 'constructor', 'toString', 'valueOf', 'Session_Init_V2', 'session_init_v2 ', 'queue_status'),
    fc.jsonValue({ maxDepth: 2 }).filter((v) => typeof v !== 'string'),
  );

  it('any valid frame whose type is replaced by an unknown string or a non-string is rejected with invalid_message', () => {
    fc.assert(
      fc.property(anyValidFrame, badType, (frame, type) => {
        let result: ReturnType<typeof parseClientMessage> | undefined;
        expect(() => {
          result = parseClientMessage(JSON.stringify({ ...frame, type }));
        }).not.toThrow();
        expect(result?.ok).toBe(false);
        if (result && !result.ok) {
          expect(result.error.code).toBe('invalid_message');
          expect(result.error.message).toMatch(/^type: /);
        }
      }),
      RUNS,
    );
  });

  it('any valid frame with its type deleted is rejected with "type: required"', () => {
    fc.assert(
      fc.property(anyValidFrame, (frame) => {
        const { type: _type, ...rest } = frame;
        const result = parseClientMessage(JSON.stringify(rest));
        expect(result).toMatchObject({ ok: false, error: { code: 'invalid_message', message: 'type: required' } });
      }),
      RUNS,
    );
  });
});

describe('robustness (property)', () => {
  const neverThrows = (data: string | Buffer, binary = false) => {
    let result: ReturnType<typeof parseClientMessage> | undefined;
    expect(() => {
      result = parseClientMessage(data, { binary });
    }).not.toThrow();
    if (result && !result.ok) {
      expect(result.error.code).toBe('invalid_message');
      expect(result.error.message.length).toBeGreaterThan(0);
    }
    return result;
  };

  it('arbitrary JSON values never make parseClientMessage throw', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        neverThrows(JSON.stringify(value));
      }),
      RUNS,
    );
  });

  it('arbitrary strings never make parseClientMessage throw', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 200 }), (s) => {
        neverThrows(s);
      }),
      RUNS,
    );
  });

  it('arbitrary bytes never make parseClientMessage throw, as text or binary frames', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.boolean(), (bytes, binary) => {
        neverThrows(Buffer.from(bytes), binary);
      }),
      RUNS,
    );
  });

  it('a known type with arbitrary other fields never makes parseClientMessage throw', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...CLIENT_TYPES),
        fc.dictionary(fc.string({ maxLength: 25 }), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 6 }),
        (type, fields) => {
          neverThrows(JSON.stringify({ ...fields, type }));
        },
      ),
      RUNS,
    );
  });

  it('a known type with its documented fields set to arbitrary JSON never makes parseClientMessage throw', () => {
    const field = fc.constantFrom(
      'client_id',
      'preset',
      'curated_prompts',
      'initial_image',
      'enhancement_enabled',
      'stream_mode',
      'continuation_state',
      'prompt',
      'source',
      'seed',
      'num_inference_steps',
      'guidance_scale',
      'seed_prompts',
      'enabled',
      'paused',
    );
    fc.assert(
      fc.property(anyValidFrame, field, fc.jsonValue({ maxDepth: 3 }), (frame, key, value) => {
        neverThrows(JSON.stringify({ ...frame, [key]: value }));
      }),
      RUNS,
    );
  });
});
