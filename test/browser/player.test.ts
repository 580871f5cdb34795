import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { buildWeb } from '../../scripts/build-web.js';
import { readFrameIndex, SyntheticGenerator, type Generator, type GenerationEvent, type SegmentRequest } from '../../src/generation/index.js';
import { FakeLlm } from '../prompts/fake-llm.js';
import { startServer, type TestServer } from '../server/harness.js';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--autoplay-policy=no-user-gesture-required',
];
const ARTIFACTS = join(process.cwd(), 'test-artifacts', 'browser');
const WIDTH = 256;
const HEIGHT = 144;
const FPS = 24;
/** Short segments: 2 s each, so a test sees a join within seconds. */
const FRAMES = 48;
/** The small server's segments: 1 s each, and a cap of 2 per session, so the cap comes within seconds. */
const SHORT_FRAMES = 24;
const SHORT_CAP = 2;
/** A prompt holding this makes the small server's generator fail, once. */
const STUMBLE = '[stumble]';
/**
 * A prompt holding this makes the small server's generator stop, once, two thirds into a
 * continued segment until the segment is cancelled: a connection can then be cut
 * mid-segment without racing the segment's end.
 */
const HOLD = '[hold]';

/** What the tests read from `window.livegenPlayer` (see web/src/model.ts). */
interface PlayerView {
  state: string;
  segments: { session: number; segmentIdx: number; complete: boolean; source?: string; prompt: string }[];
  segmentCount: { story: number; session: number };
  sessions: number;
  errors: { code: string; message: string; explanation: string; next: string; retryable: boolean }[];
  notice: { kind: string; text: string } | null;
  endReason: string | null;
  reconnect: { attempt: number } | null;
  reconnects: number;
  pendingPrompts: string[];
  initialImage: { name: string; mime: string; bytes: number; width: number; height: number } | null;
  ttffMs: number | null;
  playingMs: number | null;
  queue: { position: number; queue_depth: number } | null;
  lastSnapshot: { kind: string; payload: Record<string, unknown> } | null;
  resumedFrom: { kind: string; payload: Record<string, unknown> } | null;
  timeline: Record<string, number>;
  mse: {
    stalls: { atS: number; ms: number }[];
    gapJumps: { atS: number; toS: number }[];
    evictions: number;
    discards: number;
    segmentsAppended: number;
    bufferedStartS: number;
  } | null;
}
interface VideoView {
  currentTime: number;
  readyState: number;
  paused: boolean;
  ended: boolean;
  videoWidth: number;
  videoHeight: number;
  error: { code: number; message: string } | null;
}
/** The page's globals, typed by shape: the test project has no DOM types. */
interface PageGlobals {
  livegenPlayer: PlayerView;
  document: { getElementById(id: string): unknown; createElement(tag: 'canvas'): CanvasView };
  setInterval(fn: () => void, ms: number): number;
  __samples?: { wall: number; t: number }[];
  /** The video element's last events (see recordMediaEvents). */
  __mediaEvents?: string[];
}
/** The element, as recordMediaEvents and describePlayback read it. */
interface MediaView extends VideoView {
  duration: number;
  seeking: boolean;
  buffered: { length: number; start(i: number): number; end(i: number): number };
  addEventListener(type: string, listener: () => void): void;
}
/** What cutHoleAhead sees of the page, and what it leaves there. */
interface HoleGlobals {
  MediaSource: { prototype: { addSourceBuffer(mime: string): SourceBufferView } };
  document: { getElementById(id: string): unknown };
  /** The hole cut, once it is. */
  __hole?: { fromS: number; toS: number };
  /** Each segment start seen: the end of the media then, and the playhead. */
  __joins?: { endS: number; playheadS: number }[];
}
interface SourceBufferView {
  buffered: { length: number; end(i: number): number };
  appendBuffer(data: Uint8Array): void;
  remove(start: number, end: number): void;
  addEventListener(type: string, listener: () => void): void;
}
/** A frame on screen: the playhead's time and the index drawn into the frame, read together. */
interface Frame {
  t: number;
  index: number | null;
}
interface CanvasView {
  width: number;
  height: number;
  getContext(kind: '2d'): { drawImage(v: unknown, x: number, y: number): void; getImageData(x: number, y: number, w: number, h: number): { data: ArrayLike<number> } };
}

/**
 * The small server's generator: the synthetic one, except that the first segment whose
 * prompt holds STUMBLE fails (a retryable worker_failed), as a GPU that falls over once,
 * and the first continued segment whose prompt holds HOLD stops mid-way until cancelled.
 */
class StumblingGenerator implements Generator {
  private readonly inner = new SyntheticGenerator({ pace: 'realtime', stepMs: 0 });
  readonly modelId = 'test/stumbling-synthetic';
  readonly audio = this.inner.audio;
  readonly continuationKind = this.inner.continuationKind;
  private stumbled = false;
  private held = false;

  checkContinuation(state: Parameters<SyntheticGenerator['checkContinuation']>[0]): string | undefined {
    return this.inner.checkContinuation(state);
  }

  async *generate(request: SegmentRequest, signal: AbortSignal): AsyncGenerator<GenerationEvent> {
    if (request.prompt.includes(STUMBLE) && !this.stumbled) {
      this.stumbled = true;
      throw new Error('the GPU fell over (test)');
    }
    if (request.prompt.includes(HOLD) && request.continuationState && !this.held) {
      this.held = true;
      yield* this.holdMidway(request, signal);
      return;
    }
    yield* this.inner.generate(request, signal);
  }

  private async *holdMidway(request: SegmentRequest, signal: AbortSignal): AsyncGenerator<GenerationEvent> {
    let frames = 0;
    for await (const event of this.inner.generate(request, signal)) {
      yield event;
      if (event.type === 'video' && ++frames === Math.floor((request.numFrames * 2) / 3)) break;
    }
    // Until the session cancels the segment (its client left); a minute at most, so a test
    // that never cancels fails on its own wait rather than leaving a worker busy for good.
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 60_000);
      signal.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true });
    });
    if (!signal.aborted) throw new Error('a held segment was never cancelled (test)');
  }
}

/** A TCP relay in front of a server, whose connections a test can cut (the browser sees close 1006). */
class Relay {
  private constructor(
    private readonly listener: Server,
    private readonly pairs: Set<[Socket, Socket]>,
  ) {}

  static async open(target: TestServer): Promise<Relay> {
    const { port, hostname } = new URL(target.url);
    const pairs = new Set<[Socket, Socket]>();
    const listener = createServer((downstream) => {
      const upstream = connect(Number(port), hostname);
      const pair: [Socket, Socket] = [downstream, upstream];
      pairs.add(pair);
      const drop = (): void => {
        pairs.delete(pair);
        downstream.destroy();
        upstream.destroy();
      };
      downstream.on('error', drop).on('close', drop);
      upstream.on('error', drop).on('close', drop);
      downstream.pipe(upstream);
      upstream.pipe(downstream);
    });
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
    return new Relay(listener, pairs);
  }

  get wsUrl(): string {
    return `ws://127.0.0.1:${(this.listener.address() as { port: number }).port}/v1/stream`;
  }

  /** Cuts every relayed connection at once, with no WebSocket close frame either way. */
  cut(): number {
    const count = this.pairs.size;
    for (const [downstream, upstream] of [...this.pairs]) {
      downstream.resetAndDestroy();
      upstream.destroy();
    }
    this.pairs.clear();
    return count;
  }

  close(): Promise<void> {
    this.cut();
    return new Promise((resolve) => this.listener.close(() => resolve()));
  }
}

let server: TestServer;
/** 1-second segments, cap 2, the stumbling generator. */
let small: TestServer;
let context: BrowserContext;
let webRoot: string;
let profileDir: string;
const pages: Page[] = [];
const pageProblems = new Map<Page, string[]>();

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `Chromium is not installed at ${CHROMIUM}; the browser tests need it. Install it with \`apt-get install -y chromium\` (npm test does this through scripts/ensure-deps.sh).`,
    );
  }
  await mkdir(ARTIFACTS, { recursive: true });
  webRoot = await mkdtemp(join(tmpdir(), 'livegen-web-'));
  await buildWeb({ outDir: webRoot });
  server = await startServer(
    {
      pool: { workers: 1 },
      generator: { synthetic: { pace: 'realtime' } },
      default_request: { sampling: { width: WIDTH, height: HEIGHT, fps: FPS, num_frames: FRAMES } },
    },
    { webRoot },
  );
  small = await startServer(
    {
      pool: { workers: 1 },
      streaming: { generation_segment_cap: SHORT_CAP },
      default_request: { sampling: { width: WIDTH, height: HEIGHT, fps: FPS, num_frames: SHORT_FRAMES } },
    },
    { webRoot, generators: [new StumblingGenerator()] },
  );
  profileDir = await mkdtemp(join(tmpdir(), 'livegen-chromium-'));
  context = await chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    acceptDownloads: true,
    viewport: { width: 1200, height: 900 },
  });
  await context.addInitScript(recordMediaEvents, MEDIA_EVENTS);
}, 60_000);

afterAll(async () => {
  await context?.close();
  await server?.close();
  await small?.close();
  if (profileDir) await rm(profileDir, { recursive: true, force: true });
  if (webRoot) await rm(webRoot, { recursive: true, force: true });
});

afterEach(async () => {
  for (const page of pages.splice(0)) {
    expect(pageProblems.get(page), 'page errors').toEqual([]);
    await page.close();
  }
  // The next test needs the only worker free again.
  await vi.waitFor(async () => expect(await server.sessionCount()).toBe(0), { timeout: 10_000 });
  await vi.waitFor(async () => expect(await small.sessionCount()).toBe(0), { timeout: 10_000 });
});

/** `setup` runs before the page loads (an init script of its own). */
async function openPlayer(query = '', on: TestServer = server, setup?: (page: Page) => Promise<unknown>): Promise<Page> {
  const page = await context.newPage();
  await setup?.(page);
  const problems: string[] = [];
  pages.push(page);
  pageProblems.set(page, problems);
  page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error') problems.push(`console: ${msg.text()}`);
  });
  await page.goto(`${on.url}/${query}`);
  await page.waitForFunction(() => 'livegenPlayer' in globalThis);
  return page;
}

function player(page: Page): Promise<PlayerView> {
  return page.evaluate(() => {
    const p = (globalThis as unknown as PageGlobals).livegenPlayer;
    return {
      state: p.state,
      segments: p.segments,
      segmentCount: p.segmentCount,
      sessions: p.sessions,
      errors: p.errors,
      notice: p.notice,
      endReason: p.endReason,
      reconnect: p.reconnect,
      reconnects: p.reconnects,
      pendingPrompts: p.pendingPrompts,
      initialImage: p.initialImage,
      ttffMs: p.ttffMs,
      playingMs: p.playingMs,
      queue: p.queue,
      lastSnapshot: p.lastSnapshot,
      resumedFrom: p.resumedFrom,
      timeline: p.timeline,
      mse: p.mse,
    };
  });
}

function video(page: Page): Promise<VideoView> {
  return page.evaluate(() => {
    const v = (globalThis as unknown as PageGlobals).document.getElementById('video') as VideoView;
    return {
      currentTime: v.currentTime,
      readyState: v.readyState,
      paused: v.paused,
      ended: v.ended,
      videoWidth: v.videoWidth,
      videoHeight: v.videoHeight,
      error: v.error && { code: v.error.code, message: v.error.message },
    };
  });
}

async function waitForState(page: Page, state: string, timeout = 15_000): Promise<void> {
  await page.waitForFunction((s) => (globalThis as unknown as PageGlobals).livegenPlayer.state === s, state, { timeout });
}

async function waitForPlayback(page: Page, seconds: number, timeout = 20_000): Promise<void> {
  await explained(
    page,
    page.waitForFunction((t) => ((globalThis as unknown as PageGlobals).document.getElementById('video') as VideoView).currentTime > t, seconds, { timeout }),
  );
}

/** The video element's events the pages record, for a failure to say what playback did. */
const MEDIA_EVENTS = ['play', 'playing', 'waiting', 'pause', 'ended', 'seeking', 'seeked', 'stalled', 'durationchange', 'emptied', 'error'];

/** An init script: keeps the video element's last events, each with the playhead, duration and buffered ranges then. */
function recordMediaEvents(types: string[]): void {
  const g = globalThis as unknown as PageGlobals & { addEventListener(type: string, listener: () => void): void };
  const log: string[] = (g.__mediaEvents = []);
  g.addEventListener('DOMContentLoaded', () => {
    const v = g.document.getElementById('video') as MediaView | null;
    if (!v) return;
    const started = performance.now();
    for (const type of types) {
      v.addEventListener(type, () => {
        const ranges: string[] = [];
        for (let i = 0; i < v.buffered.length; i++) ranges.push(`${v.buffered.start(i).toFixed(3)}-${v.buffered.end(i).toFixed(3)}`);
        const flags = `${v.paused ? ' paused' : ''}${v.ended ? ' ended' : ''}`;
        log.push(`${Math.round(performance.now() - started)} ms ${type}: t=${v.currentTime.toFixed(3)} duration=${v.duration.toFixed(3)} readyState=${v.readyState}${flags} buffered=[${ranges.join(', ')}]`);
        if (log.length > 60) log.shift();
      });
    }
  });
}

/**
 * An init script: cuts a hole of `gapS` seconds into the media just before a segment's
 * start, while the playhead is still well before it; `__hole` says where. The segment
 * begins with a keyframe, so nothing past the hole depends on what was removed.
 */
function cutHoleAhead(gapS: number): void {
  const g = globalThis as unknown as HoleGlobals;
  const joins: { endS: number; playheadS: number }[] = (g.__joins = []);
  const playhead = (): number => (g.document.getElementById('video') as VideoView).currentTime;
  const addSourceBuffer = g.MediaSource.prototype.addSourceBuffer;
  g.MediaSource.prototype.addSourceBuffer = function (this: unknown, mime: string): SourceBufferView {
    const buffer = addSourceBuffer.call(this, mime);
    const appendBuffer = buffer.appendBuffer.bind(buffer);
    buffer.appendBuffer = (data) => {
      // An init segment (its first box is `ftyp`) begins the next segment where the media so far ends.
      const buffered = buffer.buffered;
      if (data[4] === 0x66 && data[5] === 0x74 && data[6] === 0x79 && data[7] === 0x70 && buffered.length > 0) {
        joins.push({ endS: buffered.end(buffered.length - 1), playheadS: playhead() });
      }
      appendBuffer(data);
    };
    // Listening before the player does: the buffer is idle here, and the player waits for the remove.
    buffer.addEventListener('updateend', () => {
      if (g.__hole) return;
      // Not too close to the playhead: it must still be playing towards the hole.
      const join = joins.find((j) => playhead() < j.endS - gapS - 0.5);
      if (!join) return;
      g.__hole = { fromS: join.endS - gapS, toS: join.endS };
      buffer.remove(join.endS - gapS, join.endS);
    });
    return buffer;
  };
}

/** Playback now, for a failure message: the element, its buffered ranges, the player's state and MSE stats, the element's last events. */
async function describePlayback(page: Page): Promise<string> {
  const now = await page.evaluate(() => {
    const g = globalThis as unknown as PageGlobals;
    const v = g.document.getElementById('video') as MediaView;
    const ranges: string[] = [];
    for (let i = 0; i < v.buffered.length; i++) ranges.push(`${v.buffered.start(i).toFixed(3)}-${v.buffered.end(i).toFixed(3)}`);
    const p = g.livegenPlayer;
    return {
      video: { currentTime: v.currentTime, duration: v.duration, paused: v.paused, ended: v.ended, seeking: v.seeking, readyState: v.readyState, buffered: ranges.join(', ') },
      player: { state: p.state, sessions: p.sessions, endReason: p.endReason, errors: p.errors.map((e) => `${e.code}: ${e.message}`), mse: p.mse },
      events: g.__mediaEvents ?? [],
    };
  });
  return [`video: ${JSON.stringify(now.video)}`, `player: ${JSON.stringify(now.player)}`, 'video events:', ...now.events.map((e) => `  ${e}`)].join('\n');
}

/** Awaits `action`; a failure carries what playback looked like then (and what `more` says). */
async function explained<T>(page: Page, action: Promise<T>, more?: () => Promise<string>): Promise<T> {
  try {
    return await action;
  } catch (err) {
    const unavailable = (e: unknown): string => `(unavailable: ${String(e)})`;
    const playback = await describePlayback(page).catch(unavailable);
    const extra = more ? `\n${await more().catch(unavailable)}` : '';
    if (err instanceof Error) err.message += `\n${playback}${extra}`;
    throw err;
  }
}

/** The index drawn into the frame on screen now (the synthetic generator's strip). */
async function frameIndexOnScreen(page: Page): Promise<number | null> {
  return (await frameOnScreen(page)).index;
}

/** The frame on screen: its index and the playhead's time, read together. */
async function frameOnScreen(page: Page): Promise<Frame> {
  const { t, rgba } = await page.evaluate(() => {
    const g = globalThis as unknown as PageGlobals;
    const v = g.document.getElementById('video') as VideoView;
    const canvas = g.document.createElement('canvas');
    canvas.width = v.videoWidth;
    canvas.height = v.videoHeight;
    const ctx = canvas.getContext('2d');
    ctx.drawImage(v, 0, 0);
    return { t: v.currentTime, rgba: Array.from(ctx.getImageData(0, 0, v.videoWidth, v.videoHeight).data) };
  });
  const rgb = Buffer.alloc(WIDTH * HEIGHT * 3);
  for (let i = 0, o = 0; i < rgba.length; i += 4, o += 3) {
    rgb[o] = rgba[i]!;
    rgb[o + 1] = rgba[i + 1]!;
    rgb[o + 2] = rgba[i + 2]!;
  }
  return { t, index: readFrameIndex(rgb, WIDTH, HEIGHT) };
}

/**
 * The first frame on screen whose index is at least `index`. Read until one is: under load
 * the compositor may show a frame a little after the playhead reached it, so one read just
 * after the playhead passed a point can still show the frame before it.
 */
async function waitForFrame(page: Page, index: number, timeout = 10_000): Promise<Frame> {
  let last: Frame = { t: Number.NaN, index: null };
  await explained(
    page,
    vi.waitFor(
      async () => {
        last = await frameOnScreen(page);
        expect(last.index, `frame on screen at ${last.t.toFixed(3)} s`).toBeGreaterThanOrEqual(index);
      },
      { timeout, interval: 100 },
    ),
  );
  return last;
}

/** Samples the playhead every 50 ms into `__samples`, from now on. */
async function samplePlayhead(page: Page): Promise<void> {
  await page.evaluate(() => {
    const g = globalThis as unknown as PageGlobals;
    const v = g.document.getElementById('video') as VideoView;
    g.__samples = [];
    g.setInterval(() => g.__samples!.push({ wall: performance.now(), t: v.currentTime }), 50);
  });
}

async function playheadSamples(page: Page): Promise<{ wall: number; t: number }[]> {
  return page.evaluate(() => (globalThis as unknown as PageGlobals).__samples!);
}

/**
 * Frame continuity on the page's one timeline: a frame read later carries the index the
 * elapsed media time says, within a few frames (the read and the playhead are not atomic,
 * and each join may leave a few ms of audio padding).
 */
function expectContinuous(early: Frame, late: Frame): void {
  expect(early.index).not.toBeNull();
  expect(late.index).not.toBeNull();
  const expected = early.index! + (late.t - early.t) * FPS;
  expect(Math.abs(late.index! - expected), `frame ${late.index} at ${late.t.toFixed(3)} s; from frame ${early.index} at ${early.t.toFixed(3)} s expected ${expected.toFixed(1)}`).toBeLessThanOrEqual(3);
}

async function waitForPlayer(page: Page, predicate: string, timeout = 15_000): Promise<void> {
  // `p` is window.livegenPlayer inside the predicate.
  await explained(page, page.waitForFunction(`(() => { const p = globalThis.livegenPlayer; return ${predicate}; })()`, undefined, { timeout }));
}

async function screenshot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
}

// Real-time media on a shared 2-core machine: give each test room beyond the 30 s default.
describe('the player page in Chromium', { timeout: 60_000 }, () => {
  it('loads with its controls, the curated prompts and no errors', async () => {
    const page = await openPlayer();
    expect(await page.title()).toBe('livegen player');
    for (const id of ['prompt', 'start', 'leave', 'continue', 'toggle-pause', 'toggle-loop', 'toggle-auto', 'download-state', 'state-file', 'image-file', 'video']) {
      expect(await page.locator(`#${id}`).count(), id).toBe(1);
    }
    // Continuing is the default: the story goes on until Stop, pause or the cap.
    expect(await page.locator('#toggle-auto').isChecked()).toBe(true);
    expect(await page.locator('#continue').isHidden()).toBe(true);
    expect(await page.locator('[data-testid="curated-item"]').count()).toBeGreaterThan(0);
    expect(await page.locator('#status').getAttribute('data-state')).toBe('idle');
    expect(await page.locator('#leave').isDisabled()).toBe(true);
    await screenshot(page, 'loaded');
  });

  it('starts a session and plays: currentTime passes 1 s with readyState >= 3 and no MSE error', async () => {
    const page = await openPlayer();
    await page.click('#start');
    await waitForState(page, 'active');
    await waitForPlayback(page, 1);
    const v = await video(page);
    const p = await player(page);
    expect(v.readyState).toBeGreaterThanOrEqual(3);
    expect(v.error).toBeNull();
    expect([v.videoWidth, v.videoHeight]).toEqual([WIDTH, HEIGHT]);
    expect(p.errors).toEqual([]);
    expect(p.ttffMs).toBeGreaterThan(0);
    const milestones = Object.entries(p.timeline).map(([k, t]) => `${k} ${Math.round(t)}`);
    console.log(`time to first frame ${Math.round(p.ttffMs!)} ms (ms since Start: ${milestones.join(', ')})`);
    expect(await page.locator('#ttff').textContent()).toMatch(/ms/);
    await screenshot(page, 'playing');
    await page.click('#leave');
    await waitForState(page, 'ended');
  });

  it('keeps the story going by itself (no toggle touched): past segment joins without a stall, a prompt typed while it plays runs next', async () => {
    // keepBehind=1: keep 1 s behind the playhead, so eviction shows within a few seconds.
    const page = await openPlayer('?keepBehind=1');
    await samplePlayhead(page);
    const first = await page.inputValue('#prompt');
    await page.click('#start');
    await waitForState(page, 'active');
    // The prompt box stays usable: Enter sends the new prompt, which runs next.
    const next = 'the boat turns into a canal lit by lanterns';
    await page.fill('#prompt', next);
    await page.press('#prompt', 'Enter');
    expect(await page.locator('#pending-prompts').textContent()).toContain(next);
    // Three segments complete (the third by auto-extension) without anything being ticked.
    await waitForPlayer(page, 'p.segments.filter((s) => s.complete).length >= 3', 30_000);
    const samples = await playheadSamples(page);
    const p = await player(page);
    const v = await video(page);
    await screenshot(page, 'continuous');

    expect(p.errors).toEqual([]);
    expect(v.error).toBeNull();
    expect(p.state).toBe('active');
    expect(p.segments.slice(0, 3).map((s) => [s.prompt, s.source])).toEqual([
      [first, 'user'],
      [next, 'user'],
      [next, 'auto_extension'],
    ]);
    expect(p.pendingPrompts).toEqual([]);
    expect(p.segmentCount.story).toBeGreaterThanOrEqual(3);
    expect(await page.locator('#segment-count').textContent()).toMatch(/^[3-9] done/);
    expect(p.mse?.segmentsAppended).toBeGreaterThanOrEqual(3);
    // Once playing, the playhead never stands still for more than 0.5 s, at the joins or elsewhere.
    const started = samples.findIndex((s) => s.t > 0);
    let stillSince = samples[started]!;
    let longestStillMs = 0;
    for (const s of samples.slice(started + 1)) {
      expect(s.t).toBeGreaterThanOrEqual(stillSince.t);
      if (s.t > stillSince.t) stillSince = s;
      else longestStillMs = Math.max(longestStillMs, s.wall - stillSince.wall);
    }
    expect(longestStillMs, `stalls: ${JSON.stringify(p.mse?.stalls)}`).toBeLessThan(500);
    expect(p.mse?.stalls.filter((s) => s.ms > 500)).toEqual([]);
    // Bounded buffer: media more than ~1 s behind the playhead was removed.
    expect(p.mse?.evictions).toBeGreaterThan(0);
    expect(p.mse?.bufferedStartS).toBeGreaterThan(0);
    await page.click('#leave');
    await waitForState(page, 'ended');
    expect((await player(page)).endReason).toBe('left');
  });

  it('shows a second tab its queue position while the first holds the only worker', async () => {
    const first = await openPlayer();
    await first.click('#start');
    await waitForState(first, 'active');

    const second = await openPlayer();
    await second.click('#start');
    await waitForState(second, 'queued');
    const queue = second.locator('#queue-position');
    await expect.poll(() => queue.getAttribute('data-position')).toBe('0');
    expect(await queue.textContent()).toContain('position 0 of 1');
    expect((await player(second)).queue).toEqual({ type: 'queue_status', position: 0, queue_depth: 1 });
    await screenshot(second, 'queued');

    // The first leaves: the second gets the worker and plays.
    await first.click('#leave');
    await waitForState(second, 'active');
    await waitForPlayback(second, 0.5);
    expect(await queue.getAttribute('data-position')).toBe('');
    await second.click('#leave');
  });

  it('resumes from a downloaded state: the new session continues at the saved frame', async () => {
    const first = await openPlayer();
    await first.click('#start');
    await first.waitForFunction(() => (globalThis as unknown as PageGlobals).livegenPlayer.lastSnapshot !== null, undefined, { timeout: 15_000 });
    const [download] = await Promise.all([first.waitForEvent('download'), first.click('#download-state')]);
    const saved = join(ARTIFACTS, 'state.json');
    await download.saveAs(saved);
    const state = JSON.parse(await readFile(saved, 'utf8')) as { kind: string; payload: { nextFrameIndex: number } };
    expect(state.kind).toBe('livegen.synthetic.v1');
    expect(state.payload.nextFrameIndex).toBe(FRAMES);
    await first.click('#leave');
    await waitForState(first, 'ended');

    const second = await openPlayer();
    await second.setInputFiles('#state-file', saved);
    await expect.poll(() => second.locator('#loaded-state').textContent()).toContain(`next frame ${FRAMES}`);
    await second.click('#start');
    await waitForState(second, 'active');
    await waitForPlayback(second, 0.5);
    // The pixels: the frame on screen carries a global index past the saved one.
    const index = await frameIndexOnScreen(second);
    expect(index).not.toBeNull();
    expect(index!).toBeGreaterThanOrEqual(FRAMES);
    expect(index!).toBeLessThan(2 * FRAMES);
    await screenshot(second, 'resumed');
    // The server's state after the resumed segment: it went on from the saved frame.
    await second.waitForFunction(
      (n) => (globalThis as unknown as PageGlobals).livegenPlayer.lastSnapshot?.payload.nextFrameIndex === n,
      2 * FRAMES,
      { timeout: 15_000 },
    );
    const p = await player(second);
    expect(p.resumedFrom?.payload.nextFrameIndex).toBe(FRAMES);
    expect(p.errors).toEqual([]);
    await second.click('#leave');
  });

  it('at the segment cap says so and offers Continue, which resumes the story on the same player', async () => {
    const page = await openPlayer('', small);
    await page.click('#start');
    await waitForPlayback(page, 0.4);
    const early = await frameOnScreen(page);
    await waitForPlayer(page, "p.state === 'ended'");
    let p = await player(page);
    expect(p.endReason).toBe('segment_cap');
    expect(p.segmentCount).toEqual({ story: SHORT_CAP, session: SHORT_CAP });
    expect(p.lastSnapshot?.payload.nextFrameIndex).toBe(SHORT_CAP * SHORT_FRAMES);
    expect(p.notice?.kind).toBe('cap');
    expect(await page.locator('#notice').textContent()).toContain(`Segment cap reached: the server ends a session after ${SHORT_CAP} segments`);
    expect(await page.locator('#segment-count').textContent()).toContain(`cap of ${SHORT_CAP} per session was reached`);
    const resume = page.locator('#continue');
    expect(await resume.isVisible()).toBe(true);
    expect(await resume.textContent()).toContain(`frame ${SHORT_CAP * SHORT_FRAMES}`);
    await screenshot(page, 'segment-cap');

    const before = await video(page);
    await samplePlayhead(page);
    await resume.click();
    await waitForState(page, 'active');
    // While the new session runs there is nothing to continue (it may reach its own cap later).
    expect(await resume.isHidden()).toBe(true);
    // Past the first session's media on the same timeline: the new session's frames follow on.
    await waitForPlayback(page, SHORT_CAP + 0.5);
    const late = await waitForFrame(page, SHORT_CAP * SHORT_FRAMES);
    p = await player(page);
    expect(p.sessions).toBe(2);
    expect(p.resumedFrom?.payload.nextFrameIndex).toBe(SHORT_CAP * SHORT_FRAMES);
    expectContinuous(early, late);
    // From where it stopped, not from the start: play() on an ended video would seek to 0.
    expect(Math.min(...(await playheadSamples(page)).map((s) => s.t)), `playhead at Continue: ${before.currentTime}`).toBeGreaterThanOrEqual(before.currentTime - 0.001);
    expect(p.segments.filter((s) => s.session === 2).length).toBeGreaterThanOrEqual(1);
    expect(p.mse?.segmentsAppended).toBeGreaterThanOrEqual(SHORT_CAP + 1);
    expect(p.errors).toEqual([]);
    expect((await video(page)).error).toBeNull();
    await screenshot(page, 'continued');
    // Stop, unless the session already ended at its own cap (a disabled button ignores the click).
    await page.locator('#leave').dispatchEvent('click');
    await waitForState(page, 'ended');
  });

  it('Continue pressed as the first session\'s media runs out: playback runs on into the new session\'s', async () => {
    // startAhead=1.2: the playhead trails the media, so the story reaches the cap before the video its end.
    const page = await openPlayer('?startAhead=1.2', small);
    await page.click('#start');
    await waitForPlayback(page, 0.4);
    const early = await frameOnScreen(page);
    await waitForPlayer(page, "p.state === 'ended'");
    // The source has ended: hold the playhead 0.1 s short of its end until the new session's
    // media comes. Prerolling there, the element reads the end of stream ahead, so once it
    // plays on it stops at the old end anyway, more media buffered past it (Chromium then
    // reports the new duration as currentTime): the user would see the picture freeze.
    await page.evaluate(async (shortS) => {
      const v = (globalThis as unknown as PageGlobals).document.getElementById('video') as MediaView & { pause(): void };
      v.pause();
      v.currentTime = v.duration - shortS;
      await new Promise<void>((resolve) => v.addEventListener('seeked', () => resolve()));
    }, 0.1);
    const before = await video(page);
    await samplePlayhead(page);
    await page.click('#continue');

    await waitForPlayback(page, SHORT_CAP + 0.5);
    const late = await waitForFrame(page, SHORT_CAP * SHORT_FRAMES);
    expectContinuous(early, late);
    const samples = await playheadSamples(page);
    expect(Math.min(...samples.map((s) => s.t)), `playhead at Continue: ${before.currentTime}`).toBeGreaterThanOrEqual(before.currentTime - 0.001);
    const p = await player(page);
    expect(p.sessions).toBe(2);
    expect(p.errors).toEqual([]);
    expect((await video(page)).error).toBeNull();
    await page.locator('#leave').dispatchEvent('click');
    await waitForState(page, 'ended');
  });

  it('jumps a small hole in the buffered media instead of waiting at it forever', async () => {
    // startAhead=3, more than a segment: playback starts after the first join, so the hole cut
    // there is ahead of the playhead however slowly the media comes.
    const page = await openPlayer('?startAhead=3', server, (p) => p.addInitScript(cutHoleAhead, 0.3));
    await page.click('#start');
    await waitForPlayback(page, 0.4);
    const early = await frameOnScreen(page);
    const hole = (await explained(
      page,
      page.waitForFunction(() => (globalThis as unknown as HoleGlobals).__hole, undefined, { timeout: 20_000 }).then((h) => h.jsonValue()),
      async () => `segment starts seen: ${JSON.stringify(await page.evaluate(() => (globalThis as unknown as HoleGlobals).__joins))}`,
    ))!;
    await waitForPlayback(page, hole.toS + 0.5);
    const late = await waitForFrame(page, early.index! + Math.ceil((hole.toS - early.t) * FPS));
    // The frames on either side of the hole keep their places on the timeline.
    expectContinuous(early, late);
    const p = await player(page);
    const jump = p.mse?.gapJumps.find((j) => j.atS >= hole.fromS - 0.25 && j.atS < hole.toS);
    expect(jump, JSON.stringify({ hole, gapJumps: p.mse?.gapJumps })).toBeDefined();
    // To the media after the hole (its range can begin a frame short of where the removal ended).
    expect(Math.abs(jump!.toS - hole.toS)).toBeLessThan(0.05);
    expect(p.errors).toEqual([]);
    expect((await video(page)).error).toBeNull();
    await page.click('#leave');
    await waitForState(page, 'ended');
  });

  it('checks an initial image before sending it: accepts PNG/JPEG/WebP by their bytes, refuses the rest with a message', async () => {
    const page = await openPlayer();
    const png = await page.screenshot({ clip: { x: 0, y: 0, width: 64, height: 48 } });
    const jpeg = await page.screenshot({ clip: { x: 0, y: 0, width: 40, height: 30 }, type: 'jpeg' });
    const info = page.locator('#image-info');

    await page.setInputFiles('#image-file', { name: 'boat.png', mimeType: 'image/png', buffer: png });
    await expect.poll(() => info.getAttribute('data-state')).toBe('accepted');
    expect(await info.textContent()).toContain('64x48');
    expect(await page.locator('#image-thumb').isVisible()).toBe(true);
    expect((await player(page)).initialImage).toMatchObject({ name: 'boat.png', mime: 'image/png', width: 64, height: 48, bytes: png.length });

    // A text file dressed as a PNG: its bytes give it away.
    await page.setInputFiles('#image-file', { name: 'notes.png', mimeType: 'image/png', buffer: Buffer.from('not an image at all\n') });
    await expect.poll(() => info.getAttribute('data-state')).toBe('refused');
    expect(await info.textContent()).toContain('notes.png (declared image/png) is not a PNG, JPEG or WebP image: it is text');
    expect(await page.locator('#image-thumb').isHidden()).toBe(true);
    expect((await player(page)).initialImage).toBeNull();

    // A PNG signature on bytes that do not decode.
    const broken = Buffer.concat([png.subarray(0, 8), Buffer.alloc(200, 7)]);
    await page.setInputFiles('#image-file', { name: 'broken.png', mimeType: 'image/png', buffer: broken });
    await expect.poll(() => info.textContent()).toContain('broken.png starts like a PNG but cannot be decoded');

    // Dropped onto the video: a JPEG named .webp is taken as the JPEG it is.
    const dataTransfer = await page.evaluateHandle(
      ({ bytes, name }) => {
        const g = globalThis as unknown as {
          DataTransfer: new () => { items: { add(file: unknown): void } };
          File: new (parts: unknown[], name: string, options: { type: string }) => unknown;
        };
        const dt = new g.DataTransfer();
        dt.items.add(new g.File([new Uint8Array(bytes)], name, { type: 'image/webp' }));
        return dt;
      },
      { bytes: [...jpeg], name: 'photo.webp' },
    );
    await page.dispatchEvent('#video', 'drop', { dataTransfer });
    await expect.poll(() => info.getAttribute('data-state')).toBe('accepted');
    const p = await player(page);
    expect(p.initialImage).toMatchObject({ name: 'photo.webp', mime: 'image/jpeg', width: 40, height: 30 });
    expect(p.errors.map((e) => e.code)).toEqual(['invalid_image', 'invalid_image']);
    await screenshot(page, 'initial-image');

    // The server takes it: the session runs, holding the image in its temp files.
    await page.click('#start');
    await waitForState(page, 'active');
    expect((await server.server.inspect()).tempBytes).toBe(jpeg.length);
    await waitForPlayback(page, 0.3);
    expect((await player(page)).errors.map((e) => e.code)).toEqual(['invalid_image', 'invalid_image']);
    await page.click('#leave');
    await waitForState(page, 'ended');
  });

  it('reconnects after a dropped connection (no close frame) and resumes from the last state, frames continuous on screen', async () => {
    const relay = await Relay.open(small);
    try {
      const page = await openPlayer(`?server=${encodeURIComponent(relay.wsUrl)}`, small);
      await page.fill('#prompt', `a kite over the dunes ${HOLD}`);
      await page.click('#start');
      await waitForPlayback(page, 0.4);
      const early = await frameOnScreen(page);
      // Cut mid-way through the second segment, after the first one's state arrived; the
      // generator holds that segment two thirds in, so the cut cannot come after its end.
      await waitForPlayer(page, `p.lastSnapshot?.payload.nextFrameIndex === ${SHORT_FRAMES} && p.segments.some((s) => s.segmentIdx === 1 && s.chunks > 2 && !s.complete)`);
      expect(relay.cut()).toBe(1);
      await waitForPlayer(page, `p.reconnects >= 1 && p.sessions === 2 && p.lastSnapshot?.payload.nextFrameIndex === ${2 * SHORT_FRAMES}`);
      const p = await player(page);
      expect(p.resumedFrom?.payload.nextFrameIndex).toBe(SHORT_FRAMES);
      expect(p.errors.map((e) => e.code)).toEqual(['connection_lost']);
      expect(p.errors[0]?.next).toContain(`the story resumes from frame ${SHORT_FRAMES}`);
      // The cut segment was made again in its place: the picture runs on with no jump.
      await waitForPlayback(page, 2.2);
      const late = await frameOnScreen(page);
      expect(late.index!).toBeGreaterThanOrEqual(2 * SHORT_FRAMES);
      expectContinuous(early, late);
      expect((await video(page)).error).toBeNull();
      await page.locator('#leave').dispatchEvent('click');
      await waitForState(page, 'ended');
    } finally {
      await relay.close();
    }
  });

  it('reconnects across a server restart (close 1001) and resumes from the state the server sent last', async () => {
    let restarting = await startServer(
      { pool: { workers: 1 }, default_request: { sampling: { width: WIDTH, height: HEIGHT, fps: FPS, num_frames: SHORT_FRAMES } } },
      { webRoot, generators: [new StumblingGenerator()] },
    );
    try {
      const port = Number(new URL(restarting.url).port);
      const page = await openPlayer(`?server=${encodeURIComponent(restarting.wsUrl)}`);
      await page.click('#start');
      await waitForPlayer(page, `p.lastSnapshot?.payload.nextFrameIndex === ${SHORT_FRAMES}`);
      await restarting.close();
      restarting = await startServer(
        { server: { port }, pool: { workers: 1 }, default_request: { sampling: { width: WIDTH, height: HEIGHT, fps: FPS, num_frames: SHORT_FRAMES } } },
        { webRoot, generators: [new StumblingGenerator()] },
      );
      await waitForPlayer(page, `p.reconnects >= 1 && p.state === 'active'`);
      let p = await player(page);
      const lost = p.errors.find((e) => e.code === 'connection_lost');
      expect(lost?.message).toContain('the server is restarting or shutting down (close 1001');
      // It resumed from the last state the old server had: a whole number of segments in.
      const from = p.resumedFrom?.payload.nextFrameIndex as number;
      expect(from % SHORT_FRAMES).toBe(0);
      expect(from).toBeGreaterThanOrEqual(SHORT_FRAMES);
      await waitForPlayer(page, `p.lastSnapshot?.payload.nextFrameIndex === ${from + SHORT_FRAMES}`);
      p = await player(page);
      expect(p.segments.find((s) => s.session === p.sessions)?.complete).toBe(true);
      await page.click('#leave');
      await waitForState(page, 'ended');
    } finally {
      await restarting.close();
    }
  });

  it('explains a retryable worker_failed, reconnects and resumes from the last good state', async () => {
    const page = await openPlayer('', small);
    await page.fill('#prompt', 'a fox crosses a frozen river');
    await page.click('#start');
    await waitForState(page, 'active');
    // The next segment's generator falls over.
    await page.fill('#prompt', `the fox slips on the ice ${STUMBLE}`);
    await page.click('#send-prompt');
    await waitForPlayer(page, "p.errors.some((e) => e.code === 'worker_failed')");
    const item = page.locator('#errors li[data-code="worker_failed"]');
    await expect.poll(() => item.textContent()).toContain('Reconnecting in');
    const text = await item.textContent();
    expect(text).toContain('The video generator failed while making a segment.');
    expect(text).toContain('The server said: “generation failed: the GPU fell over (test)”');
    expect(text).toContain(`the story resumes from frame ${SHORT_FRAMES}`);
    await screenshot(page, 'worker-failed');

    await waitForPlayer(page, `p.sessions === 2 && p.lastSnapshot?.payload.nextFrameIndex === ${2 * SHORT_FRAMES}`);
    const p = await player(page);
    expect(p.resumedFrom?.payload.nextFrameIndex).toBe(SHORT_FRAMES);
    // The resumed session made the segment that failed, with its prompt.
    expect(p.segments.find((s) => s.session === 2)?.prompt).toBe(`the fox slips on the ice ${STUMBLE}`);
    expect(p.errors.map((e) => e.code)).toEqual(['worker_failed']);
    await page.click('#leave');
    await waitForState(page, 'ended');
  });

  it('explains a refused start (invalid_message) and does not retry it', async () => {
    const page = await openPlayer();
    await page.setInputFiles('#state-file', {
      name: 'foreign.json',
      mimeType: 'application/json',
      buffer: Buffer.from(JSON.stringify({ kind: 'another.model.v1', payload: { step: 3 } })),
    });
    await page.click('#start');
    await waitForState(page, 'ended');
    const p = await player(page);
    expect(p.endReason).toBe('refused');
    expect(p.notice?.kind).toBe('error');
    expect(p.notice?.text).toContain('The server refused something this page sent');
    expect(p.notice?.text).toContain('continuation_state.kind: expected "livegen.synthetic.v1", got "another.model.v1"');
    expect(p.notice?.text).toContain('Not retried.');
    const item = page.locator('#errors li[data-code="invalid_message"]');
    expect(await item.textContent()).toContain('Not retried.');
    // No reconnect follows.
    await new Promise((resolve) => setTimeout(resolve, 1200));
    expect((await player(page)).sessions).toBe(1);
    expect(await page.locator('#continue').isHidden()).toBe(true);
    await screenshot(page, 'refused');
  });
});

/** A segment as the prompt-layer tests read it from `window.livegenPlayer.segments`. */
interface PromptSegmentView {
  session: number;
  segmentIdx: number;
  complete: boolean;
  prompt: string;
  source?: string;
  originalPrompt?: string;
  promptProvider?: string;
  promptModel?: string;
  promptLatencyMs?: number;
  fallbackUsed: boolean;
  promptError?: string;
}
interface PromptErrorView {
  code: string;
  message: string;
  explanation: string;
  next: string;
  retryable: boolean;
  reason?: string;
  prompt?: string;
}

describe('the player page with the server\'s prompt layer (a fake LLM on loopback, a blocklist)', { timeout: 60_000 }, () => {
  /** A word the server's blocklist holds (in none of the page's curated prompts). */
  const BLOCKED_WORD = 'zeppelinwreck';
  /** The fake LLM's text for a prompt: recognisably its own. */
  const enhanced = (prompt: string): string => `a cinematic wide shot of ${prompt}, soft golden light`;
  let llm: FakeLlm;
  /** The next LLM call fails with HTTP 500 while this is set. */
  let llmDown = false;
  let prompted: TestServer;
  let blocklistDir: string;

  beforeAll(async () => {
    llm = await FakeLlm.start((call) => {
      if (llmDown) return { status: 500, body: { error: { message: 'the fake LLM is down (test)' } } };
      // The prompt to improve is the user message's last line (the story so far comes before it).
      const prompt = call.user.split('\n').at(-1) ?? '';
      return { content: enhanced(prompt) };
    });
    blocklistDir = await mkdtemp(join(tmpdir(), 'livegen-blocklist-'));
    const blocklistPath = join(blocklistDir, 'blocklist.txt');
    await writeFile(blocklistPath, `${BLOCKED_WORD}\n`);
    prompted = await startServer(
      {
        pool: { workers: 1 },
        streaming: {
          prompt: { enabled: true, providers: [{ name: 'fake', base_url: llm.baseUrl, model: 'fake-model' }] },
          safety: { enabled: true, blocklist_path: blocklistPath },
        },
        default_request: { sampling: { width: WIDTH, height: HEIGHT, fps: FPS, num_frames: SHORT_FRAMES } },
      },
      { webRoot },
    );
  });

  afterEach(async () => {
    llmDown = false;
    llm.calls.splice(0);
    await vi.waitFor(async () => expect(await prompted.sessionCount()).toBe(0), { timeout: 10_000 });
  });

  afterAll(async () => {
    await prompted?.close();
    await llm?.close();
    if (blocklistDir) await rm(blocklistDir, { recursive: true, force: true });
  });

  function promptSegments(page: Page): Promise<PromptSegmentView[]> {
    return page.evaluate(() => (globalThis as unknown as { livegenPlayer: { segments: PromptSegmentView[] } }).livegenPlayer.segments);
  }

  function promptErrors(page: Page): Promise<PromptErrorView[]> {
    return page.evaluate(() => (globalThis as unknown as { livegenPlayer: { errors: PromptErrorView[] } }).livegenPlayer.errors);
  }

  /** The prompt cell of the row of one segment (session 1). */
  function promptCell(page: Page, segmentIdx: number) {
    return page.locator(`#segment-rows tr[data-session="1"][data-segment-idx="${segmentIdx}"] td.prompt`);
  }

  /** Opens the page on the prompt server with auto-extension off (every segment is one asked for) and Enhance prompts ticked. */
  async function openEnhancing(): Promise<Page> {
    const page = await openPlayer('', prompted);
    // Off by default, as on the server.
    expect(await page.locator('#toggle-enhance').isChecked()).toBe(false);
    await page.locator('#toggle-auto').uncheck();
    await page.locator('#toggle-enhance').check();
    return page;
  }

  it('Enhance prompts: shows what was typed and what the LLM generated, then the fallback note when the LLM fails; unticked, prompts go as typed', async () => {
    const page = await openEnhancing();
    const typed = 'a lighthouse in a storm';
    await page.fill('#prompt', typed);
    await page.click('#start');
    await waitForPlayer(page, "p.segments.length >= 1 && p.segments[0].complete");
    let segments = await promptSegments(page);
    expect(segments[0]).toMatchObject({
      segmentIdx: 0,
      prompt: enhanced(typed),
      source: 'enhanced',
      originalPrompt: typed,
      promptProvider: 'fake',
      promptModel: 'fake-model',
      fallbackUsed: false,
    });
    expect(segments[0]?.promptLatencyMs).toBeGreaterThanOrEqual(0);
    expect(segments[0]?.promptError).toBeUndefined();
    // The init asked for enhancement: the LLM saw the typed prompt.
    expect(llm.calls).toHaveLength(1);
    expect(llm.calls[0]?.body.model).toBe('fake-model');
    expect(llm.calls[0]?.user).toContain(typed);
    const first = promptCell(page, 0);
    expect(await first.getAttribute('data-source')).toBe('enhanced');
    expect(await first.locator('[data-testid="prompt-original"]').textContent()).toBe(`You typed: “${typed}”`);
    expect(await first.locator('[data-testid="prompt-generated"]').textContent()).toBe(`→ Generated: “${enhanced(typed)}”`);
    expect(await first.textContent()).toContain('Enhanced by fake-model via fake');
    expect(await first.locator('[data-testid="prompt-fallback"]').count()).toBe(0);

    // The LLM fails: the next prompt is generated as typed, and the row says why.
    llmDown = true;
    const second = 'the keeper climbs the stairs';
    await page.fill('#prompt', second);
    await page.click('#send-prompt');
    await waitForPlayer(page, `p.segments.some((s) => s.prompt === ${JSON.stringify(second)})`);
    segments = await promptSegments(page);
    const fallback = segments.find((s) => s.prompt === second)!;
    expect(fallback).toMatchObject({ segmentIdx: 1, source: 'user', originalPrompt: second, fallbackUsed: true });
    expect(fallback.promptError).toContain('HTTP 500');
    expect(llm.calls).toHaveLength(2);
    const note = promptCell(page, 1).locator('[data-testid="prompt-fallback"]');
    expect(await note.textContent()).toContain(`Enhancement unavailable: ${fallback.promptError}; generated as typed.`);
    expect(await promptCell(page, 1).locator('[data-testid="prompt-original"]').count()).toBe(0);
    expect(await promptCell(page, 1).getAttribute('data-fallback')).toBe('true');

    // Unticked during the session (enhancement_updated): the next prompt goes to the generator as typed, the LLM not asked.
    llmDown = false;
    await page.locator('#toggle-enhance').uncheck();
    const third = 'dawn breaks over the calm sea';
    await page.fill('#prompt', third);
    await page.click('#send-prompt');
    await waitForPlayer(page, `p.segments.some((s) => s.prompt === ${JSON.stringify(third)} && s.complete)`);
    segments = await promptSegments(page);
    expect(segments.find((s) => s.prompt === third)).toMatchObject({ source: 'user', fallbackUsed: false, originalPrompt: undefined });
    expect(llm.calls).toHaveLength(2);
    const p = await player(page);
    expect(p.errors).toEqual([]);
    expect(p.pendingPrompts).toEqual([]);
    expect(p.sessions).toBe(1);
    await screenshot(page, 'prompt-enhancement');
    await page.click('#leave');
    await waitForState(page, 'ended');
  });

  it('a prompt the safety filter blocks: says so in Errors, drops it from the waiting prompts, and the stream goes on', async () => {
    const page = await openEnhancing();
    const typed = 'a harbour at night';
    await page.fill('#prompt', typed);
    await page.click('#start');
    await waitForPlayer(page, "p.segments.length >= 1 && p.segments[0].complete");

    const refused = `a ${BLOCKED_WORD} in the harbour`;
    await page.fill('#prompt', refused);
    await page.click('#send-prompt');
    await waitForPlayer(page, "p.errors.some((e) => e.reason === 'prompt_blocked')");
    const [error] = await promptErrors(page);
    expect(error).toMatchObject({ code: 'invalid_message', reason: 'prompt_blocked', retryable: true, prompt: refused });
    expect(error?.explanation).toBe("The server's safety filter blocked a prompt: it was not generated.");
    expect(error?.message).toContain(`blocked term "${BLOCKED_WORD}"`);
    expect(error?.next).toContain(`The stream goes on; “${refused}” was not generated.`);
    const item = page.locator('#errors li[data-reason="prompt_blocked"]');
    const text = await item.textContent();
    expect(text).toContain('invalid_message (prompt_blocked, retryable)');
    expect(text).toContain("The server's safety filter blocked a prompt: it was not generated.");
    expect(text).toContain('The stream goes on');
    let p = await player(page);
    expect(p.pendingPrompts).toEqual([]);
    expect(p.notice?.text).toContain('safety filter blocked a prompt');
    // Refused before the LLM: only the first prompt was enhanced.
    expect(llm.calls).toHaveLength(1);

    // Same session, no reconnect: the next prompt is enhanced and generated.
    const next = 'fishing boats leave at dawn';
    await page.fill('#prompt', next);
    await page.click('#send-prompt');
    await waitForPlayer(page, `p.segments.some((s) => s.originalPrompt === ${JSON.stringify(next)} && s.complete)`);
    p = await player(page);
    expect(p.state).toBe('active');
    expect(p.sessions).toBe(1);
    expect(p.reconnects).toBe(0);
    expect(p.errors).toHaveLength(1);
    const segments = await promptSegments(page);
    expect(segments.map((s) => [s.source, s.originalPrompt, s.prompt])).toEqual([
      ['enhanced', typed, enhanced(typed)],
      ['enhanced', next, enhanced(next)],
    ]);
    expect(segments.some((s) => s.prompt.includes(BLOCKED_WORD))).toBe(false);

    // A curated prompt the filter blocks (seed_prompts_updated): left out of the server's list, said so, the stream goes on.
    await page.fill('#curated-new', `the ${BLOCKED_WORD} at the pier`);
    await page.click('#curated-add');
    await waitForPlayer(page, "p.errors.filter((e) => e.reason === 'prompt_blocked').length === 2");
    const curated = (await promptErrors(page))[1];
    expect(curated?.message).toContain('seed_prompts[3]');
    expect(curated?.next).toContain('left that curated prompt out of its list');
    expect(curated?.prompt).toBeUndefined();
    expect((await player(page)).state).toBe('active');
    await screenshot(page, 'prompt-blocked');
    await page.click('#leave');
    await waitForState(page, 'ended');
  });
});
