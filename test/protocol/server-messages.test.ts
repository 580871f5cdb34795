import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import {
  buildServerMessage,
  encodeServerMessage,
  errorMessage,
  snapshotMessage,
  ServerMessageSchema,
  SERVER_MESSAGE_TYPES,
  DEFAULT_MEDIA_MIME,
  ErrorCode,
  type ServerMessage,
} from '../../src/protocol/index.js';
import { SERVER_TYPES, emptyPaths } from './helpers.js';

type Fields = Record<string, unknown>;
type ServerType = (typeof SERVER_TYPES)[number];

/** Untyped view of the builder, so one table can drive all 12 types. */
const build = buildServerMessage as unknown as (type: string, fields: Fields) => Fields;
const encode = (message: Fields) => encodeServerMessage(message as unknown as ServerMessage);

const MEDIA_MIME = 'video/mp4; codecs="avc1.64001f, mp4a.40.2"';

/**
 * Per type, from PROTOCOL.md: the fields a builder must be given, what it adds by default,
 * and the optional fields (with a sample value).
 */
const SPEC: Record<ServerType, { required: Fields; defaults: Fields; optional: Fields }> = {
  queue_status: { required: { position: 0, queue_depth: 3 }, defaults: {}, optional: {} },
  gpu_assigned: { required: { gpu_id: 1, session_timeout: 300 }, defaults: {}, optional: { model_id: 'ltx-2' } },
  ltx2_stream_start: {
    required: { width: 768, height: 512, fps: 24, num_frames: 121 },
    defaults: {},
    optional: { preset: 'ltx2-distilled' },
  },
  ltx2_segment_start: {
    required: { segment_idx: 0, prompt: 'a fox', total_steps: 8 },
    defaults: {},
    optional: { source: 'curated' },
  },
  step_complete: {
    required: { segment_idx: 0, step: 3, total_steps: 8, stage: 'denoise' },
    defaults: {},
    optional: { timings: { step_ms: 41.5, elapsed_ms: 130 } },
  },
  media_init: {
    required: { segment_idx: 0, stream_id: 'seg-0' },
    defaults: { mime: MEDIA_MIME, mode: 'av_fmp4' },
    optional: {},
  },
  media_segment_complete: {
    required: { segment_idx: 2, stream_id: 'seg-2', chunks: 5 },
    defaults: {},
    optional: { bytes: 123_456, duration_ms: 5_000, pts_base_ms: 10_000 },
  },
  ltx2_segment_complete: {
    required: { segment_idx: 1, generation_time_ms: 2_345 },
    defaults: {},
    optional: { e2e_latency_ms: 2_500 },
  },
  ltx2_stream_complete: { required: { reason: 'segment_cap' }, defaults: {}, optional: {} },
  session_timeout: { required: { timeout_seconds: 300 }, defaults: {}, optional: {} },
  continuation_state_snapshot: {
    required: { state: { kind: 'ltx2', payload: { t: 1 } } },
    defaults: {},
    optional: { kind: 'ltx2', payload: { t: 1 } },
  },
  error: {
    required: { code: 'invalid_message', message: 'prompt: required' },
    defaults: { retryable: false },
    optional: {},
  },
  session_migrated: {
    required: { from_replica: 'r1', to_replica: 'r2', gpu_id: 0, segment_idx: 3, reason: 'replica_lost' },
    defaults: {},
    optional: { resume_token: 'tok' },
  },
};

const WITH_OPTIONAL = SERVER_TYPES.filter((t) => Object.keys(SPEC[t].optional).length > 0);

describe('server message types', () => {
  it('SERVER_MESSAGE_TYPES lists exactly the 12 server types of PROTOCOL.md and session_migrated', () => {
    expect([...SERVER_MESSAGE_TYPES].sort()).toEqual([...SERVER_TYPES].sort());
  });
});

describe('buildServerMessage', () => {
  for (const type of SERVER_TYPES) {
    it(`builds ${type} from its required fields, with the type set and the defaults applied`, () => {
      const { required, defaults } = SPEC[type];
      expect(build(type, required)).toEqual({ type, ...required, ...defaults });
    });
  }

  for (const type of SERVER_TYPES) {
    it(`builds ${type} with every field set and keeps them all`, () => {
      const { required, optional } = SPEC[type];
      expect(build(type, { ...required, ...optional })).toEqual({ type, ...SPEC[type].defaults, ...required, ...optional });
    });
  }

  for (const type of SERVER_TYPES) {
    it(`a built ${type} is a valid server message and encodes to the same JSON object`, () => {
      const message = build(type, { ...SPEC[type].required, ...SPEC[type].optional });
      expect(ServerMessageSchema.safeParse(message).success).toBe(true);
      expect(JSON.parse(encode(message))).toEqual(message);
    });
  }

  for (const type of WITH_OPTIONAL) {
    it(`${type} omits optional fields passed as undefined from the encoded JSON`, () => {
      const blanks = Object.fromEntries(Object.keys(SPEC[type].optional).map((k) => [k, undefined]));
      const wire = JSON.parse(encode(build(type, { ...SPEC[type].required, ...blanks }))) as Fields;
      for (const key of Object.keys(blanks)) expect(wire).not.toHaveProperty(key);
      expect(emptyPaths(wire)).toEqual([]);
    });
  }

  for (const type of WITH_OPTIONAL) {
    it(`${type} omits optional fields passed as null from the encoded JSON`, () => {
      const blanks = Object.fromEntries(Object.keys(SPEC[type].optional).map((k) => [k, null]));
      const encoded = encode(build(type, { ...SPEC[type].required, ...blanks }));
      const wire = JSON.parse(encoded) as Fields;
      for (const key of Object.keys(blanks)) expect(wire).not.toHaveProperty(key);
      expect(encoded).not.toContain('null');
    });
  }

  it('media_init defaults mime to the avc1/mp4a fMP4 type and mode to av_fmp4', () => {
    const message = buildServerMessage('media_init', { segment_idx: 0, stream_id: 's' });
    expect(message.mime).toBe('video/mp4; codecs="avc1.64001f, mp4a.40.2"');
    expect(DEFAULT_MEDIA_MIME).toBe(message.mime);
    expect(message.mode).toBe('av_fmp4');
  });

  it('media_init applies its defaults when mime and mode are passed as null', () => {
    const message = build('media_init', { segment_idx: 0, stream_id: 's', mime: null, mode: null });
    expect(message).toMatchObject({ mime: MEDIA_MIME, mode: 'av_fmp4' });
  });

  it('media_init keeps an explicit mime', () => {
    const message = buildServerMessage('media_init', { segment_idx: 1, stream_id: 's', mime: 'video/mp4; codecs="avc1.640028"' });
    expect(message.mime).toBe('video/mp4; codecs="avc1.640028"');
  });

  it('error defaults retryable to false', () => {
    expect(buildServerMessage('error', { code: 'internal_error', message: 'x' }).retryable).toBe(false);
  });

  it('error keeps retryable true when asked', () => {
    expect(buildServerMessage('error', { code: 'worker_failed', message: 'x', retryable: true }).retryable).toBe(true);
  });

  for (const reason of ['segment_cap', 'stop_requested', 'error'] as const) {
    it(`ltx2_stream_complete builds with reason ${reason}`, () => {
      expect(buildServerMessage('ltx2_stream_complete', { reason })).toEqual({ type: 'ltx2_stream_complete', reason });
    });
  }

  it('step_complete carries stage "denoise"', () => {
    const message = buildServerMessage('step_complete', { segment_idx: 0, step: 1, total_steps: 2, stage: 'denoise' });
    expect(message.stage).toBe('denoise');
  });

  it('throws on fields that break the message schema instead of sending them', () => {
    expect(() => build('queue_status', { position: -1, queue_depth: 0 })).toThrow();
    expect(() => build('error', { code: 'not_a_code', message: 'x' })).toThrow();
    expect(() => build('ltx2_stream_complete', { reason: 'bored' })).toThrow();
  });
});

describe('errorMessage', () => {
  it('builds an error frame with retryable false by default', () => {
    expect(errorMessage(ErrorCode.INVALID_MESSAGE, 'prompt: required')).toEqual({
      type: 'error',
      code: 'invalid_message',
      message: 'prompt: required',
      retryable: false,
    });
  });

  it('builds an error frame with retryable true when asked', () => {
    expect(errorMessage(ErrorCode.GPU_UNAVAILABLE, 'no worker', true)).toMatchObject({ code: 'gpu_unavailable', retryable: true });
  });

  for (const code of Object.values(ErrorCode)) {
    it(`builds an error frame for code ${code}`, () => {
      expect(JSON.parse(encodeServerMessage(errorMessage(code, 'm')))).toEqual({ type: 'error', code, message: 'm', retryable: false });
    });
  }
});

describe('snapshotMessage', () => {
  const state = { kind: 'ltx2_latents', payload: { frame: 120, tokens: [1, 2, 3], nested: { ok: true } } };

  it('carries the state nested under state', () => {
    expect(snapshotMessage(state).state).toEqual(state);
  });

  it('carries kind and payload at the top level too', () => {
    const message = snapshotMessage(state);
    expect(message.kind).toBe('ltx2_latents');
    expect(message.payload).toEqual(state.payload);
  });

  it('encodes as a continuation_state_snapshot with state, kind and payload', () => {
    expect(JSON.parse(encodeServerMessage(snapshotMessage(state)))).toEqual({
      type: 'continuation_state_snapshot',
      state,
      kind: state.kind,
      payload: state.payload,
    });
  });
});

describe('encodeServerMessage', () => {
  it('drops null and undefined fields of a message that did not go through the builder', () => {
    const raw = { type: 'gpu_assigned', gpu_id: 0, session_timeout: 300, model_id: null, extra: undefined };
    expect(JSON.parse(encode(raw))).toEqual({ type: 'gpu_assigned', gpu_id: 0, session_timeout: 300 });
  });

  it('drops null members of nested objects', () => {
    const raw = { type: 'step_complete', segment_idx: 0, step: 1, total_steps: 2, stage: 'denoise', timings: { step_ms: 1, elapsed_ms: null } };
    const encoded = encode(raw);
    expect(encoded).not.toContain('null');
    expect(emptyPaths(JSON.parse(encoded))).toEqual([]);
  });
});

// ---- property: no null or undefined ever reaches the wire ----

/** A sample value, `undefined` or `null`, for an optional field. */
const maybe = <T>(arb: fc.Arbitrary<T>) => fc.oneof(arb, fc.constant(undefined), fc.constant(null));
const nat = fc.nat({ max: 1_000_000 });
const str = fc.string({ maxLength: 20 });
const num = fc.double({ min: 0, max: 1e9, noNaN: true });
const scalar = fc.oneof(str, fc.integer(), fc.boolean(), num);
/** An opaque payload whose object members may be null or undefined (array items are plain scalars). */
const payload = fc.dictionary(
  fc.string({ minLength: 1, maxLength: 8 }),
  fc.oneof(
    maybe(scalar),
    fc.array(scalar, { maxLength: 4 }),
    fc.dictionary(fc.string({ minLength: 1, maxLength: 8 }), maybe(scalar), { maxKeys: 4 }),
  ),
  { maxKeys: 5 },
);

const FIELD_ARBS: Record<ServerType, fc.Arbitrary<Fields>> = {
  queue_status: fc.record({ position: nat, queue_depth: nat }),
  gpu_assigned: fc.record({ gpu_id: fc.integer({ min: 0, max: 64 }), session_timeout: nat, model_id: maybe(str) }),
  ltx2_stream_start: fc.record({
    preset: maybe(str),
    width: fc.integer({ min: 1, max: 4096 }),
    height: fc.integer({ min: 1, max: 4096 }),
    fps: fc.integer({ min: 1, max: 120 }),
    num_frames: fc.integer({ min: 1, max: 1000 }),
  }),
  ltx2_segment_start: fc.record({
    segment_idx: nat,
    prompt: str,
    total_steps: nat,
    source: maybe(fc.constantFrom('curated', 'enhanced', 'user', 'auto_extension')),
  }),
  step_complete: fc.record({
    segment_idx: nat,
    step: nat,
    total_steps: nat,
    stage: fc.constant('denoise'),
    timings: maybe(fc.record({ step_ms: num, elapsed_ms: num })),
  }),
  media_init: fc.record({
    segment_idx: nat,
    stream_id: str,
    mime: maybe(str),
    mode: maybe(fc.constant('av_fmp4')),
  }),
  media_segment_complete: fc.record({
    segment_idx: nat,
    stream_id: str,
    chunks: nat,
    bytes: maybe(nat),
    duration_ms: maybe(num),
    pts_base_ms: maybe(num),
  }),
  ltx2_segment_complete: fc.record({ segment_idx: nat, generation_time_ms: num, e2e_latency_ms: maybe(num) }),
  ltx2_stream_complete: fc.record({ reason: fc.constantFrom('segment_cap', 'stop_requested', 'error') }),
  session_timeout: fc.record({ timeout_seconds: nat }),
  continuation_state_snapshot: fc
    .record({ kind: fc.string({ minLength: 1, maxLength: 10 }), payload })
    .chain((state) =>
      fc.record({
        state: fc.constant(state),
        kind: maybe(fc.constant(state.kind)),
        payload: maybe(fc.constant(state.payload)),
      }),
    ),
  error: fc.record({
    code: fc.constantFrom(...Object.values(ErrorCode)),
    message: str,
    retryable: maybe(fc.boolean()),
  }),
  session_migrated: fc.record({
    from_replica: str,
    to_replica: str,
    gpu_id: fc.integer({ min: 0, max: 64 }),
    segment_idx: nat,
    reason: fc.constantFrom('replica_lost', 'replica_draining'),
    resume_token: maybe(str),
  }),
};

describe('no null or undefined on the wire (property)', () => {
  for (const type of SERVER_TYPES) {
    it(`an encoded ${type} never contains null or undefined, whatever optional fields were left blank`, () => {
      fc.assert(
        fc.property(FIELD_ARBS[type], (fields) => {
          const encoded = encode(build(type, fields));
          const wire = JSON.parse(encoded) as Fields;
          expect(emptyPaths(wire)).toEqual([]);
          expect(wire.type).toBe(type);
          for (const [key, value] of Object.entries(fields)) {
            if (value === null || value === undefined) {
              if (key in SPEC[type].defaults) expect(wire[key]).toEqual(SPEC[type].defaults[key]);
              else expect(wire).not.toHaveProperty(key);
            }
          }
        }),
        { numRuns: 100 },
      );
    });
  }

  it('any snapshot built by snapshotMessage encodes without null or undefined', () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1, maxLength: 10 }), payload, (kind, p) => {
        const wire = JSON.parse(encodeServerMessage(snapshotMessage({ kind, payload: p }))) as Fields;
        expect(emptyPaths(wire)).toEqual([]);
        expect(wire.kind).toBe(kind);
        // The opaque payload comes back exactly as stored, nulls included.
        expect(wire.payload).toEqual(JSON.parse(JSON.stringify(p)));
        expect((wire.state as Fields).payload).toEqual(JSON.parse(JSON.stringify(p)));
      }),
      { numRuns: 200 },
    );
  });
});
