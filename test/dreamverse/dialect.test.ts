/**
 * The Dreamverse dialect at `/ws` (docs/dreamverse.md) over real sockets, flow by flow, as
 * the Dreamverse web app drives it: a preset start, a custom start that rewrites first,
 * typed prompts (raw, enhanced, failed enhancement), single clips, the segment cap and
 * its restart, pause, loop, projects on one socket, leaving, the queue, the toggles,
 * auto-extension and the safety filter. The LLM is a fake OpenAI-compatible server on
 * loopback. Tests wait on conditions; the only clock assertion is the one that proves a
 * worker was released before a several-second segment could have finished.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { iterateBoxes } from '../../src/media/index.js';
import { FakeLlm, type FakeCall, type ReplyFn } from '../prompts/fake-llm.js';
import { probeMedia, sleep, startServer, type TestServer } from '../server/harness.js';
import { DvClient, dvUrl, SEGMENT_ORDER, type DvMessage, type DvSegment } from './dv-client.js';

/** The first preset of the web app's `selected_ltx2_continuation_story_presets.json`, as a preset click sends it. */
const PRESET_ID = 'death_star_console_delay_lego_funny';
const PRESET_LABEL = 'LEGO Stormtroopers';
const LEGO = [
  'A white LEGO stormtrooper minifigure stands at a glowing control console inside a metallic LEGO Death Star control room, studded gray walls and tiled black floor reflecting cold blue panel light across the glossy plastic helmet, which sits popped off beside the console revealing a simple printed face. The LEGO stormtrooper presses blocky yellow hands against the console buttons and says "The requisition says twelve thousand ceremonial capes," then adds "We don’t even have cloth physics." The console emits tiny electronic beeps while a low mechanical hum vibrates through the LEGO corridor. A blinking red \'APPROVED\' tile glows on the display as the LEGO stormtrooper freezes in place.',
  'The LEGO stormtrooper leans forward slightly, one hinged arm lifting to rub the top of his plastic head while scanning the scrolling brick-built supply manifest. The LEGO stormtrooper says "It’s signed by High Command," then adds "In permanent marker." A faint intercom crackle echoes overhead and small blue translucent studs blink steadily along the wall. The LEGO stormtrooper lowers his arm and remains perfectly still, staring at the absurd order.',
  'The LEGO stormtrooper straightens up with a soft click of jointed arms dropping to his sides. The LEGO stormtrooper says "Do you know how hard it is to sit in this armor," then adds "Now imagine snapping on a cape." Cold blue lighting reflects cleanly off the smooth white plastic torso. The LEGO stormtrooper stands rigidly, square and unmoving like a posed minifigure.',
  'The camera slowly pans across the LEGO control room, gliding past studded wall panels and smooth tiled floor pieces, and settles on another white LEGO stormtrooper minifigure at a secondary console on the far side of the room, helmet also removed and resting beside him. The LEGO stormtrooper looks up calmly and says "Maybe it’s for morale," then adds "Very blocky morale." The steady engine hum fills the space as the pan completes and locks on the LEGO stormtrooper.',
  'The LEGO stormtrooper tilts his square head slightly and folds his rigid arms across his torso in one clean motion. The LEGO stormtrooper says "Picture the hallway breeze," then adds "Full hero click." Blue translucent studs blink softly behind the LEGO stormtrooper and a faint mechanical hiss escapes a nearby vent brick. The LEGO stormtrooper remains posed and still.',
  'The LEGO stormtrooper lowers his arms with a small plastic click and looks toward the off-screen LEGO stormtrooper. The LEGO stormtrooper says "At least it’s not glitter," then adds "Yet." The deep station hum continues as the camera holds steady on the LEGO stormtrooper’s simple printed face, ending in a clean, stable frame.',
];

/** What the web app's `buildProjectInitPayload` sends for a preset click (page.tsx). */
function webInit(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    preset_id: PRESET_ID,
    preset_label: PRESET_LABEL,
    curated_prompts: LEGO,
    initial_rollout_prompt: '',
    initial_image: null,
    single_clip_mode: false,
    enhancement_enabled: true,
    auto_extension_enabled: false,
    loop_generation_enabled: false,
    ...overrides,
  };
}

const PLAN = ['plan one: a paper boat', 'plan two: the boat in a gutter', 'plan three: a drain', 'plan four: a river', 'plan five: the sea', 'plan six: a lighthouse'];

/** Realtime frames: a segment of `frames` frames takes frames/24 s. */
function realtime(frames = 24): Record<string, unknown> {
  return { default_request: { sampling: { num_frames: frames } }, generator: { synthetic: { pace: 'realtime', step_ms: 0 } } };
}

let dir: string;
let server: TestServer | undefined;
let fake: FakeLlm | undefined;
let url = '';
const clients: DvClient[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'livegen-dreamverse-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});
afterEach(async () => {
  const problems: string[] = [];
  for (const c of clients) problems.push(...invariantProblems(c));
  clients.splice(0).forEach((c) => c.close());
  await server?.close();
  server = undefined;
  await fake?.close();
  fake = undefined;
  if (problems.length > 0) throw new Error(`dialect invariants broken:\n${problems.join('\n')}`);
});

type Patch = { streaming?: Record<string, unknown>; [k: string]: unknown };

async function serve(patch: Patch = {}): Promise<string> {
  server = await startServer(patch);
  url = dvUrl(server.url);
  return url;
}

/** A server whose LLM is the fake, answering with `reply`. */
async function serveWithLlm(reply: ReplyFn, patch: Patch = {}, prompt: Record<string, unknown> = {}): Promise<string> {
  fake = await FakeLlm.start(reply);
  const { streaming, ...rest } = patch;
  return serve({
    ...rest,
    streaming: { ...streaming, prompt: { enabled: true, providers: [{ name: 'fake', base_url: fake.baseUrl, model: 'fake-model' }], ...prompt } },
  });
}

async function open(fields: Record<string, unknown> = webInit()): Promise<DvClient> {
  const c = await DvClient.start(url, fields);
  clients.push(c);
  return c;
}

async function connect(): Promise<DvClient> {
  const c = await DvClient.connect(url);
  clients.push(c);
  return c;
}

/** Which operation a call to the fake is (the default system prompts say). */
function operation(call: FakeCall): 'rewrite' | 'auto_extend' | 'enhance' {
  if (/plan a video story/i.test(call.system) || call.user.startsWith('What the user wants')) return 'rewrite';
  if (/continue a video story/i.test(call.system) || call.user.includes('Write the prompt of the next segment')) return 'auto_extend';
  return 'enhance';
}

/**
 * Checks every frame type of `types` arrives in that order (each after the one before);
 * returns their positions in the log.
 */
function expectInOrder(c: DvClient, steps: (string | ((m: DvMessage) => boolean))[], fromSeq = 0): number[] {
  const seqs: number[] = [];
  let at = fromSeq;
  for (const step of steps) {
    const match = typeof step === 'string' ? (m: DvMessage) => m.type === step : step;
    const found = c.find(match, at);
    if (!found) throw new Error(`expected ${typeof step === 'string' ? step : step.toString()} after frame ${at}; got ${c.summary(fromSeq)}`);
    seqs.push(found.seq);
    at = found.seq + 1;
  }
  return seqs;
}

/** The segment of the `stream`-th stream (0-based) whose `segment_idx` is `idx`. */
function segmentAt(c: DvClient, stream: number, idx: number): DvSegment {
  const s = c.streams()[stream]?.segments.find((seg) => seg.segmentIdx === idx);
  if (!s) throw new Error(`no segment ${idx} in stream ${stream}; got ${c.summary()}`);
  return s;
}

function promptOf(s: DvSegment): unknown {
  return s.messages.ltx2_segment_start?.prompt;
}

function sourceOf(s: DvSegment): DvMessage {
  const m = s.messages.segment_prompt_source;
  if (!m) throw new Error(`segment ${s.segmentIdx} has no segment_prompt_source`);
  return m;
}

/** Waits until no segment is running (every ltx2_segment_start has its ltx2_segment_complete). */
async function idleBetweenSegments(c: DvClient): Promise<void> {
  await c.until(() => c.ofType('ltx2_segment_start').length === c.ofType('ltx2_segment_complete').length, 'the running segment to finish');
}

/** What the web app and its media pipeline rely on, for every client of every test (FRONTEND-NEEDS.md §6-8). */
function invariantProblems(c: DvClient): string[] {
  const problems: string[] = [];
  if (c.unparsable.length > 0) problems.push(`text frames that are not JSON: ${c.unparsable.slice(0, 2).join(' | ')}`);
  const stray = c.strayBinaries();
  if (stray.length > 0) problems.push(`binary frames outside media_init…media_segment_complete at ${stray.slice(0, 5).join(',')}: ${c.summary()}`);
  // Every stream ends before the next one starts.
  const starts = c.framesOfType('ltx2_stream_start').map((f) => f.seq);
  for (let i = 1; i < starts.length; i++) {
    if (c.seqOf('ltx2_stream_complete', starts[i - 1]) > (starts[i] as number) || c.seqOf('ltx2_stream_complete', starts[i - 1]) === -1) {
      problems.push(`stream ${i} started without ltx2_stream_complete for stream ${i - 1}: ${c.summary()}`);
    }
  }
  const streamIds = new Set<string>();
  for (const [n, stream] of c.streams().entries()) {
    stream.segments.forEach((s, i) => {
      if (s.segmentIdx !== i + 1) problems.push(`stream ${n}: segment ${i} has segment_idx ${s.segmentIdx}`);
      // A subsequence of the per-segment order that starts with segment_prompt_source; complete segments have all of it.
      let k = 0;
      for (const t of s.order) {
        const at = SEGMENT_ORDER.indexOf(t as (typeof SEGMENT_ORDER)[number], k);
        if (at === -1) {
          problems.push(`stream ${n} segment ${s.segmentIdx}: frames out of order ${s.order.join(',')}`);
          break;
        }
        k = at + 1;
      }
      if (s.order[0] !== 'segment_prompt_source') problems.push(`stream ${n} segment ${s.segmentIdx}: starts with ${s.order[0]}`);
      if (s.messages.ltx2_segment_complete && s.order.join(',') !== SEGMENT_ORDER.join(',')) {
        problems.push(`stream ${n} segment ${s.segmentIdx}: ${s.order.join(',')} is not ${SEGMENT_ORDER.join(',')}`);
      }
      if (s.streamId !== undefined) {
        if (streamIds.has(s.streamId)) problems.push(`stream_id ${s.streamId} used twice`);
        streamIds.add(s.streamId);
      }
    });
  }
  return problems;
}

function boxTypes(data: Buffer): string[] {
  return [...iterateBoxes(data)].map((b) => b.type);
}

describe('session start with a preset', () => {
  it('sends queue_status before the init is read, then the session start, then 1-based curated segments in order whose media decodes with continuous frames', async () => {
    await serve({ streaming: { generation_segment_cap: 3 } });
    const c = await connect();
    const queue = await c.waitFor('queue_status');
    expect(c.frames[0]).toMatchObject({ kind: 'json', message: { type: 'queue_status' } });
    expect(queue).toMatchObject({ position: 0, total_gpus: 1, available_gpus: 1 });
    expect(typeof queue.queue_depth).toBe('number');

    c.send({ type: 'session_init_v2', ...webInit() });
    const complete = await c.waitFor('ltx2_stream_complete');
    expect(complete).toMatchObject({ reason: 'segment_cap' });

    expectInOrder(c, ['queue_status', 'gpu_assigned', 'loop_generation_updated', 'generation_paused_updated', 'ltx2_stream_start', 'seed_prompts_updated', 'segment_prompt_source']);
    const assigned = c.ofType('gpu_assigned');
    // Once at the start, then again after every segment and at the stream's end: the app
    // restarts its countdown with each, as livegen's idle clock restarts (docs/dreamverse.md).
    expect(assigned).toHaveLength(1 + 3 + 1);
    expect(assigned.every((a) => a.gpu_id === 0 && a.session_timeout === assigned[0]?.session_timeout)).toBe(true);
    const assignedAt = c.framesOfType('gpu_assigned').map((f) => f.seq);
    for (const end of c.framesOfType('ltx2_segment_complete')) expect(assignedAt).toContain(end.seq + 1);
    expect(typeof assigned[0]?.session_timeout).toBe('number');
    expect(assigned[0]?.session_timeout as number).toBeGreaterThan(0);
    expect(c.ofType('loop_generation_updated')[0]).toMatchObject({ enabled: false });
    expect(c.ofType('generation_paused_updated')[0]).toMatchObject({ paused: false });
    const start = c.ofType('ltx2_stream_start')[0] as DvMessage;
    expect(start).toMatchObject({
      generation_segment_cap: 3,
      preset_id: PRESET_ID,
      stream_mode: 'av_fmp4',
      live_mode: true,
      loop_generation_enabled: false,
      width: 192,
      height: 112,
      fps: 24,
      num_frames: 24,
    });
    expect(typeof start.total_segments).toBe('number');
    expect(typeof start.loop_iteration).toBe('number');
    expect(c.ofType('seed_prompts_updated')[0]).toMatchObject({ reason: 'init', prompts: LEGO, preset_id: PRESET_ID, preset_label: PRESET_LABEL });

    const streams = c.streams();
    expect(streams).toHaveLength(1);
    const segments = streams[0]?.segments ?? [];
    expect(segments.map((s) => s.segmentIdx)).toEqual([1, 2, 3]);
    let nextFrame: number | undefined;
    for (const [i, s] of segments.entries()) {
      expect(s.order).toEqual([...SEGMENT_ORDER]);
      expect(s.messages.segment_prompt_source).toMatchObject({ segment_idx: i + 1, source: 'curated', seed_prompt_index: i, fallback_used: false, loop_iteration: start.loop_iteration });
      expect(s.messages.ltx2_segment_start).toMatchObject({ segment_idx: i + 1, prompt: LEGO[i], source: 'curated', seed_prompt_index: i, loop_iteration: start.loop_iteration });
      expect(typeof s.messages.ltx2_segment_start?.total_segments).toBe('number');
      expect(s.messages.media_init).toMatchObject({ segment_idx: i + 1, mode: 'av_fmp4' });
      expect(s.messages.media_init?.mime).toMatch(/^video\/mp4; codecs="avc1\.[0-9a-fA-F]{6}, ?mp4a\.40\.2"$/);
      const media = c.mediaOf(s.streamId as string);
      expect(s.messages.media_segment_complete).toMatchObject({ segment_idx: i + 1, stream_id: s.streamId, bytes: media.length });
      // Dreamverse counts every binary frame of the segment, the init frame too.
      expect(s.messages.media_segment_complete?.chunks).toBe(c.mediaFrames(s.streamId as string).length);
      const latency = s.messages.step_complete?.latency_ms as Record<string, unknown>;
      expect(s.messages.step_complete).toMatchObject({ segment_idx: i + 1 });
      for (const key of ['total', 'worker_e2e', 'main_user_step', 'overhead']) expect(typeof latency[key]).toBe('number');
      expect(s.messages.ltx2_segment_complete).toMatchObject({ segment_idx: i + 1 });
      expect(typeof s.messages.ltx2_segment_complete?.total_segments).toBe('number');

      // A self-contained fMP4 per media_init, H.264 + AAC, frames continuing the rollout.
      expect(boxTypes(media).slice(0, 2)).toEqual(['ftyp', 'moov']);
      expect(boxTypes(media)).toContain('moof');
      const probe = await probeMedia(media, 192, 112);
      expect(probe.codecs).toEqual(['h264', 'aac']);
      expect(probe.frameIndices).toHaveLength(24);
      const first = probe.frameIndices[0] as number;
      expect(first).not.toBeNull();
      if (nextFrame !== undefined) expect(first).toBe(nextFrame);
      expect(probe.frameIndices).toEqual(Array.from({ length: 24 }, (_, k) => first + k));
      nextFrame = first + 24;
    }
    expect(new Set(segments.map((s) => s.streamId)).size).toBe(3);
    expect(c.isOpen).toBe(true);
  });

  it('counts seed_prompt_index by position in the rollout, also when a prompt repeats', async () => {
    // A short LLM plan is padded with its last prompt, and presets may repeat a line: the index is the seed's position.
    await serve({ streaming: { generation_segment_cap: 3 } });
    const c = await open(webInit({ curated_prompts: ['a bell rings', 'a door opens', 'a bell rings'], enhancement_enabled: false }));
    await c.waitFor('ltx2_stream_complete');
    expect(c.segments().map((s) => [promptOf(s), sourceOf(s).seed_prompt_index, s.messages.ltx2_segment_start?.seed_prompt_index])).toEqual([
      ['a bell rings', 0, 0],
      ['a door opens', 1, 1],
      ['a bell rings', 2, 2],
    ]);
  });

  it('starts with the defaults when no init comes within limits.init_timeout_seconds, and takes typed prompts', async () => {
    await serve({ limits: { init_timeout_seconds: 0.3 } });
    const c = await connect();
    await c.waitFor('ltx2_stream_start');
    expectInOrder(c, ['queue_status', 'gpu_assigned', 'ltx2_stream_start', 'seed_prompts_updated']);
    expect(c.ofType('seed_prompts_updated')[0]).toMatchObject({ reason: 'init', prompts: [] });
    c.send({ type: 'append_prompt', prompt: 'a quiet harbor', prompt_id: 'd-1' });
    const start = await c.waitFor('ltx2_segment_start');
    expect(start).toMatchObject({ segment_idx: 1, prompt: 'a quiet harbor' });
    await c.waitFor('ltx2_segment_complete');
    expect(c.isOpen).toBe(true);
  });

  it('takes any JSON object as the init, and the legacy select_model with segment_prompts', async () => {
    await serve({ streaming: { generation_segment_cap: 1 } });
    const c = await open({ type: 'select_model', segment_prompts: ['a legacy meadow', 'a legacy lake'], enhancement_enabled: false });
    await c.waitFor('ltx2_stream_complete');
    expect(c.ofType('seed_prompts_updated')[0]).toMatchObject({ reason: 'init', prompts: ['a legacy meadow', 'a legacy lake'] });
    expect(promptOf(segmentAt(c, 0, 1))).toBe('a legacy meadow');
  });
});

describe('rewrite', () => {
  it('rewrites a custom start first: rewrite events, then ltx2_stream_start, seed_prompts_reset_applied and segments from the new prompts', async () => {
    await serveWithLlm(() => ({ content: JSON.stringify(PLAN) }), { streaming: { generation_segment_cap: 2 } });
    const typed = 'a paper boat sails down a rainy street';
    const c = await open(webInit({ preset_id: 'custom', preset_label: '', curated_prompts: [], initial_rollout_prompt: typed }));
    await c.waitFor('ltx2_stream_complete');

    expectInOrder(c, [
      'gpu_assigned',
      'rewrite_seed_prompts_started',
      (m) => m.type === 'seed_prompts_updated' && m.reason === 'rewrite',
      'rewrite_seed_prompts_complete',
      'ltx2_stream_start',
      'seed_prompts_reset_applied',
      'segment_prompt_source',
    ]);
    // Nothing streams before the rewrite has answered.
    expect(c.seqOf('ltx2_stream_start')).toBeGreaterThan(c.seqOf('rewrite_seed_prompts_complete'));
    expect(c.ofType('rewrite_seed_prompts_started')[0]).toMatchObject({ model: 'fake-model' });
    const updated = c.find((m) => m.type === 'seed_prompts_updated' && m.reason === 'rewrite')?.message;
    expect(updated).toMatchObject({ reason: 'rewrite', prompts: PLAN, fallback_used: false, model: 'fake-model', rewrite_instruction: typed });
    expect(typeof updated?.latency_ms).toBe('number');
    const done = c.ofType('rewrite_seed_prompts_complete')[0];
    expect(done).toMatchObject({ fallback_used: false, model: 'fake-model' });
    expect(done?.error ?? null).toBeNull();
    expect(c.ofType('seed_prompts_reset_applied')[0]).toMatchObject({ reason: 'initial_rewrite' });

    const segments = c.streams()[0]?.segments ?? [];
    expect(segments.map((s) => [s.segmentIdx, promptOf(s), sourceOf(s).source, sourceOf(s).seed_prompt_index])).toEqual([
      [1, PLAN[0], 'curated', 0],
      [2, PLAN[1], 'curated', 1],
    ]);
    expect(fake?.calls.filter((call) => operation(call) === 'rewrite').some((call) => call.user.includes(typed))).toBe(true);
  });

  it('cancels the running segment on rewrite_seed_prompts and ends the stream before the new one starts', async () => {
    const instruction = 'make it about penguins on an ice floe';
    await serveWithLlm((call) => (operation(call) === 'rewrite' ? { content: JSON.stringify(PLAN) } : { status: 500 }), realtime(120));
    const c = await open(webInit({ enhancement_enabled: false }));
    // Segment 1 (5 s) is streaming.
    await c.until(() => c.frames.some((f) => f.kind === 'binary'), 'media of segment 1');
    c.send({ type: 'rewrite_seed_prompts', rewrite_instruction: instruction, prompt_window_prompts: LEGO });
    await c.waitFor('ltx2_stream_start', 2);
    const newStart = c.framesOfType('ltx2_stream_start')[1]?.seq as number;
    await c.waitForMatch((m) => m.type === 'ltx2_segment_start', 'segment 1 of the new stream', newStart);

    const [, , , streamDone] = expectInOrder(c, [
      'rewrite_seed_prompts_started',
      (m) => m.type === 'seed_prompts_updated' && m.reason === 'rewrite',
      'rewrite_seed_prompts_complete',
      'ltx2_stream_complete',
      'ltx2_stream_start',
    ]);
    expect(c.find((m) => m.type === 'seed_prompts_updated' && m.reason === 'rewrite')?.message).toMatchObject({ prompts: PLAN, fallback_used: false, rewrite_instruction: instruction });
    // The running segment was cancelled, not finished: it never completed, and none of its media came after the stream ended.
    const first = segmentAt(c, 0, 1);
    expect(first.messages.ltx2_segment_complete).toBeUndefined();
    expect(c.streams()[0]?.segments).toHaveLength(1);
    const between = c.frames.slice(streamDone, c.seqOf('media_init', newStart));
    expect(between.filter((f) => f.kind === 'binary')).toHaveLength(0);
    // The new rollout starts from the rewritten first prompt.
    const next = segmentAt(c, 1, 1);
    expect(promptOf(next)).toBe(PLAN[0]);
    expect(sourceOf(next)).toMatchObject({ source: 'curated', seed_prompt_index: 0 });
    const call = fake?.calls.find((x) => operation(x) === 'rewrite');
    expect(call?.user).toContain(instruction);
  });

  it('without an LLM falls back as documented: the instruction first, then the window, fallback_used and an error, and a new stream', async () => {
    await serve({ streaming: { generation_segment_cap: 2 } });
    const c = await open();
    expect(await c.waitFor('ltx2_stream_complete')).toMatchObject({ reason: 'segment_cap' });
    const instruction = 'a whale sings under the ice';
    c.send({ type: 'rewrite_seed_prompts', rewrite_instruction: instruction, prompt_window_prompts: LEGO });
    const done = await c.waitFor('rewrite_seed_prompts_complete');
    expect(done).toMatchObject({ fallback_used: true });
    expect(typeof done.error).toBe('string');
    expect(String(done.error)).not.toBe('');
    const updated = c.find((m) => m.type === 'seed_prompts_updated' && m.reason === 'rewrite')?.message;
    expect(updated).toMatchObject({ fallback_used: true, rewrite_instruction: instruction });
    const prompts = updated?.prompts as string[];
    expect(prompts[0]).toBe(instruction);
    // The rest of the window follows, in its order.
    const positions = prompts.slice(1).map((p) => LEGO.indexOf(p));
    expect(positions.length).toBeGreaterThan(0);
    expect(positions.every((p, i) => p >= 0 && (i === 0 || p > (positions[i - 1] as number)))).toBe(true);

    await c.waitFor('ltx2_stream_start', 2);
    await c.waitFor('ltx2_segment_complete', 3);
    const s = segmentAt(c, 1, 1);
    expect(promptOf(s)).toBe(instruction);
    expect(sourceOf(s)).toMatchObject({ source: 'curated', seed_prompt_index: 0 });
  });
});

describe('append_prompt', () => {
  const TYPED = 'a red kite rises over the station';

  /** Sends the prompt while segment 1 streams (1 s realtime segments); returns the frame its prompt_ready/fallback ended at. */
  async function appendDuringSegment(c: DvClient, id: string, prompt = TYPED): Promise<void> {
    await c.waitFor('ltx2_segment_start');
    c.send({ type: 'append_prompt', prompt, prompt_id: id });
  }

  /** The first segment chosen after frame `fromSeq`. */
  async function nextSegmentAfter(c: DvClient, fromSeq: number): Promise<{ source: DvMessage; start: DvMessage }> {
    const source = await c.waitForMatch((m) => m.type === 'segment_prompt_source', 'the next segment', fromSeq);
    const start = await c.waitForMatch((m) => m.type === 'ltx2_segment_start' && m.segment_idx === source.message.segment_idx, 'its ltx2_segment_start', source.seq);
    return { source: source.message, start: start.message };
  }

  it('without enhancement: prompt_received, prompt_ready user_raw, generated next as user_raw, then the seeds go on', async () => {
    await serve(realtime());
    const c = await open(webInit({ enhancement_enabled: false }));
    await appendDuringSegment(c, 'kite-1');
    const ready = await c.waitForMatch((m) => m.type === 'prompt_ready', 'prompt_ready');
    expectInOrder(c, [(m) => m.type === 'prompt_received' && m.prompt_id === 'kite-1', (m) => m.type === 'prompt_ready' && m.prompt_id === 'kite-1']);
    expect(c.ofType('prompt_received')[0]).toMatchObject({ prompt_id: 'kite-1' });
    expect(typeof c.ofType('prompt_received')[0]?.queue_depth).toBe('number');
    expect(ready.message).toMatchObject({ prompt_id: 'kite-1', prompt: TYPED, source: 'user_raw' });
    expect(typeof ready.message.latency_ms).toBe('number');
    expect(c.ofType('prompt_enhancing')).toHaveLength(0);

    const next = await nextSegmentAfter(c, ready.seq);
    expect(next.source).toMatchObject({ source: 'user_raw', prompt_id: 'kite-1' });
    expect(next.start).toMatchObject({ prompt: TYPED, source: 'user_raw' });
    // Then the remaining seeds, in order.
    const seedsBefore = c.ofType('segment_prompt_source').filter((m) => m.source === 'curated' && (m.segment_idx as number) < (next.source.segment_idx as number));
    const after = await nextSegmentAfter(c, c.find((m) => m === next.start)?.seq as number);
    expect(after.source).toMatchObject({ source: 'curated', seed_prompt_index: seedsBefore.length });
    expect(after.start.prompt).toBe(LEGO[seedsBefore.length]);
  });

  it('with enhancement: prompt_enhancing, prompt_ready user_enhanced with the LLM text, generated next', async () => {
    const enhanced = 'A crimson kite climbs above a steel station in golden light';
    await serveWithLlm((call) => (operation(call) === 'enhance' && call.user.includes(TYPED) ? { content: enhanced } : { status: 500 }), realtime());
    const c = await open(webInit({ enhancement_enabled: true }));
    await appendDuringSegment(c, 'kite-2');
    const ready = await c.waitForMatch((m) => m.type === 'prompt_ready' || m.type === 'prompt_fallback_used', 'prompt_ready');
    expect(ready.message).toMatchObject({ type: 'prompt_ready', prompt_id: 'kite-2', prompt: enhanced, source: 'user_enhanced' });
    expect(typeof ready.message.latency_ms).toBe('number');
    expectInOrder(c, [(m) => m.type === 'prompt_received' && m.prompt_id === 'kite-2', (m) => m.type === 'prompt_enhancing' && m.prompt_id === 'kite-2', (m) => m.type === 'prompt_ready']);
    const next = await nextSegmentAfter(c, ready.seq);
    expect(next.source).toMatchObject({ source: 'user_enhanced', prompt_id: 'kite-2' });
    expect(next.start).toMatchObject({ prompt: enhanced, source: 'user_enhanced' });
    // Seed prompts are generated as curated, not enhanced.
    expect(promptOf(segmentAt(c, 0, 1))).toBe(LEGO[0]);
  });

  it('with the LLM failing: prompt_fallback_used, and the raw prompt is still generated', async () => {
    await serveWithLlm(() => ({ status: 500 }), realtime());
    const c = await open(webInit({ enhancement_enabled: true }));
    await appendDuringSegment(c, 'kite-3');
    const fallback = await c.waitForMatch((m) => m.type === 'prompt_fallback_used' || m.type === 'prompt_ready', 'prompt_fallback_used');
    expect(fallback.message).toMatchObject({ type: 'prompt_fallback_used', prompt_id: 'kite-3', prompt: TYPED, source: 'user_raw' });
    expect(typeof fallback.message.error).toBe('string');
    expect(typeof fallback.message.latency_ms).toBe('number');
    expectInOrder(c, [(m) => m.type === 'prompt_received' && m.prompt_id === 'kite-3', (m) => m.type === 'prompt_enhancing' && m.prompt_id === 'kite-3', 'prompt_fallback_used']);
    const next = await nextSegmentAfter(c, fallback.seq);
    expect(next.source).toMatchObject({ source: 'user_raw', prompt_id: 'kite-3' });
    expect(next.start).toMatchObject({ prompt: TYPED, source: 'user_raw' });
  });

  it('says prompt_sources_blocked once when the seeds run out, and prompt_sources_resumed when a prompt arrives', async () => {
    await serve();
    const c = await open(webInit({ curated_prompts: ['a dune at noon', 'a dune at dusk'], enhancement_enabled: false }));
    const blocked = await c.waitFor('prompt_sources_blocked');
    expect(blocked).toMatchObject({ segment_idx: 3 });
    await idleBetweenSegments(c);
    c.send({ type: 'append_prompt', prompt: 'a dune at night', prompt_id: 'dune-3' });
    const resumed = await c.waitFor('prompt_sources_resumed');
    expect(resumed).toMatchObject({ segment_idx: 3, source: 'user_raw', prompt_id: 'dune-3' });
    await c.waitFor('ltx2_segment_complete', 3);
    expect(promptOf(segmentAt(c, 0, 3))).toBe('a dune at night');
    // Once per drain: one notice while it waited, then (drained again) one for segment 4.
    const resumedSeq = c.seqOf('prompt_sources_resumed');
    expect(c.framesOfType('prompt_sources_blocked').filter((f) => f.seq < resumedSeq)).toHaveLength(1);
    expect((await c.waitFor('prompt_sources_blocked', 2)).segment_idx).toBe(4);
    await sleep(300);
    expect(c.ofType('prompt_sources_blocked')).toHaveLength(2);
  });
});

describe('single clips', () => {
  it('single_clip_mode and simple_generate: ltx2_stream_start, one segment 1, ltx2_stream_complete, each time', async () => {
    await serve();
    const c = await open(webInit({ single_clip_mode: true, curated_prompts: ['a lighthouse at dusk'], enhancement_enabled: false }));
    await c.waitFor('ltx2_stream_complete');
    c.send({ type: 'simple_generate', prompt: 'a harbor at dawn', prompt_id: 'clip-2', enhancement_enabled: false });
    await c.waitFor('ltx2_stream_complete', 2);
    c.send({ type: 'simple_generate', prompt: 'gulls over the pier', prompt_id: 'clip-3', enhancement_enabled: false });
    await c.waitFor('ltx2_stream_complete', 3);
    await sleep(300); // idle after each clip: nothing else starts
    const streams = c.streams();
    expect(streams).toHaveLength(3);
    expect(streams.map((s) => s.segments.map((seg) => [seg.segmentIdx, promptOf(seg), seg.messages.ltx2_segment_complete !== undefined]))).toEqual([
      [[1, 'a lighthouse at dusk', true]],
      [[1, 'a harbor at dawn', true]],
      [[1, 'gulls over the pier', true]],
    ]);
    for (const s of streams) expect(s.complete).toBeDefined();
    expect(streams[1]?.start).toMatchObject({ loop_generation_enabled: false });
  });

  it('simple_generate during a preset stream: that stream ends, then a stream of one fresh segment 1, then idle', async () => {
    await serve(realtime());
    const c = await open(webInit({ enhancement_enabled: false, loop_generation_enabled: true }));
    await c.waitFor('ltx2_segment_start');
    c.send({ type: 'simple_generate', prompt: 'a harbor at dawn', prompt_id: 'clip-1', enhancement_enabled: false });
    const clip = await c.waitForMatch((m) => m.type === 'ltx2_segment_start' && m.prompt === 'a harbor at dawn', 'the clip');
    await c.waitForMatch((m) => m.type === 'ltx2_stream_complete', 'the end of the clip stream', clip.seq);
    await sleep(1100); // a realtime segment's worth: nothing else starts
    const streams = c.streams();
    expect(streams.length).toBeGreaterThanOrEqual(2);
    const last = streams.at(-1);
    expect(last?.segments.map((s) => [s.segmentIdx, promptOf(s), sourceOf(s).prompt_id])).toEqual([[1, 'a harbor at dawn', 'clip-1']]);
    expect(last?.start).toMatchObject({ loop_generation_enabled: false });
    expect(last?.complete).toBeDefined();
    // Fresh: not continued from the preset stream's frames.
    const probe = await probeMedia(c.mediaOf(last?.segments[0]?.streamId as string), 192, 112);
    expect(probe.frameIndices[0]).toBe(0);
  });
});

describe('cap, pause, loop, reset', () => {
  it('ends the stream at the cap with segment_cap, keeps the connection, and restart_generation starts again from seed 0', async () => {
    await serve({ streaming: { generation_segment_cap: 2 } });
    const c = await open(webInit({ enhancement_enabled: false }));
    expect(await c.waitFor('ltx2_stream_complete')).toMatchObject({ reason: 'segment_cap' });
    expect(c.streams()[0]?.segments.map((s) => [s.segmentIdx, sourceOf(s).seed_prompt_index])).toEqual([
      [1, 0],
      [2, 1],
    ]);
    await sleep(300);
    expect(c.isOpen).toBe(true);
    expect(c.ofType('ltx2_segment_start')).toHaveLength(2);

    c.send({ type: 'restart_generation' });
    expect(await c.waitFor('generation_restarted')).toMatchObject({ reason: 'cap_restart', segment_cap: 2 });
    expectInOrder(c, ['generation_restarted', 'ltx2_stream_start'], c.seqOf('ltx2_stream_complete'));
    expect(await c.waitFor('ltx2_stream_complete', 2)).toMatchObject({ reason: 'segment_cap' });
    expect(c.streams()[1]?.segments.map((s) => [s.segmentIdx, promptOf(s), sourceOf(s).source, sourceOf(s).seed_prompt_index])).toEqual([
      [1, LEGO[0], 'curated', 0],
      [2, LEGO[1], 'curated', 1],
    ]);
  });

  it('set_generation_paused: echoed, the running segment finishes, nothing new starts until unpaused', async () => {
    await serve();
    const c = await open(webInit({ enhancement_enabled: false }));
    await c.waitFor('ltx2_segment_start');
    c.send({ type: 'set_generation_paused', paused: true });
    const echo = await c.waitForMatch((m) => m.type === 'generation_paused_updated' && m.paused === true, 'the pause echo');
    await idleBetweenSegments(c);
    await sleep(1000); // several fast segments' worth
    expect(c.find((m) => m.type === 'segment_prompt_source' || m.type === 'ltx2_segment_start', echo.seq + 1)).toBeUndefined();
    const done = c.ofType('segment_prompt_source').length;

    c.send({ type: 'set_generation_paused', paused: false });
    const resume = await c.waitForMatch((m) => m.type === 'generation_paused_updated' && m.paused === false, 'the resume echo', echo.seq + 1);
    const next = await c.waitForMatch((m) => m.type === 'segment_prompt_source', 'a segment after resuming', resume.seq);
    expect(next.message).toMatchObject({ source: 'curated', seed_prompt_index: done, segment_idx: done + 1 });
  });

  it('loops: ltx2_stream_complete loop_restart, ltx2_stream_start, loop_restarted, then seed 0 again', async () => {
    await serve({ streaming: { generation_segment_cap: 5 } });
    const c = await open(webInit({ curated_prompts: ['a fox runs', 'a fox rests'], loop_generation_enabled: true, enhancement_enabled: false }));
    const restarted = await c.waitFor('loop_restarted');
    const afterRestart = c.seqOf('loop_restarted');
    await c.waitForMatch((m) => m.type === 'ltx2_segment_start', 'segment 1 of the loop', afterRestart);
    expect(c.ofType('loop_generation_updated')[0]).toMatchObject({ enabled: true });
    const [first, second] = c.streams();
    expect(first?.start).toMatchObject({ loop_generation_enabled: true });
    expect(first?.segments.map((s) => [s.segmentIdx, promptOf(s), sourceOf(s).seed_prompt_index])).toEqual([
      [1, 'a fox runs', 0],
      [2, 'a fox rests', 1],
    ]);
    expect(first?.complete).toMatchObject({ reason: 'loop_restart' });
    expectInOrder(c, [(m) => m.type === 'ltx2_stream_complete' && m.reason === 'loop_restart', 'ltx2_stream_start', 'loop_restarted', 'segment_prompt_source']);
    const iteration = (first?.start.loop_iteration as number) + 1;
    expect(restarted).toMatchObject({ loop_iteration: iteration });
    expect(second?.start).toMatchObject({ loop_iteration: iteration, loop_generation_enabled: true });
    const again = segmentAt(c, 1, 1);
    expect(promptOf(again)).toBe('a fox runs');
    expect(sourceOf(again)).toMatchObject({ source: 'curated', seed_prompt_index: 0, loop_iteration: iteration });
  });

  it('reset_to_seed_prompts: seed_prompts_reset_pending, then at the next boundary a new stream from seed 0', async () => {
    await serve(realtime());
    const c = await open(webInit({ enhancement_enabled: false }));
    await c.waitFor('ltx2_segment_start');
    c.send({ type: 'reset_to_seed_prompts' });
    expect(await c.waitFor('seed_prompts_reset_pending')).toMatchObject({ seed_prompt_count: 6 });
    await c.waitFor('ltx2_stream_start', 2);
    const second = c.framesOfType('ltx2_stream_start')[1]?.seq as number;
    await c.waitForMatch((m) => m.type === 'ltx2_segment_start', 'segment 1 after the reset', second);
    expect(c.find((m) => m.type === 'seed_prompts_reset_applied', second)).toBeDefined();
    const s = segmentAt(c, 1, 1);
    expect(promptOf(s)).toBe(LEGO[0]);
    expect(sourceOf(s)).toMatchObject({ source: 'curated', seed_prompt_index: 0 });
  });
});

describe('projects on one socket', () => {
  it('refuses project_init_v1 before project_idle; end_project_keep_session ends the stream then project_idle; a new project streams on the same worker', async () => {
    await serve(realtime());
    const c = await open(webInit({ enhancement_enabled: false }));
    await c.waitFor('ltx2_segment_start');
    c.send({ type: 'project_init_v1', ...webInit({ curated_prompts: ['too early'] }) });
    const error = await c.waitFor('error');
    expect(typeof error.message).toBe('string');
    expect(typeof error.code).toBe('string');
    expect(typeof error.retryable).toBe('boolean');
    expect(c.isOpen).toBe(true);

    c.send({ type: 'end_project_keep_session' });
    const idle = await c.waitFor('project_idle');
    expect(typeof idle.dropped_user_raw_queue).toBe('number');
    expect(typeof idle.dropped_user_ready_queue).toBe('number');
    const idleSeq = c.seqOf('project_idle');
    expect(c.seqOf('ltx2_stream_complete')).toBeGreaterThan(-1);
    expect(c.seqOf('ltx2_stream_complete')).toBeLessThan(idleSeq);

    c.send({ type: 'project_init_v1', ...webInit({ preset_id: 'second', curated_prompts: ['a new project: a canyon', 'a new project: a river'], enhancement_enabled: false }) });
    await c.waitFor('ltx2_stream_start', 2);
    await c.waitFor('ltx2_segment_complete', c.ofType('ltx2_segment_complete').length + 1);
    const s = segmentAt(c, 1, 1);
    expect(promptOf(s)).toBe('a new project: a canyon');
    expect(sourceOf(s)).toMatchObject({ source: 'curated', seed_prompt_index: 0 });
    expect(c.find((m) => m.type === 'seed_prompts_updated' && m.reason === 'init', idleSeq)?.message).toMatchObject({ prompts: ['a new project: a canyon', 'a new project: a river'] });
    // One worker all along: every gpu_assigned (the countdown restarts) names the same one.
    expect(new Set(c.ofType('gpu_assigned').map((a) => a.gpu_id)).size).toBe(1);
    expect(c.ofType('error')).toHaveLength(1);
    expect(c.streams().map((st) => st.start.preset_id)).toEqual([PRESET_ID, 'second']);
  });
});

describe('leaving and the queue', () => {
  // A 10 s realtime segment: a worker that serves the next session within 5 s of the leave was released, not finished.
  const LONG = realtime(240);

  it.each([
    ['leave', (c: DvClient) => c.leave()],
    ['a plain socket close', (c: DvClient) => c.close()],
  ])('frees the worker at once when a client leaves mid-segment (%s)', async (how, leave) => {
    await serve(LONG);
    const a = await open(webInit({ enhancement_enabled: false }));
    await a.until(() => a.frames.some((f) => f.kind === 'binary'), 'media of segment 1');
    const b = await open(webInit({ enhancement_enabled: false }));
    await b.until(() => b.ofType('queue_status').some((m) => (m.position as number) >= 1), 'b waiting');
    const leftAt = performance.now();
    leave(a);
    const assigned = await b.waitFor('gpu_assigned', 1, 9000);
    const at = b.framesOfType('gpu_assigned')[0]?.at as number;
    expect(at - leftAt).toBeLessThan(5000);
    expect(assigned).toMatchObject({ gpu_id: 0 });
    expect(a.ofType('ltx2_segment_complete')).toHaveLength(0);
    const closed = await a.waitForClose();
    if (how === 'leave') expect(closed.code).toBe(1000);
    await b.waitFor('ltx2_segment_start');
  });

  it('tells waiters their 1-based position, updates it when someone ahead leaves, and assigns the worker when it frees', async () => {
    await serve();
    const a = await open(webInit({ enhancement_enabled: false }));
    await a.waitFor('gpu_assigned');

    const b = await connect();
    const bq = await b.waitFor('queue_status');
    expect(b.frames[0]).toMatchObject({ kind: 'json', message: { type: 'queue_status' } });
    expect(bq).toMatchObject({ position: 1, total_gpus: 1, available_gpus: 0 });
    b.send({ type: 'session_init_v2', ...webInit({ enhancement_enabled: false }) });

    const c = await connect();
    await c.waitFor('queue_status');
    c.send({ type: 'session_init_v2', ...webInit({ enhancement_enabled: false }) });
    await c.until(() => c.ofType('queue_status').at(-1)?.position === 2, 'c at position 2');
    expect(c.ofType('queue_status').at(-1)).toMatchObject({ available_gpus: 0, total_gpus: 1 });
    expect(typeof c.ofType('queue_status').at(-1)?.queue_depth).toBe('number');

    b.close(); // a waiter that leaves is removed at once
    await c.until(() => c.ofType('queue_status').at(-1)?.position === 1, 'c moves up to 1');
    expect(c.ofType('gpu_assigned')).toHaveLength(0);

    a.leave();
    expect(await c.waitFor('gpu_assigned')).toMatchObject({ gpu_id: 0 });
    await c.waitFor('ltx2_stream_start');
    expect(b.ofType('gpu_assigned')).toHaveLength(0);
  });

  it('ends a wait past streaming.queue_timeout_seconds with error gpu_unavailable and close 1013', async () => {
    await serve({ streaming: { queue_timeout_seconds: 0.5 } });
    const a = await open(webInit({ enhancement_enabled: false }));
    await a.waitFor('gpu_assigned');
    const b = await open(webInit({ enhancement_enabled: false }));
    const closed = await b.waitForClose();
    expect(closed.code).toBe(1013);
    expect(b.ofType('error').at(-1)).toMatchObject({ code: 'gpu_unavailable', retryable: true });
    expect(b.ofType('gpu_assigned')).toHaveLength(0);
    expect((await server?.server.inspect())?.queueDepth).toBe(0);
  });
});

describe('toggles', () => {
  it('echoes set_enhancement, set_auto_extension, set_loop_generation and set_generation_paused', async () => {
    await serve({ streaming: { generation_segment_cap: 2 } });
    const c = await open(webInit({ enhancement_enabled: false }));
    await c.waitFor('ltx2_stream_start');
    const echo = async (message: Record<string, unknown>, reply: DvMessage): Promise<void> => {
      const from = c.frames.length;
      c.send(message);
      await c.waitForMatch((m) => m.type === reply.type && Object.entries(reply).every(([k, v]) => m[k] === v), JSON.stringify(reply), from);
    };
    await echo({ type: 'set_enhancement', enabled: true }, { type: 'enhancement_updated', enabled: true });
    await echo({ type: 'set_enhancement', enabled: false }, { type: 'enhancement_updated', enabled: false });
    await echo({ type: 'set_auto_extension', enabled: true }, { type: 'auto_extension_updated', enabled: true });
    await echo({ type: 'set_auto_extension', enabled: false }, { type: 'auto_extension_updated', enabled: false });
    await echo({ type: 'set_loop_generation', enabled: true }, { type: 'loop_generation_updated', enabled: true });
    await echo({ type: 'set_loop_generation', enabled: false }, { type: 'loop_generation_updated', enabled: false });
    await echo({ type: 'set_generation_paused', paused: true }, { type: 'generation_paused_updated', paused: true });
    await echo({ type: 'set_generation_paused', paused: false }, { type: 'generation_paused_updated', paused: false });
    expect(c.isOpen).toBe(true);
    expect(c.ofType('error')).toHaveLength(0);
  });
});

describe('auto-extension', () => {
  const SEEDS = ['a comet over the desert', 'the comet splits in two'];

  it('asks the LLM for auto_llm prompts once the seeds run out', async () => {
    let n = 0;
    await serveWithLlm((call) => (operation(call) === 'auto_extend' ? { content: `chapter ${++n}` } : { status: 500 }), { streaming: { generation_segment_cap: 4 } }, { auto_extension_timeout_ms: 10_000 });
    const c = await open(webInit({ curated_prompts: SEEDS, auto_extension_enabled: true, enhancement_enabled: false }));
    expect(await c.waitFor('ltx2_stream_complete')).toMatchObject({ reason: 'segment_cap' });
    const segments = c.streams()[0]?.segments ?? [];
    expect(segments.map((s) => sourceOf(s).source)).toEqual(['curated', 'curated', 'auto_llm', 'auto_llm']);
    expect(segments.slice(0, 2).map(promptOf)).toEqual(SEEDS);
    const auto = segments.slice(2).map(promptOf);
    for (const p of auto) expect(p).toMatch(/^chapter \d+$/);
    expect(new Set(auto).size).toBe(2);
    expect(sourceOf(segments[2] as DvSegment)).toMatchObject({ fallback_used: false });
    expect(c.ofType('auto_prompt_failed')).toHaveLength(0);
    expect(c.ofType('prompt_sources_blocked')).toHaveLength(0);
  });

  it('on LLM failure sends auto_prompt_failed and goes on with the last prompt', async () => {
    await serveWithLlm(() => ({ status: 500 }), { streaming: { generation_segment_cap: 4 } }, { auto_extension_timeout_ms: 2000 });
    const c = await open(webInit({ curated_prompts: SEEDS, auto_extension_enabled: true, enhancement_enabled: false }));
    expect(await c.waitFor('ltx2_stream_complete')).toMatchObject({ reason: 'segment_cap' });
    const failed = c.ofType('auto_prompt_failed');
    expect(failed.length).toBeGreaterThanOrEqual(1);
    expect(typeof failed[0]?.segment_idx).toBe('number');
    expect(typeof failed[0]?.latency_ms).toBe('number');
    expect(typeof failed[0]?.error).toBe('string');
    const segments = c.streams()[0]?.segments ?? [];
    expect(segments.map(promptOf)).toEqual([SEEDS[0], SEEDS[1], SEEDS[1], SEEDS[1]]);
    expect(segments.every((s) => s.messages.ltx2_segment_complete !== undefined)).toBe(true);
  });
});

describe('the safety filter', () => {
  it('refuses a blocked append_prompt with an error of reason prompt_blocked, keeps the connection and generates the next prompt', async () => {
    const blocklist = join(dir, 'blocklist.txt');
    await writeFile(blocklist, 'gore\n');
    await serve({ ...realtime(), streaming: { safety: { enabled: true, blocklist_path: blocklist } } });
    const c = await open(webInit({ enhancement_enabled: false }));
    await c.waitFor('ltx2_segment_start');
    c.send({ type: 'append_prompt', prompt: 'rivers of GORE', prompt_id: 'bad-1' });
    const error = await c.waitFor('error');
    expect(error).toMatchObject({ reason: 'prompt_blocked' });
    expect(typeof error.message).toBe('string');
    expect(typeof error.code).toBe('string');
    expect(typeof error.retryable).toBe('boolean');
    expect(c.isOpen).toBe(true);

    c.send({ type: 'append_prompt', prompt: 'a quiet river', prompt_id: 'ok-1' });
    const ready = await c.waitForMatch((m) => m.type === 'prompt_ready' && m.prompt_id === 'ok-1', 'prompt_ready ok-1');
    const next = await c.waitForMatch((m) => m.type === 'ltx2_segment_start', 'the next segment', ready.seq);
    expect(next.message).toMatchObject({ prompt: 'a quiet river', source: 'user_raw' });
    expect(c.ofType('prompt_ready').map((m) => m.prompt_id)).toEqual(['ok-1']);
    expect(c.ofType('ltx2_segment_start').some((m) => String(m.prompt).toLowerCase().includes('gore'))).toBe(false);
  });
});
