import { describe, it, expect } from 'vitest';
import { parseClientMessage, CLIENT_MESSAGE_TYPES } from '../../src/protocol/index.js';
import { CLIENT_TYPES, TINY_PNG_BASE64, errorOf, messageOf, parseValue } from './helpers.js';

type Frame = Record<string, unknown>;

/** Minimal frames and what they parse to, defaults filled in as PROTOCOL.md documents them. */
const MINIMAL: { type: (typeof CLIENT_TYPES)[number]; frame: Frame; parsed: Frame }[] = [
  {
    type: 'session_init_v2',
    frame: { type: 'session_init_v2' },
    parsed: {
      type: 'session_init_v2',
      curated_prompts: [],
      enhancement_enabled: false,
      auto_extension_enabled: false,
      loop_generation_enabled: false,
      single_clip_mode: false,
      stream_mode: 'av_fmp4',
    },
  },
  {
    type: 'segment_prompt_source',
    frame: { type: 'segment_prompt_source', prompt: 'a cat' },
    parsed: { type: 'segment_prompt_source', prompt: 'a cat', source: 'user' },
  },
  {
    type: 'seed_prompts_updated',
    frame: { type: 'seed_prompts_updated' },
    parsed: { type: 'seed_prompts_updated', seed_prompts: [] },
  },
  {
    type: 'enhancement_updated',
    frame: { type: 'enhancement_updated', enabled: true },
    parsed: { type: 'enhancement_updated', enabled: true },
  },
  {
    type: 'auto_extension_updated',
    frame: { type: 'auto_extension_updated', enabled: false },
    parsed: { type: 'auto_extension_updated', enabled: false },
  },
  {
    type: 'loop_generation_updated',
    frame: { type: 'loop_generation_updated', enabled: true },
    parsed: { type: 'loop_generation_updated', enabled: true },
  },
  {
    type: 'generation_paused_updated',
    frame: { type: 'generation_paused_updated', paused: true },
    parsed: { type: 'generation_paused_updated', paused: true },
  },
  {
    type: 'snapshot_state',
    frame: { type: 'snapshot_state' },
    parsed: { type: 'snapshot_state' },
  },
];

/** Frames with every documented field set (to a non-default value where there is one). */
const FULL: { type: (typeof CLIENT_TYPES)[number]; frame: Frame }[] = [
  {
    type: 'session_init_v2',
    frame: {
      type: 'session_init_v2',
      client_id: 'client-7',
      preset: 'ltx2-distilled',
      preset_label: 'LTX-2 fast',
      curated_prompts: ['a fox in snow', 'a city at night'],
      initial_image: { mime: 'image/png', name: 'dot.png', data: TINY_PNG_BASE64 },
      enhancement_enabled: true,
      auto_extension_enabled: true,
      loop_generation_enabled: true,
      single_clip_mode: true,
      stream_mode: 'legacy_jpeg',
      continuation_state: { kind: 'ltx2_latents', payload: { frames: [1, 2, 3], nested: { ok: true } } },
    },
  },
  {
    type: 'segment_prompt_source',
    frame: {
      type: 'segment_prompt_source',
      prompt: 'a fox runs',
      negative_prompt: 'blurry',
      source: 'auto_extension',
      seed: 1234,
      num_inference_steps: 8,
      guidance_scale: 3.5,
    },
  },
  { type: 'seed_prompts_updated', frame: { type: 'seed_prompts_updated', seed_prompts: ['one', 'two'] } },
  { type: 'enhancement_updated', frame: { type: 'enhancement_updated', enabled: true } },
  { type: 'auto_extension_updated', frame: { type: 'auto_extension_updated', enabled: true } },
  { type: 'loop_generation_updated', frame: { type: 'loop_generation_updated', enabled: false } },
  { type: 'generation_paused_updated', frame: { type: 'generation_paused_updated', paused: false } },
  { type: 'snapshot_state', frame: { type: 'snapshot_state' } },
];

/** Required fields: leaving one out must give `<field>: required`. */
const REQUIRED: { base: Frame; field: string }[] = [
  { base: { type: 'segment_prompt_source', prompt: 'p' }, field: 'prompt' },
  { base: { type: 'enhancement_updated', enabled: true }, field: 'enabled' },
  { base: { type: 'auto_extension_updated', enabled: true }, field: 'enabled' },
  { base: { type: 'loop_generation_updated', enabled: true }, field: 'enabled' },
  { base: { type: 'generation_paused_updated', paused: true }, field: 'paused' },
];

/** Nested required fields (inside an optional object). */
const NESTED_REQUIRED: { frame: Frame; field: string }[] = [
  { frame: { type: 'session_init_v2', initial_image: { data: TINY_PNG_BASE64 } }, field: 'initial_image.mime' },
  { frame: { type: 'session_init_v2', initial_image: { mime: 'image/png' } }, field: 'initial_image.data' },
  { frame: { type: 'session_init_v2', continuation_state: { payload: {} } }, field: 'continuation_state.kind' },
  { frame: { type: 'session_init_v2', continuation_state: { kind: 'k' } }, field: 'continuation_state.payload' },
];

/** A wrongly typed value for each typed field, and the type the message must name. */
const MISTYPED: { type: string; base: Frame; field: string; value: unknown; expected: string }[] = [
  { type: 'session_init_v2', base: {}, field: 'client_id', value: 7, expected: 'string' },
  { type: 'session_init_v2', base: {}, field: 'preset', value: true, expected: 'string' },
  { type: 'session_init_v2', base: {}, field: 'preset_label', value: ['x'], expected: 'string' },
  { type: 'session_init_v2', base: {}, field: 'curated_prompts', value: 'a prompt', expected: 'array' },
  { type: 'session_init_v2', base: {}, field: 'initial_image', value: 'data:image/png', expected: 'object' },
  { type: 'session_init_v2', base: {}, field: 'enhancement_enabled', value: 'yes', expected: 'boolean' },
  { type: 'session_init_v2', base: {}, field: 'auto_extension_enabled', value: 1, expected: 'boolean' },
  { type: 'session_init_v2', base: {}, field: 'loop_generation_enabled', value: 'true', expected: 'boolean' },
  { type: 'session_init_v2', base: {}, field: 'single_clip_mode', value: 0, expected: 'boolean' },
  { type: 'session_init_v2', base: {}, field: 'continuation_state', value: 'state', expected: 'object' },
  { type: 'segment_prompt_source', base: {}, field: 'prompt', value: 42, expected: 'string' },
  { type: 'segment_prompt_source', base: { prompt: 'p' }, field: 'negative_prompt', value: false, expected: 'string' },
  { type: 'segment_prompt_source', base: { prompt: 'p' }, field: 'seed', value: '42', expected: 'number' },
  { type: 'segment_prompt_source', base: { prompt: 'p' }, field: 'num_inference_steps', value: '8', expected: 'number' },
  { type: 'segment_prompt_source', base: { prompt: 'p' }, field: 'guidance_scale', value: '3.5', expected: 'number' },
  { type: 'seed_prompts_updated', base: {}, field: 'seed_prompts', value: 'one', expected: 'array' },
  { type: 'enhancement_updated', base: {}, field: 'enabled', value: 'yes', expected: 'boolean' },
  { type: 'auto_extension_updated', base: {}, field: 'enabled', value: 1, expected: 'boolean' },
  { type: 'loop_generation_updated', base: {}, field: 'enabled', value: 'false', expected: 'boolean' },
  { type: 'generation_paused_updated', base: {}, field: 'paused', value: 'no', expected: 'boolean' },
];

/** Enum fields and a value outside the enum. */
const BAD_ENUM: { frame: Frame; field: string }[] = [
  { frame: { type: 'session_init_v2', stream_mode: 'webm' }, field: 'stream_mode' },
  { frame: { type: 'segment_prompt_source', prompt: 'p', source: 'robot' }, field: 'source' },
  { frame: { type: 'session_init_v2', initial_image: { mime: 'image/gif', data: TINY_PNG_BASE64 } }, field: 'initial_image.mime' },
];

/** Optional (`?`) fields of PROTOCOL.md: `null` is accepted as "absent". */
const NULLABLE: { frame: Frame; field: string }[] = [
  { frame: { type: 'session_init_v2' }, field: 'client_id' },
  { frame: { type: 'session_init_v2' }, field: 'preset' },
  { frame: { type: 'session_init_v2' }, field: 'preset_label' },
  { frame: { type: 'session_init_v2' }, field: 'initial_image' },
  { frame: { type: 'session_init_v2' }, field: 'continuation_state' },
  { frame: { type: 'segment_prompt_source', prompt: 'p' }, field: 'negative_prompt' },
  { frame: { type: 'segment_prompt_source', prompt: 'p' }, field: 'seed' },
  { frame: { type: 'segment_prompt_source', prompt: 'p' }, field: 'num_inference_steps' },
  { frame: { type: 'segment_prompt_source', prompt: 'p' }, field: 'guidance_scale' },
];

describe('client message types', () => {
  it('CLIENT_MESSAGE_TYPES lists exactly the 8 client types of PROTOCOL.md', () => {
    expect([...CLIENT_MESSAGE_TYPES].sort()).toEqual([...CLIENT_TYPES].sort());
  });
});

describe('minimal client frames', () => {
  for (const { type, frame, parsed } of MINIMAL)
    it(`a minimal ${type} parses with the documented defaults`, () => {
      expect(messageOf(parseValue(frame))).toEqual(parsed);
    });
});

describe('full client frames', () => {
  for (const { type, frame } of FULL)
    it(`a ${type} with every field set parses to exactly those fields`, () => {
      expect(messageOf(parseValue(frame))).toEqual(frame);
    });
});

describe('required fields', () => {
  for (const { base, field } of REQUIRED)
    it(`${String(base.type)} without ${field} is rejected with "${field}: required"`, () => {
      const frame = { ...base };
      delete frame[field];
      const error = errorOf(parseValue(frame));
      expect(error.code).toBe('invalid_message');
      expect(error.message).toBe(`${field}: required`);
    });

  for (const { frame, field } of NESTED_REQUIRED)
    it(`session_init_v2 without ${field} is rejected with "${field}: required"`, () => {
      const error = errorOf(parseValue(frame));
      expect(error.code).toBe('invalid_message');
      expect(error.message).toBe(`${field}: required`);
    });
});

describe('mistyped fields', () => {
  for (const { type, base, field, value, expected } of MISTYPED)
    it(`${type} with ${field} of the wrong type is rejected with "${field}: expected ${expected}"`, () => {
      const error = errorOf(parseValue({ type, ...base, [field]: value }));
      expect(error.code).toBe('invalid_message');
      expect(error.message).toBe(`${field}: expected ${expected}`);
    });

  it('a curated prompt that is not a string is rejected naming its index', () => {
    const error = errorOf(parseValue({ type: 'session_init_v2', curated_prompts: ['ok', 3] }));
    expect(error.message).toBe('curated_prompts.1: expected string');
  });

  it('a seed prompt that is not a string is rejected naming its index', () => {
    const error = errorOf(parseValue({ type: 'seed_prompts_updated', seed_prompts: [null] }));
    expect(error.message).toMatch(/^seed_prompts\.0: /);
  });

  it('an initial_image name that is not a string is rejected with "initial_image.name: expected string"', () => {
    const error = errorOf(parseValue({ type: 'session_init_v2', initial_image: { mime: 'image/png', name: 5, data: TINY_PNG_BASE64 } }));
    expect(error.message).toBe('initial_image.name: expected string');
  });

  it('a continuation_state kind that is not a string is rejected with "continuation_state.kind: expected string"', () => {
    const error = errorOf(parseValue({ type: 'session_init_v2', continuation_state: { kind: 5, payload: {} } }));
    expect(error.message).toBe('continuation_state.kind: expected string');
  });

  it('a continuation_state payload that is not an object is rejected naming continuation_state.payload', () => {
    const error = errorOf(parseValue({ type: 'session_init_v2', continuation_state: { kind: 'k', payload: 'x' } }));
    expect(error.message).toMatch(/^continuation_state\.payload: expected (object|record)$/);
  });

  it('a non-integer seed is rejected naming seed', () => {
    const error = errorOf(parseValue({ type: 'segment_prompt_source', prompt: 'p', seed: 1.5 }));
    expect(error.message).toMatch(/^seed: /);
    expect(error.message).not.toBe('seed: required');
  });

  it('a null required field is rejected naming the field', () => {
    const error = errorOf(parseValue({ type: 'segment_prompt_source', prompt: null }));
    expect(error.message).toMatch(/^prompt: /);
  });
});

describe('enum fields', () => {
  for (const { frame, field } of BAD_ENUM)
    it(`a bad ${field} value is rejected naming ${field}`, () => {
      const error = errorOf(parseValue(frame));
      expect(error.code).toBe('invalid_message');
      expect(error.message.startsWith(`${field}: `)).toBe(true);
    });

  it.each(['av_fmp4', 'legacy_jpeg'])('stream_mode %s is accepted', (mode) => {
    expect(messageOf(parseValue({ type: 'session_init_v2', stream_mode: mode }))).toMatchObject({ stream_mode: mode });
  });

  it.each(['curated', 'enhanced', 'user', 'auto_extension'])('prompt source %s is accepted', (source) => {
    expect(messageOf(parseValue({ type: 'segment_prompt_source', prompt: 'p', source }))).toMatchObject({ source });
  });
});

describe('unknown extra fields', () => {
  for (const { type, frame, parsed } of MINIMAL.filter((m) => m.type !== 'session_init_v2'))
    it(`${type} ignores unknown extra fields`, () => {
      const message = messageOf(parseValue({ ...frame, x_extra: 1, another: { deep: true } }));
      expect(message).toEqual(parsed);
    });

  it('session_init_v2 keeps unknown extra fields', () => {
    const message = messageOf(parseValue({ type: 'session_init_v2', x_client_build: '1.2.3', x_caps: { webcodecs: true } }));
    expect(message).toMatchObject({ x_client_build: '1.2.3', x_caps: { webcodecs: true } });
  });
});

describe('null optional fields', () => {
  for (const { frame, field } of NULLABLE)
    it(`${String(frame.type)} accepts null for the optional field ${field}`, () => {
      expect(parseValue({ ...frame, [field]: null }).ok).toBe(true);
    });

  it('accepts null for the optional initial_image.name', () => {
    const frame = { type: 'session_init_v2', initial_image: { mime: 'image/png', name: null, data: TINY_PNG_BASE64 } };
    expect(parseValue(frame).ok).toBe(true);
  });
});

describe('malformed frames', () => {
  it('invalid JSON is rejected with invalid_message and a message saying so', () => {
    const error = errorOf(parseClientMessage('{"type": "snapshot_state"'));
    expect(error.code).toBe('invalid_message');
    expect(error.message).toMatch(/invalid JSON/i);
  });

  it('an empty frame is rejected as invalid JSON', () => {
    const error = errorOf(parseClientMessage(''));
    expect(error.code).toBe('invalid_message');
    expect(error.message).toMatch(/invalid JSON/i);
  });

  for (const { label, text, kind } of [
    { label: 'an array', text: '[{"type":"snapshot_state"}]', kind: 'array' },
    { label: 'a number', text: '42', kind: 'number' },
    { label: 'null', text: 'null', kind: 'null' },
    { label: 'a string', text: '"snapshot_state"', kind: 'string' },
    { label: 'a boolean', text: 'true', kind: 'boolean' },
  ])
    it(`JSON that is ${label} rather than an object is rejected saying an object was expected`, () => {
      const error = errorOf(parseClientMessage(text));
      expect(error.code).toBe('invalid_message');
      expect(error.message).toMatch(/object/);
      expect(error.message).toContain(kind);
    });

  it('an object without type is rejected with "type: required"', () => {
    const error = errorOf(parseValue({ enabled: true }));
    expect(error.code).toBe('invalid_message');
    expect(error.message).toBe('type: required');
  });

  it.each([5, true, null, ['snapshot_state'], { name: 'snapshot_state' }])('a non-string type %j is rejected with "type: expected string"', (type) => {
    const error = errorOf(parseValue({ type }));
    expect(error.code).toBe('invalid_message');
    expect(error.message).toBe('type: expected string');
  });

  it.each(['session_init', 'SNAPSHOT_STATE', '', 'queue_status', '__proto__', 'constructor', 'toString', 'hasOwnProperty'])(
    'an unknown type %j is rejected naming type',
    (type) => {
      const error = errorOf(parseValue({ type }));
      expect(error.code).toBe('invalid_message');
      expect(error.message).toMatch(/^type: unknown/);
      expect(error.message).toContain(JSON.stringify(type));
    },
  );

  it('a binary frame is rejected even when its bytes are a valid message', () => {
    const error = errorOf(parseClientMessage(Buffer.from('{"type":"snapshot_state"}'), { binary: true }));
    expect(error.code).toBe('invalid_message');
    expect(error.message).toMatch(/binary/i);
  });

  it.each([
    '{"type":"snapshot_state"}',
    '{"type":"segment_prompt_source","prompt":"un chat \u00e9l\u00e9gant \ud83d\udc08"}',
    '{"type":"enhancement_updated","enabled":"x"}',
    '{"type":',
    '[]',
  ])('a Buffer text frame parses exactly like the same string: %s', (text) => {
    expect(parseClientMessage(Buffer.from(text, 'utf8'))).toEqual(parseClientMessage(text));
  });
});

describe('initial_image', () => {
  const init = (image: unknown) => parseValue({ type: 'session_init_v2', initial_image: image });

  it('a small valid PNG in base64 is accepted as sent', () => {
    const image = { mime: 'image/png', name: 'dot.png', data: TINY_PNG_BASE64 };
    expect(messageOf(init(image))).toMatchObject({ initial_image: image });
  });

  it.each(['image/png', 'image/jpeg', 'image/jpg', 'image/webp'])('mime %s is accepted', (mime) => {
    expect(init({ mime, data: TINY_PNG_BASE64 }).ok).toBe(true);
  });

  it.each(['image/gif', 'text/plain', 'IMAGE/PNG', ''])('mime %j is rejected naming initial_image.mime', (mime) => {
    const error = errorOf(init({ mime, data: TINY_PNG_BASE64 }));
    expect(error.code).toBe('invalid_message');
    expect(error.message.startsWith('initial_image.mime: ')).toBe(true);
  });

  it.each(['not base64!', 'AAA', 'AA=A', 'A===', 'data:image/png;base64,AAAA', 'AAAA\nAAAA'])(
    'non-base64 data %j is rejected naming initial_image.data',
    (data) => {
      const error = errorOf(init({ mime: 'image/png', data }));
      expect(error.code).toBe('invalid_message');
      expect(error.message.startsWith('initial_image.data: ')).toBe(true);
    },
  );

  it('empty data is rejected naming initial_image.data', () => {
    const error = errorOf(init({ mime: 'image/png', data: '' }));
    expect(error.code).toBe('invalid_message');
    expect(error.message.startsWith('initial_image.data: ')).toBe(true);
  });

  // 32 MiB decoded is the limit. 44_739_244 base64 chars with no padding decode to
  // 33_554_433 bytes: one byte over.
  it('data decoding to one byte over 32 MiB is rejected naming initial_image.data (without throwing)', () => {
    const data = 'A'.repeat(44_739_244);
    let result: ReturnType<typeof init> | undefined;
    expect(() => {
      result = init({ mime: 'image/png', data });
    }).not.toThrow();
    const error = errorOf(result ?? init({ mime: 'image/png', data: '' }));
    expect(error.code).toBe('invalid_message');
    expect(error.message.startsWith('initial_image.data: ')).toBe(true);
  });

  // 44_739_243 chars + one '=' decode to exactly 33_554_432 bytes.
  it('data decoding to exactly 32 MiB is accepted (without throwing)', () => {
    const data = `${'A'.repeat(44_739_243)}=`;
    let result: ReturnType<typeof init> | undefined;
    expect(() => {
      result = init({ mime: 'image/png', data });
    }).not.toThrow();
    expect(result?.ok).toBe(true);
  });

  it('a valid 12 MiB image is accepted (without throwing)', () => {
    const data = Buffer.alloc(12 * 1024 * 1024, 7).toString('base64');
    let result: ReturnType<typeof init> | undefined;
    expect(() => {
      result = init({ mime: 'image/webp', data });
    }).not.toThrow();
    expect(result?.ok).toBe(true);
  });
});
