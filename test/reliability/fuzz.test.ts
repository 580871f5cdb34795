/**
 * Property-based fuzzing of the session driver over a real socket ("bad input").
 *
 * One server (pool.workers 2, realtime pace, short segments) serves the whole file. A
 * bystander session holds worker 0 and streams segment after segment the whole time; the
 * fuzzed sessions use worker 1 (or queue for it). Every property run opens fresh
 * connections, drives them into one session state, fires a batch of random, mutated,
 * valid, oversize and binary frames back to back, and checks:
 *
 * - the server never crashes (the server runs in this test process, so an uncaught
 *   exception or unhandled rejection fails the file) and `/healthz` answers after every run;
 * - every frame gets its documented answer (PROTOCOL.md "Rules", docs/operations.md):
 *   first frame bad → `error` `invalid_message` (retryable false) + close 1003, or close 1009
 *   past MAX_INIT_FRAME_BYTES; after init, a bad frame → `error` `invalid_message`
 *   (retryable true) naming the problem, in order, and the connection stays; a frame over
 *   `limits.max_control_frame_bytes` → `error` `invalid_message` + close 1009; a valid frame
 *   gets its effect (checked on the session's flags) and never an error, except
 *   `snapshot_state` with nothing stored → `internal_error`;
 * - the session is unregistered, its worker freed and its temp files removed after the
 *   client leaves;
 * - the bystander keeps streaming without an error, and every one of its segments arrives
 *   whole (`media_segment_complete.chunks` = fragments received, `bytes` = bytes received).
 *
 * The oracle for "is this frame valid" is the protocol parser itself (parseClientMessage),
 * cross-checked against how the frame was generated: frames built valid must parse, frames
 * built broken must not. What is under test here is the driver and the socket around it.
 */
import fc from 'fast-check';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SYNTHETIC_CONTINUATION_KIND, decodeSyntheticContinuation } from '../../src/generation/index.js';
import { encodeSyntheticContinuation } from '../../src/generation/synthetic-continuation.js';
import { exceedsJsonTokens, MAX_PAYLOAD_DEPTH, PROMPT_SOURCES, parseClientMessage, type ClientMessage } from '../../src/protocol/index.js';
import { MAX_INIT_FRAME_BYTES, mergeConfigInput, openingFrameLimits, parseConfig, parseOpeningFrame, sessionPolicyFrom } from '../../src/server/index.js';
import { startServer, TEST_CONFIG, TestClient, type TestServer } from '../server/harness.js';
import {
  RawJson,
  TINY_PNG_BASE64,
  checkSegmentsComplete,
  connectQuiet,
  deepArrayText,
  deepObjectText,
  expectHealthy,
  jsonEqual,
  sendFrame,
  toJson,
  waitUntil,
  withTimeout,
} from './helpers.js';

/** limits.max_control_frame_bytes: the default (1 MiB), stated so the frame sizes below can aim at it. */
const LIMIT = 1024 * 1024;
/** Property runs per session state; the whole file stays well under a minute at the default. */
const RUNS = Number(process.env.LIVEGEN_FUZZ_RUNS ?? 15);
/** Longest wait for any one answer; a hang fails the run instead of the file timing out. */
const ANSWER_MS = 10_000;

/** The session policy the fuzzed server runs with, for the limits the oracle must apply too. */
const POLICY_OF = (patch: Record<string, unknown>) => sessionPolicyFrom(parseConfig(mergeConfigInput(TEST_CONFIG, patch)));

const FUZZ_CONFIG = {
  pool: { workers: 2 },
  // Tiny frames, half-second segments at a realtime pace, so a segment is running while frames arrive.
  default_request: { sampling: { width: 64, height: 32, fps: 24, num_frames: 12, num_inference_steps: 2 } },
  generator: { synthetic: { pace: 'realtime', step_ms: 10 } },
  streaming: {
    max_sessions: 64,
    // The bystander streams for the whole file; fuzzed requests may pile up while paused or queued.
    generation_segment_cap: 1_000_000,
    max_pending_requests: 10_000,
    session_timeout_seconds: 120,
  },
  limits: { max_control_frame_bytes: LIMIT },
};
const POLICY = POLICY_OF(FUZZ_CONFIG);

// ------------------------------------------------------------------ frames

type FrameKind = 'valid' | 'invalid' | 'mutated' | 'oversize';

/** One WebSocket frame as sent: exact bytes, text or binary, and how it was built. */
interface Frame {
  data: Buffer;
  binary: boolean;
  kind: FrameKind;
}

type Obj = Record<string, unknown>;

/** A frame that prints short in a counterexample: kind, size and the first bytes. */
function frame(data: Buffer, binary: boolean, kind: FrameKind): Frame {
  return {
    data,
    binary,
    kind,
    [fc.toStringMethod]: () => {
      const head = binary ? data.subarray(0, 48).toString('hex') : JSON.stringify(data.subarray(0, 160).toString('utf8'));
      return `${kind} ${binary ? 'binary' : 'text'} frame of ${data.length} bytes: ${head}${data.length > (binary ? 48 : 160) ? '…' : ''}`;
    },
  } as Frame;
}
const text = (value: unknown, kind: FrameKind): Frame => frame(Buffer.from(toJson(value)), false, kind);
const raw = (value: string, kind: FrameKind): Frame => frame(Buffer.from(value), false, kind);

/** Bytes one repetition of `unit` takes inside a JSON string. */
const jsonUnitBytes = (unit: string): number => Buffer.byteLength(JSON.stringify(unit)) - 2;

/** `obj` with a `_pad` string field making its JSON exactly `bytes` long (unknown fields are ignored, or kept on init). */
function padTo(obj: Obj, bytes: number): Obj {
  const base = Buffer.byteLength(toJson({ ...obj, _pad: '' }));
  return { ...obj, _pad: 'p'.repeat(Math.max(0, bytes - base)) };
}

const LONE_SURROGATES = ['\ud800', '\udfff', 'a\udc00b', '\udbff\udbff', '\ud83d', 'x\ud800\udc00\udc00'];
const weirdText = fc.constantFrom('', ' ', '\u0000', '\u202e\u0301', '😀👍🏽', '\uffff\ufffe', 'null', '{"type":"snapshot_state"}', '\\', '"', ...LONE_SURROGATES);
/** Up to half the frame limit, so two of them in one frame mostly still fit. */
const hugeText = fc
  .tuple(fc.integer({ min: 20_000, max: LIMIT / 2 - 4096 }), fc.constantFrom('x', 'é', '😀', '\ud800', 'ﾟ'))
  .map(([bytes, unit]) => unit.repeat(Math.floor(bytes / jsonUnitBytes(unit))));
const anyText = fc.oneof(
  { arbitrary: fc.string({ unit: 'binary', maxLength: 24 }), weight: 12 },
  { arbitrary: weirdText, weight: 6 },
  { arbitrary: hugeText, weight: 1 },
);
const optionalText = fc.option(anyText, { nil: null });

const edgeNumber = fc.constantFrom(1e308, -1e308, -1, 0, -0, 2 ** 53 + 1, 2 ** 53, -(2 ** 53) - 1, 1.5, 0.1, 5e-324, 1e21, 1000, 1001, 2 ** 32);
const anyNumber = fc.oneof(edgeNumber, fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }));
const deepRaw = fc
  .tuple(fc.integer({ min: 1000, max: 12_000 }), fc.boolean())
  .map(([depth, arrays]) => new RawJson(arrays ? deepArrayText(depth) : deepObjectText(depth)));
/** Any JSON value, including out-of-range numbers, weird and huge strings and 12k-deep nesting. */
const anyValue: fc.Arbitrary<unknown> = fc.oneof(
  { arbitrary: fc.jsonValue({ maxDepth: 2 }), weight: 6 },
  { arbitrary: anyNumber, weight: 3 },
  { arbitrary: anyText, weight: 3 },
  { arbitrary: fc.constantFrom(null, true, false, [], {}), weight: 2 },
  { arbitrary: fc.array(anyText, { maxLength: 3 }), weight: 2 },
  { arbitrary: deepRaw, weight: 1 },
);

const ALL_FIELDS = new Set([
  'type', 'prompt', 'negative_prompt', 'source', 'seed', 'num_inference_steps', 'guidance_scale', 'seed_prompts', 'enabled', 'paused',
  'client_id', 'preset', 'preset_label', 'curated_prompts', 'initial_image', 'enhancement_enabled', 'auto_extension_enabled',
  'loop_generation_enabled', 'single_clip_mode', 'stream_mode', 'continuation_state', '_pad', '__proto__',
]);
/** Unknown extra fields: ignored by the control schemas, kept (as metadata) by session_init_v2. */
const extraFields = fc.dictionary(
  fc.string({ minLength: 1, maxLength: 10 }).filter((k) => !ALL_FIELDS.has(k)),
  anyValue,
  { maxKeys: 2 },
);

const validSeed = fc.oneof(fc.maxSafeInteger(), fc.constantFrom(-1, 0, 2 ** 53 - 1, -(2 ** 53 - 1), 2 ** 32));
const validSteps = fc.oneof({ arbitrary: fc.integer({ min: 1, max: 4 }), weight: 8 }, { arbitrary: fc.constantFrom(1, 1000), weight: 1 });
const validGuidance = fc.oneof(fc.double({ noNaN: true, noDefaultInfinity: true }), fc.constantFrom(1e308, -1e308, 0, -0, 5e-324));

const segmentRequest: fc.Arbitrary<Obj> = fc
  .record(
    {
      prompt: anyText,
      negative_prompt: optionalText,
      source: fc.constantFrom(...PROMPT_SOURCES),
      seed: fc.option(validSeed, { nil: null }),
      num_inference_steps: fc.option(validSteps, { nil: null }),
      guidance_scale: fc.option(validGuidance, { nil: null }),
    },
    { requiredKeys: ['prompt'] },
  )
  .map((f) => ({ type: 'segment_prompt_source', ...f }));

/** Every valid client frame type, as an object (session_init_v2 after init is answered as invalid). */
const validControl: fc.Arbitrary<Obj> = fc
  .tuple(
    fc.oneof(
      { arbitrary: segmentRequest, weight: 3 },
      { arbitrary: fc.record({ seed_prompts: fc.array(anyText, { maxLength: 4 }) }, { requiredKeys: [] }).map((f) => ({ type: 'seed_prompts_updated', ...f })), weight: 2 },
      { arbitrary: fc.boolean().map((enabled) => ({ type: 'enhancement_updated', enabled })), weight: 2 },
      { arbitrary: fc.boolean().map((enabled) => ({ type: 'auto_extension_updated', enabled })), weight: 2 },
      { arbitrary: fc.boolean().map((enabled) => ({ type: 'loop_generation_updated', enabled })), weight: 2 },
      { arbitrary: fc.boolean().map((paused) => ({ type: 'generation_paused_updated', paused })), weight: 2 },
      { arbitrary: fc.constant({ type: 'snapshot_state' }), weight: 3 },
      { arbitrary: fc.constant({ type: 'session_init_v2' }), weight: 1 },
    ),
    fc.option(extraFields, { freq: 4 }),
  )
  .map(([frame, extra]) => ({ ...(extra ?? {}), ...frame }));

const typeValue = fc.oneof(
  fc.constantFrom('SESSION_INIT_V2', 'snapshot_state ', 'hello', '', 'constructor', 'toString', 'hasOwnProperty', '__proto__', 'x'.repeat(500)),
  fc.constantFrom('session_init_v2', 'segment_prompt_source', 'seed_prompts_updated', 'enhancement_updated', 'snapshot_state'),
  anyValue,
);

type Mutation = { op: 'drop' | 'set' | 'add' | 'retype'; index: number; key: string; value: unknown };
const mutation: fc.Arbitrary<Mutation> = fc.record({
  op: fc.constantFrom('drop', 'set', 'set', 'add', 'retype'),
  index: fc.nat(),
  key: fc.oneof(fc.constantFrom(...ALL_FIELDS), fc.string({ maxLength: 8 })),
  value: fc.oneof(anyValue, typeValue),
});

function mutate(obj: Obj, mutations: Mutation[]): Obj {
  const out: Obj = { ...obj };
  for (const m of mutations) {
    const keys = Object.keys(out);
    const key = keys.length > 0 ? (keys[m.index % keys.length] as string) : m.key;
    if (m.op === 'drop') delete out[key];
    else if (m.op === 'set') out[key] = m.value;
    else if (m.op === 'retype') out.type = m.value;
    else if (m.key !== '__proto__') out[m.key] = m.value;
  }
  return out;
}

const mutatedControl = fc.tuple(validControl, fc.array(mutation, { minLength: 1, maxLength: 3 })).map(([o, ms]) => text(mutate(o, ms), 'mutated'));

/** Frames that are broken however they are read. */
const invalidFrame: fc.Arbitrary<Frame> = fc.oneof(
  // Invalid JSON: a valid frame cut short, JavaScript-isms, trailing garbage.
  fc.tuple(validControl, fc.nat()).map(([o, n]) => {
    const t = toJson(o);
    return raw(t.slice(0, n % t.length), 'invalid');
  }),
  fc
    .constantFrom(
      'NaN', 'Infinity', '-Infinity', 'undefined', '', ' ', '\u0000', "{'type':'snapshot_state'}", '{"type":"snapshot_state",}',
      '{"type":"snapshot_state"} x', '{"type":"snapshot_state"', '{"type":NaN}', '{"type":"seed_prompts_updated","seed_prompts":[1,]}',
      '{"type":"snapshot_state"}{"type":"snapshot_state"}', '\ufeff{"type":"snapshot_state"}', '{"type":"\\ud800"}', '{"type":"\\u0000"}',
    )
    .map((s) => raw(s, 'invalid')),
  // Valid JSON that is not an object with a known type.
  fc.oneof(fc.jsonValue({ maxDepth: 2 }).filter((v) => v === null || typeof v !== 'object' || Array.isArray(v)), anyNumber, anyText).map((v) => text(v, 'invalid')),
  fc.dictionary(fc.string({ maxLength: 6 }).filter((k) => k !== 'type'), anyValue, { maxKeys: 3 }).map((o) => text(o, 'invalid')),
  // 12k-deep nesting: as the whole frame, and as a field that must be a list of strings.
  deepRaw.map((d) => raw(d.text, 'invalid')),
  deepRaw.map((d) => text({ type: 'seed_prompts_updated', seed_prompts: new RawJson(`[${d.text}]`) }, 'invalid')),
  // Binary frames: random bytes, or a perfectly valid message sent as binary.
  fc.uint8Array({ maxLength: 64 }).map((b) => frame(Buffer.from(b), true, 'invalid')),
  validControl.map((o) => frame(Buffer.from(toJson(o)), true, 'invalid')),
);

/** A valid frame of exactly the limit, or a few bytes under it. */
const nearLimitFrame = fc.tuple(validControl, fc.integer({ min: 0, max: 16 })).map(([o, under]) => text(padTo(o, LIMIT - under), 'valid'));

/** A frame 1..64 bytes over the limit: valid underneath, garbage, or binary. */
const oversizeFrame: fc.Arbitrary<Frame> = fc.tuple(fc.integer({ min: 1, max: 64 }), fc.constantFrom('valid', 'garbage', 'binary')).chain(([over, what]) =>
  what === 'valid'
    ? validControl.map((o) => text(padTo(o, LIMIT + over), 'oversize'))
    : fc.constant(frame(Buffer.alloc(LIMIT + over, what === 'binary' ? 0xff : 0x7b), what === 'binary', 'oversize')),
);

const controlFrame: fc.Arbitrary<Frame> = fc.oneof(
  { arbitrary: validControl.map((o) => text(o, 'valid')), weight: 40 },
  { arbitrary: mutatedControl, weight: 35 },
  { arbitrary: invalidFrame, weight: 30 },
  { arbitrary: deepRaw.map((d) => text({ type: 'snapshot_state', nested: d }, 'valid')), weight: 2 },
  { arbitrary: nearLimitFrame, weight: 1 },
);

/** A batch of frames for one connection, sometimes ending with one just over the limit. */
const batch = fc.record({
  mode: fc.constantFrom('av_fmp4', 'legacy_jpeg'),
  frames: fc.array(controlFrame, { minLength: 6, maxLength: 24 }),
  // About one batch in eight ends just over the limit (fc.option's freq is the odds of *no* value).
  tail: fc.oneof({ arbitrary: fc.constant(null), weight: 7 }, { arbitrary: oversizeFrame, weight: 1 }),
});

// -------------------------------------------------------------- init frames

const validSyntheticState = encodeSyntheticContinuation({
  nextFrameIndex: 24,
  fps: 24,
  sampleRate: 48_000,
  audioPhase: 0.25,
  audioOriginFrame: 0,
  audioOriginSample: 0,
  motionSeed: 7,
  prompt: 'earlier',
});

const payloadKey = fc.string({ maxLength: 8 }).filter((k) => k !== '__proto__');
const continuationState = fc.oneof(
  fc.constant<Obj>({ ...validSyntheticState }),
  // The right kind with a payload the generator cannot read (refused at init).
  fc.dictionary(payloadKey, fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 }).map((payload) => ({ kind: SYNTHETIC_CONTINUATION_KIND, payload })),
  // The right kind with a payload nested as deep as is accepted.
  fc.integer({ min: 2, max: MAX_PAYLOAD_DEPTH - 1 }).map((depth) => ({ kind: SYNTHETIC_CONTINUATION_KIND, payload: { nested: new RawJson(deepArrayText(depth)) } })),
  // Another generator's state.
  fc.record({ kind: fc.string({ minLength: 1, maxLength: 12 }), payload: fc.dictionary(payloadKey, fc.jsonValue({ maxDepth: 2 }), { maxKeys: 3 }) }),
);

const initialImage = fc.record(
  {
    mime: fc.constantFrom('image/png', 'image/jpeg', 'image/jpg', 'image/webp'),
    name: optionalText,
    data: fc.oneof(fc.constant(TINY_PNG_BASE64), fc.uint8Array({ minLength: 1, maxLength: 96 }).map((b) => Buffer.from(b).toString('base64'))),
  },
  { requiredKeys: ['mime', 'data'] },
);

const validInit: fc.Arbitrary<Obj> = fc
  .tuple(
    fc.record(
      {
        client_id: optionalText,
        preset: optionalText,
        preset_label: optionalText,
        curated_prompts: fc.array(anyText, { maxLength: 3 }),
        initial_image: fc.option(initialImage, { nil: null }),
        enhancement_enabled: fc.boolean(),
        auto_extension_enabled: fc.boolean(),
        loop_generation_enabled: fc.boolean(),
        single_clip_mode: fc.boolean(),
        stream_mode: fc.constantFrom('av_fmp4', 'legacy_jpeg'),
        continuation_state: fc.option(continuationState, { nil: null, freq: 2 }),
      },
      { requiredKeys: [] },
    ),
    fc.option(extraFields, { freq: 3 }),
  )
  .map(([fields, extra]) => ({ ...(extra ?? {}), ...fields, type: 'session_init_v2' }));

const firstFrame: fc.Arbitrary<Frame> = fc.oneof(
  { arbitrary: validInit.map((o) => text(o, 'valid')), weight: 40 },
  { arbitrary: fc.tuple(validInit, fc.array(mutation, { minLength: 1, maxLength: 3 })).map(([o, ms]) => text(mutate(o, ms), 'mutated')), weight: 40 },
  { arbitrary: validControl.filter((o) => o.type !== 'session_init_v2').map((o) => text(o, 'valid')), weight: 10 },
  { arbitrary: invalidFrame, weight: 20 },
  // A payload nested past the limit (up to 20k levels): refused, never encoded back.
  {
    arbitrary: fc
      .integer({ min: MAX_PAYLOAD_DEPTH + 1, max: 20_000 })
      .map((depth) => text({ type: 'session_init_v2', continuation_state: { kind: SYNTHETIC_CONTINUATION_KIND, payload: { nested: new RawJson(deepArrayText(depth)) } } }, 'invalid')),
    weight: 2,
  },
  // Only the opening frame may be larger than max_control_frame_bytes.
  { arbitrary: fc.tuple(validInit, fc.integer({ min: 1, max: 4096 })).map(([o, over]) => text(padTo(o, LIMIT + over), 'valid')), weight: 1 },
);

// ------------------------------------------------------------------ oracle

interface Flags {
  enhancement: boolean;
  autoExtension: boolean;
  loop: boolean;
  paused: boolean;
  prompts: string[];
}

interface Expected {
  /** Messages of the retryable `invalid_message` errors, in frame order. */
  invalid: string[];
  snapshots: number;
  /** The first frame over the limit, if any: the server closes 1009 there and reads no further. */
  oversizeAt: number | undefined;
  flags: Flags;
}

/** Checks each frame's parse against how it was built, and folds the frames the server will read into what it must answer. */
function expectAfterInit(frames: Frame[], start: Flags): Expected {
  const flags: Flags = { ...start, prompts: [...start.prompts] };
  const out: Expected = { invalid: [], snapshots: 0, oversizeAt: undefined, flags };
  for (const [i, frame] of frames.entries()) {
    if (frame.data.length > LIMIT) {
      out.oversizeAt = i;
      break;
    }
    const plain = parseClientMessage(frame.data, { binary: frame.binary });
    if (frame.kind === 'valid' && !plain.ok) throw new Error(`generator bug: a frame built valid does not parse: ${plain.error.message}`);
    if (frame.kind === 'invalid' && plain.ok) throw new Error(`generator bug: a frame built invalid parses as ${plain.message.type}`);
    // The server also bounds the JSON values in a frame: a valid but enormous frame is refused.
    const parsed = parseClientMessage(frame.data, { binary: frame.binary, maxTokens: POLICY.frames.controlJsonTokens });
    if (!parsed.ok) {
      out.invalid.push(parsed.error.message);
      continue;
    }
    applyEffect(parsed.message, flags, out);
  }
  return out;
}

function applyEffect(message: ClientMessage, flags: Flags, out: Expected): void {
  switch (message.type) {
    case 'session_init_v2':
      out.invalid.push('type: session already initialised');
      break;
    case 'snapshot_state':
      out.snapshots += 1;
      break;
    case 'seed_prompts_updated':
      flags.prompts = [...message.seed_prompts];
      break;
    case 'enhancement_updated':
      flags.enhancement = message.enabled;
      break;
    case 'auto_extension_updated':
      flags.autoExtension = message.enabled;
      break;
    case 'loop_generation_updated':
      flags.loop = message.enabled;
      break;
    case 'generation_paused_updated':
      flags.paused = message.paused;
      break;
    case 'segment_prompt_source':
      break;
  }
}

// ---------------------------------------------------------------- fixture

let server: TestServer;
let tempDir: string;
let bystander: TestClient;
let bystanderRequests = 0;
let bystanderStopped = false;
/** Sessions the fixture itself holds open (the bystander, and the holder of worker 1 while testing `queued`). */
let baseline = 1;
let runId = 0;
/** Frames and connections the properties sent, for the summary line. */
const sent = { frames: 0, connections: 0 };


/** The bystander asks for its next segment whenever one completes, so one is always generating or waiting. */
function bystanderRequest(): void {
  if (bystanderStopped) return;
  bystander.send({ type: 'segment_prompt_source', prompt: `bystander ${bystanderRequests}` });
  bystanderRequests += 1;
}

function bystanderProblems(): string[] {
  const problems = bystander.ofType('error').map((e) => `bystander got error ${e.code}: ${e.message}`);
  if (bystander.ws.readyState !== bystander.ws.OPEN) problems.push('bystander connection closed');
  return [...problems, ...checkSegmentsComplete(bystander).problems];
}

/** Resolves once the bystander has completed another segment than it had when called (bounded). */
function bystanderProgress(): () => Promise<void> {
  const before = bystander.ofType('ltx2_segment_complete').length;
  return () => bystander.until(() => bystander.ofType('ltx2_segment_complete').length > before, 'the bystander to complete another segment', ANSWER_MS);
}

/** Bytes of initial images the server still holds in temp files. */
async function tempFilesLeft(): Promise<number> {
  return (await server.server.inspect()).tempBytes;
}

/** After every run: the fuzzed sessions are gone, nothing queued, no temp file left, and the server answers. */
async function settled(): Promise<void> {
  await waitUntil(
    async () => {
      const s = await server.server.inspect();
      return s.sessions.length === baseline && s.queueDepth === 0;
    },
    `sessions back to ${baseline}`,
    ANSWER_MS,
  );
  // The server keeps one run directory (holding its pid file); no session file may be left in it.
  await waitUntil(async () => (await readdir(tempDir)).length === 1 && (await tempFilesLeft()) === 0, 'temp dir empty', ANSWER_MS);
  await expectHealthy(server.url);
  expect(bystanderProblems()).toEqual([]);
}

beforeAll(async () => {
  tempDir = await mkdtemp(join(tmpdir(), 'livegen-fuzz-'));
  server = await startServer(FUZZ_CONFIG, { tempDir });
  bystander = await connectQuiet(server.wsUrl);
  bystander.send({ type: 'session_init_v2', client_id: 'bystander' });
  await bystander.waitFor('gpu_assigned');
  expect(bystander.ofType('gpu_assigned')[0]?.gpu_id).toBe(0);
  bystander.ws.on('message', (data: Buffer, isBinary: boolean) => {
    if (!isBinary && data.includes('"ltx2_segment_complete"')) bystanderRequest();
  });
  bystanderRequest();
  bystanderRequest();
  await bystander.waitFor('media_init');
});

afterAll(async () => {
  try {
    if (bystander) {
      bystanderStopped = true;
      // Let the bystander's requested segments finish, then check every one arrived whole.
      await bystander.until(() => bystander.ofType('ltx2_segment_complete').length >= bystanderRequests, 'bystander segments to finish', 20_000);
      const { segments, problems } = checkSegmentsComplete(bystander);
      expect(bystanderProblems()).toEqual([]);
      expect(problems).toEqual([]);
      expect(segments).toBeGreaterThanOrEqual(5);
      expect(bystander.ofType('ltx2_segment_complete').map((m) => m.segment_idx)).toEqual(Array.from({ length: segments }, (_, i) => i));
      console.log(`fuzz: ${sent.frames} fuzzed frames over ${sent.connections} connections; the bystander streamed ${segments} whole segments on worker 0 meanwhile`);
      bystander.close();
    }
  } finally {
    await server?.close();
    if (tempDir) {
      expect(await readdir(tempDir)).toEqual([]);
      await rm(tempDir, { recursive: true, force: true });
    }
  }
});

// ---------------------------------------------------------------- the runs

const BASE_INIT = { enhancement_enabled: false, auto_extension_enabled: false, loop_generation_enabled: false, curated_prompts: ['seed prompt'] };
const BASE_FLAGS: Flags = { enhancement: false, autoExtension: false, loop: false, paused: false, prompts: ['seed prompt'] };

type State = 'init-in-flight' | 'queued' | 'active-idle' | 'segment-running' | 'paused';

/** Opens a session and drives it into `state`; returns it with the flags it starts from. */
async function openIn(state: State, clientId: string, mode: string, onInit: Frame[]): Promise<{ client: TestClient; flags: Flags }> {
  const client = await connectQuiet(server.wsUrl);
  const init = { type: 'session_init_v2', client_id: clientId, stream_mode: mode, ...BASE_INIT };
  if (state === 'init-in-flight') {
    // A 256 KiB image (a real PNG header, then padding) makes the init take a moment to apply
    // (it is parsed off the event loop and written to a temp file); the batch goes out in the
    // same breath, so it lands while the session is still initialising.
    const image = Buffer.concat([Buffer.from(TINY_PNG_BASE64, 'base64'), Buffer.alloc(256 * 1024, 7)]).toString('base64');
    sendFrame(client, Buffer.from(toJson({ ...init, initial_image: { mime: 'image/png', data: image } })), false);
    for (const f of onInit) sendFrame(client, f.data, f.binary);
    return { client, flags: { ...BASE_FLAGS } };
  }
  client.send(init);
  if (state === 'queued') {
    await client.until(() => client.ofType('queue_status').some((m) => m.queue_depth >= 1), 'queued', ANSWER_MS);
    return { client, flags: { ...BASE_FLAGS } };
  }
  await client.waitFor('ltx2_stream_start', 1, ANSWER_MS);
  if (state === 'segment-running') {
    // Four 10 ms steps, then half a second of realtime frames: the batch lands while it runs.
    client.send({ type: 'segment_prompt_source', prompt: 'running', num_inference_steps: 4 });
    await client.waitFor('ltx2_segment_start', 1, ANSWER_MS);
  }
  if (state === 'paused') {
    client.send({ type: 'generation_paused_updated', paused: true });
    client.send({ type: 'segment_prompt_source', prompt: 'deferred' });
    return { client, flags: { ...BASE_FLAGS, paused: true } };
  }
  return { client, flags: { ...BASE_FLAGS } };
}

/** One property run: a batch of frames in `state`, every answer checked. */
async function fuzzAfterInit(state: State, mode: string, frames: Frame[]): Promise<void> {
  const id = ++runId;
  const clientId = `fuzz-${state}-${id}`;
  const sentinel = `fuzz_sentinel_${id}`;
  const sentinelMessage = `type: unknown message type ${JSON.stringify(sentinel)}`;
  const { client, flags } = await openIn(state, clientId, mode, frames);
  sent.connections += 1;
  sent.frames += frames.length + 1;
  try {
    const expected = expectAfterInit(frames, flags);
    if (state !== 'init-in-flight') for (const f of frames) sendFrame(client, f.data, f.binary);
    const errors = () => client.ofType('error');
    // Synchronous answers: retryable invalid_message, one per bad frame, in order.
    const invalidAnswers = () => errors().filter((e) => e.code === 'invalid_message' && e.retryable).map((e) => e.message);
    // snapshot_state is answered asynchronously (a store read): a snapshot or, with nothing stored, internal_error.
    const snapshotAnswers = () => client.ofType('continuation_state_snapshot').length + errors().filter((e) => e.code === 'internal_error').length;

    if (expected.oversizeAt === undefined) {
      sendFrame(client, Buffer.from(JSON.stringify({ type: sentinel })), false);
      await client.until(() => invalidAnswers().includes(sentinelMessage) && snapshotAnswers() >= expected.snapshots, 'every frame answered', ANSWER_MS);
      expect(invalidAnswers()).toEqual([...expected.invalid, sentinelMessage]);
      expect(snapshotAnswers()).toBe(expected.snapshots);
      // Valid frames answered with no error but internal_error (for snapshots); the connection stays.
      expect(errors().filter((e) => !(e.code === 'invalid_message' && e.retryable) && e.code !== 'internal_error')).toEqual([]);
      expect(client.ws.readyState).toBe(client.ws.OPEN);
      // Valid toggles took effect, in order, on top of the init.
      const session = (await server.server.inspect()).sessions.find((s) => s.clientId === clientId);
      expect(session, 'session still registered').toBeDefined();
      expect({
        enhancement: session?.enhancementEnabled,
        autoExtension: session?.autoExtensionEnabled,
        loop: session?.loopGenerationEnabled,
        paused: session?.generationPaused,
        prompts: session?.curatedPrompts,
      }).toEqual(expected.flags);
    } else {
      const closed = await withTimeout(client.closed, ANSWER_MS, 'close 1009 after an oversize frame');
      expect(closed.code).toBe(1009);
      const last = errors().at(-1);
      expect(last).toMatchObject({ code: 'invalid_message', retryable: false });
      // Refused at its header: the length may not be known in full yet.
      expect(last?.message).toMatch(/^frame (of \d+ bytes )?exceeds the \d+-byte limit$/);
      if (state === 'init-in-flight') {
        // Frames behind an init still being applied are held; an oversized frame refused at its
        // header meanwhile ends the session at once, so the held ones may go unanswered.
        const answered = invalidAnswers();
        expect(expected.invalid.slice(0, answered.length)).toEqual(answered);
      } else {
        expect(invalidAnswers()).toEqual(expected.invalid);
      }
      // A snapshot still being read when the close went out is dropped, never answered after the close.
      expect(snapshotAnswers()).toBeLessThanOrEqual(expected.snapshots);
      expect(errors().filter((e) => !(e.code === 'invalid_message') && e.code !== 'internal_error')).toEqual([]);
    }
  } finally {
    client.close();
  }
  await settled();
}

/** One first frame on its own connection: rejected exactly as documented, or accepted and live. */
async function fuzzFirstFrame(frame: Frame): Promise<void> {
  const client = await connectQuiet(server.wsUrl);
  sent.connections += 1;
  sent.frames += 1;
  try {
    sendFrame(client, frame.data, frame.binary);
    const parsed = parseClientMessage(frame.data, { binary: frame.binary });
    if (frame.kind === 'valid' && !parsed.ok) throw new Error(`generator bug: a frame built valid does not parse: ${parsed.error.message}`);
    if (frame.kind === 'invalid' && parsed.ok) throw new Error(`generator bug: a frame built invalid parses as ${parsed.message.type}`);
    // The opening frame's own rules (its type first, bounded values, a real image) come from the server's parser.
    const opening = parseOpeningFrame(frame.data, frame.binary, openingFrameLimits(POLICY.frames));
    let rejection: string | undefined;
    if (!opening.ok) rejection = opening.message;
    else if (!parsed.ok || parsed.message.type !== 'session_init_v2') throw new Error('the opening-frame parser accepted what the protocol parser refuses');
    else if (parsed.message.continuation_state && parsed.message.continuation_state.kind !== SYNTHETIC_CONTINUATION_KIND) {
      rejection = `continuation_state.kind: expected ${JSON.stringify(SYNTHETIC_CONTINUATION_KIND)}, got ${JSON.stringify(parsed.message.continuation_state.kind)}`;
    } else if (parsed.message.continuation_state) {
      // The right kind, but a payload the generator cannot resume from: refused at init too.
      try {
        decodeSyntheticContinuation(parsed.message.continuation_state);
      } catch (err) {
        rejection = `continuation_state.${(err as Error).message.replace(/^continuationState\.?/, '')}`;
      }
    }
    if (rejection !== undefined) {
      const closed = await withTimeout(client.closed, ANSWER_MS, 'close 1003 after a bad first frame');
      expect(closed.code).toBe(1003);
      expect(client.messages).toEqual([{ type: 'error', code: 'invalid_message', message: rejection, retryable: false }]);
      return;
    }
    const init = parsed.ok && parsed.message.type === 'session_init_v2' ? parsed.message : undefined;
    if (!init) throw new Error('unreachable');
    // Loop generation starts segments by itself; a continuation the generator cannot read fails the first one.
    const loops = init.loop_generation_enabled && init.curated_prompts.length > 0;
    const mayFail = loops && init.continuation_state != null;
    await client.until(() => client.ofType('queue_status').length > 0 || (mayFail && client.ofType('error').length > 0), 'queue_status after a valid init', ANSWER_MS);
    if (client.ofType('queue_status').length === 0) return;
    client.send({ type: 'snapshot_state' });
    await client.until(
      () => client.ofType('continuation_state_snapshot').length > 0 || client.ofType('error').length > 0,
      'the answer to snapshot_state',
      ANSWER_MS,
    );
    const errors = client.ofType('error');
    const snapshot = client.ofType('continuation_state_snapshot')[0];
    if (errors.length > 0) {
      if (mayFail && errors.some((e) => e.code === 'worker_failed')) return;
      // Nothing stored: no state on the init, and no segment finished yet.
      expect(errors).toEqual([{ type: 'error', code: 'internal_error', message: expect.any(String), retryable: false }]);
      expect(init.continuation_state ?? undefined).toBeUndefined();
      return;
    }
    const stored = init.continuation_state;
    if (stored && !(loops && client.ofType('ltx2_segment_complete').length > 0)) {
      expect(snapshot?.state.kind).toBe(stored.kind);
      expect(jsonEqual(snapshot?.state.payload, stored.payload), 'snapshot returns the stored payload unchanged').toBe(true);
    } else {
      // A loop segment finished first: the snapshot is the generator's own, readable state.
      expect(() => decodeSyntheticContinuation(snapshot?.state)).not.toThrow();
    }
  } finally {
    client.close();
  }
}

describe('fuzzing the driver over a real socket', () => {
  it('answers every first frame as documented: rejected with invalid_message + close 1003, or accepted', { timeout: 60_000 }, async () => {
    const progressed = bystanderProgress();
    await fc.assert(
      fc.asyncProperty(fc.array(firstFrame, { minLength: 3, maxLength: 6 }), async (frames) => {
        // Several connections at once: valid inits compete for worker 1 and queue behind each other.
        await Promise.all(frames.map((f) => fuzzFirstFrame(f)));
        await settled();
      }),
      { numRuns: RUNS * 2, endOnFailure: true },
    );
    await progressed();
  });

  const states: State[] = ['init-in-flight', 'active-idle', 'segment-running', 'paused', 'queued'];
  for (const state of states) {
    it(`answers every frame after init as documented, state ${state}`, { timeout: 60_000 }, async () => {
      let holder: TestClient | undefined;
      if (state === 'queued') {
        // The bystander holds worker 0; the holder takes worker 1, so the fuzzed session waits.
        holder = await connectQuiet(server.wsUrl);
        holder.send({ type: 'session_init_v2', client_id: 'holder' });
        await holder.waitFor('gpu_assigned', 1, ANSWER_MS);
        baseline = 2;
      }
      const progressed = bystanderProgress();
      try {
        await fc.assert(
          fc.asyncProperty(batch, async ({ mode, frames, tail }) => fuzzAfterInit(state, mode, tail ? [...frames, tail] : frames)),
          { numRuns: RUNS, endOnFailure: true },
        );
        // The bystander on the other worker kept streaming through all of it.
        await progressed();
      } finally {
        if (holder) {
          holder.close();
          baseline = 1;
          await settled();
        }
      }
    });
  }

  it('runs every valid segment request to completion, with its own prompt, steps and source', { timeout: 60_000 }, async () => {
    // Requests with edge values (seed -1 or 2^53-1, guidance ±1e308 or 5e-324, lone surrogates,
    // half-megabyte prompts) must generate like any other: no worker_failed, whole media.
    const runnable = fc
      .tuple(
        fc.record(
          {
            prompt: anyText,
            negative_prompt: optionalText,
            source: fc.constantFrom(...PROMPT_SOURCES),
            seed: fc.option(validSeed, { nil: null }),
            num_inference_steps: fc.option(fc.integer({ min: 1, max: 4 }), { nil: null }),
            guidance_scale: fc.option(validGuidance, { nil: null }),
          },
          { requiredKeys: ['prompt'] },
        ),
        fc.option(extraFields, { freq: 2 }),
      )
      .map(([fields, extra]) => text({ ...(extra ?? {}), ...fields, type: 'segment_prompt_source' }, 'valid'))
      // Frames over the server's JSON-value bound are refused before parsing (tested elsewhere), not run.
      .filter((frame) => !exceedsJsonTokens(frame.data, POLICY.frames.controlJsonTokens));
    await fc.assert(
      fc.asyncProperty(fc.constantFrom('av_fmp4', 'legacy_jpeg'), fc.array(runnable, { minLength: 1, maxLength: 3 }), async (mode, requests) => {
        const client = await connectQuiet(server.wsUrl);
        sent.connections += 1;
        sent.frames += requests.length;
        try {
          client.send({ type: 'session_init_v2', stream_mode: mode });
          await client.waitFor('ltx2_stream_start', 1, ANSWER_MS);
          const expected = requests.map((r) => {
            const parsed = parseClientMessage(r.data);
            if (!parsed.ok || parsed.message.type !== 'segment_prompt_source') throw new Error('generator bug: a runnable request does not parse');
            return { prompt: parsed.message.prompt, total_steps: parsed.message.num_inference_steps ?? 2, source: parsed.message.source };
          });
          for (const r of requests) sendFrame(client, r.data, false);
          await client.until(
            () => client.ofType('ltx2_segment_complete').length >= requests.length || client.ofType('error').length > 0,
            'every requested segment to complete',
            ANSWER_MS * 2,
          );
          expect(client.ofType('error')).toEqual([]);
          expect(client.ofType('ltx2_segment_start').map((m) => ({ prompt: m.prompt, total_steps: m.total_steps, source: m.source }))).toEqual(expected);
          expect(checkSegmentsComplete(client).problems).toEqual([]);
          client.send({ type: 'snapshot_state' });
          const snapshot = await client.waitFor('continuation_state_snapshot', 1, ANSWER_MS);
          expect(decodeSyntheticContinuation(snapshot.state).prompt).toBe(expected.at(-1)?.prompt);
        } finally {
          client.close();
        }
        await settled();
      }),
      { numRuns: Math.max(3, Math.round(RUNS / 3)), endOnFailure: true },
    );
  });

  it('closes an opening frame over MAX_INIT_FRAME_BYTES with 1009 and stays up', { timeout: 30_000 }, async () => {
    const client = await connectQuiet(server.wsUrl);
    sendFrame(client, Buffer.alloc(MAX_INIT_FRAME_BYTES + 1, 0x20), false);
    const closed = await withTimeout(client.closed, ANSWER_MS, 'close 1009');
    expect(closed.code).toBe(1009);
    // docs/operations.md: the WebSocket layer closes it before buffering it; no error frame is owed.
    expect(client.messages.filter((m) => m.type !== 'error')).toEqual([]);
    await settled();
  });

  it('closes a text frame that is not UTF-8 with 1007 (RFC 6455) and frees the session', { timeout: 30_000 }, async () => {
    const client = await connectQuiet(server.wsUrl);
    client.send({ type: 'session_init_v2' });
    await client.waitFor('ltx2_stream_start', 1, ANSWER_MS);
    // A CESU-8 encoded surrogate: not UTF-8, so ws fails the connection before the driver sees it.
    sendFrame(client, Buffer.from([0x7b, 0x22, 0xed, 0xa0, 0x80, 0x22, 0x7d]), false);
    const closed = await withTimeout(client.closed, ANSWER_MS, 'close 1007');
    expect(closed.code).toBe(1007);
    await settled();
  });
});

describe('regressions found by fuzzing', () => {
  it('refuses an init whose continuation payload is 20k levels deep, and stays up', { timeout: 30_000 }, async () => {
    // Such a payload once reached the store and made snapshot_state's JSON.stringify throw
    // in a floating promise (an unhandled rejection kills Node). It is now refused at init.
    const client = await connectQuiet(server.wsUrl);
    try {
      const payload = new RawJson(`{"nested":${deepArrayText(20_000)}}`);
      sendFrame(client, Buffer.from(toJson({ type: 'session_init_v2', continuation_state: { kind: SYNTHETIC_CONTINUATION_KIND, payload } })), false);
      expect((await client.closed).code).toBe(1003);
      expect(client.messages).toEqual([
        { type: 'error', code: 'invalid_message', message: `continuation_state.payload: nested deeper than ${MAX_PAYLOAD_DEPTH} levels`, retryable: false },
      ]);
      expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
    } finally {
      client.close();
    }
    await settled();
  });

  it('answers snapshot_state sent right after an init carrying continuation_state with that state', { timeout: 30_000 }, async () => {
    // The init is applied after an await (its image and state are stored); frames behind it
    // in the same read must wait for that, or the snapshot would find nothing stored.
    const client = await connectQuiet(server.wsUrl);
    try {
      client.send({ type: 'session_init_v2', continuation_state: validSyntheticState });
      client.send({ type: 'snapshot_state' });
      await client.until(() => client.ofType('continuation_state_snapshot').length + client.ofType('error').length > 0, 'an answer to snapshot_state', ANSWER_MS);
      expect(client.ofType('error')).toEqual([]);
      expect(client.ofType('continuation_state_snapshot')[0]?.state).toEqual(validSyntheticState);
    } finally {
      client.close();
    }
    await settled();
  });

  it('keeps toggles sent right after the init instead of overwriting them with the init values', { timeout: 30_000 }, async () => {
    // Toggles behind the init must apply on top of it, not be reset by it.
    const client = await connectQuiet(server.wsUrl);
    try {
      client.send({ type: 'session_init_v2', client_id: 'toggles-after-init', curated_prompts: ['a'] });
      client.send({ type: 'enhancement_updated', enabled: true });
      client.send({ type: 'seed_prompts_updated', seed_prompts: ['b', 'c'] });
      await client.waitFor('ltx2_stream_start', 1, ANSWER_MS);
      const session = (await server.server.inspect()).sessions.find((s) => s.clientId === 'toggles-after-init');
      expect({ enhancement: session?.enhancementEnabled, prompts: session?.curatedPrompts }).toEqual({ enhancement: true, prompts: ['b', 'c'] });
    } finally {
      client.close();
    }
    await settled();
  });

  it('answers an init when the session log dir cannot be created, instead of crashing', { timeout: 30_000 }, async () => {
    // Opening the event log throws synchronously (ENOTDIR here; EACCES or ENOSPC in
    // production): the session must still be answered and the process stay up.
    const dir = await mkdtemp(join(tmpdir(), 'livegen-fuzz-log-'));
    const notADir = join(dir, 'a-file');
    await writeFile(notADir, '');
    const other = await startServer({ logging: { session_log_dir: join(notADir, 'sessions') } });
    try {
      const client = await connectQuiet(other.wsUrl);
      client.send({ type: 'session_init_v2' });
      await client.until(() => client.messages.length > 0, 'an answer to the init', 3000);
      // The event log is best effort (SessionEventLog drops itself on a write error): the session goes on.
      expect(client.messages[0]).toMatchObject({ type: 'queue_status' });
      client.close();
      await expectHealthy(other.url);
    } finally {
      await other.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
