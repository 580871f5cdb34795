import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { buildWeb } from '../../scripts/build-web.js';
import { readFrameIndex } from '../../src/generation/index.js';
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
const SEGMENT_S = FRAMES / FPS;

/** What the tests read from `window.livegenPlayer` (see web/src/model.ts). */
interface PlayerView {
  state: string;
  segments: { segmentIdx: number; complete: boolean; source?: string }[];
  errors: { code: string; message: string }[];
  ttffMs: number | null;
  playingMs: number | null;
  queue: { position: number; queue_depth: number } | null;
  lastSnapshot: { kind: string; payload: Record<string, unknown> } | null;
  resumedFrom: { kind: string; payload: Record<string, unknown> } | null;
  timeline: Record<string, number>;
  mse: { stalls: { atS: number; ms: number }[]; evictions: number; segmentsAppended: number; bufferedStartS: number } | null;
}
interface VideoView {
  currentTime: number;
  readyState: number;
  paused: boolean;
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
}
interface CanvasView {
  width: number;
  height: number;
  getContext(kind: '2d'): { drawImage(v: unknown, x: number, y: number): void; getImageData(x: number, y: number, w: number, h: number): { data: ArrayLike<number> } };
}

let server: TestServer;
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
  profileDir = await mkdtemp(join(tmpdir(), 'livegen-chromium-'));
  context = await chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    acceptDownloads: true,
    viewport: { width: 1200, height: 900 },
  });
}, 60_000);

afterAll(async () => {
  await context?.close();
  await server?.close();
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
});

async function openPlayer(query = ''): Promise<Page> {
  const page = await context.newPage();
  const problems: string[] = [];
  pages.push(page);
  pageProblems.set(page, problems);
  page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error') problems.push(`console: ${msg.text()}`);
  });
  await page.goto(`${server.url}/${query}`);
  await page.waitForFunction(() => 'livegenPlayer' in globalThis);
  return page;
}

function player(page: Page): Promise<PlayerView> {
  return page.evaluate(() => {
    const p = (globalThis as unknown as PageGlobals).livegenPlayer;
    return { state: p.state, segments: p.segments, errors: p.errors, ttffMs: p.ttffMs, playingMs: p.playingMs, queue: p.queue, lastSnapshot: p.lastSnapshot, resumedFrom: p.resumedFrom, timeline: p.timeline, mse: p.mse };
  });
}

function video(page: Page): Promise<VideoView> {
  return page.evaluate(() => {
    const v = (globalThis as unknown as PageGlobals).document.getElementById('video') as VideoView;
    return { currentTime: v.currentTime, readyState: v.readyState, paused: v.paused, videoWidth: v.videoWidth, videoHeight: v.videoHeight, error: v.error && { code: v.error.code, message: v.error.message } };
  });
}

async function waitForState(page: Page, state: string, timeout = 15_000): Promise<void> {
  await page.waitForFunction((s) => (globalThis as unknown as PageGlobals).livegenPlayer.state === s, state, { timeout });
}

async function waitForPlayback(page: Page, seconds: number, timeout = 20_000): Promise<void> {
  await page.waitForFunction(
    (t) => ((globalThis as unknown as PageGlobals).document.getElementById('video') as VideoView).currentTime > t,
    seconds,
    { timeout },
  );
}

/** The index drawn into the frame on screen now (the synthetic generator's strip). */
async function frameIndexOnScreen(page: Page): Promise<number | null> {
  const rgba = await page.evaluate(() => {
    const g = globalThis as unknown as PageGlobals;
    const v = g.document.getElementById('video') as VideoView;
    const canvas = g.document.createElement('canvas');
    canvas.width = v.videoWidth;
    canvas.height = v.videoHeight;
    const ctx = canvas.getContext('2d');
    ctx.drawImage(v, 0, 0);
    return Array.from(ctx.getImageData(0, 0, v.videoWidth, v.videoHeight).data);
  });
  const rgb = Buffer.alloc(WIDTH * HEIGHT * 3);
  for (let i = 0, o = 0; i < rgba.length; i += 4, o += 3) {
    rgb[o] = rgba[i]!;
    rgb[o + 1] = rgba[i + 1]!;
    rgb[o + 2] = rgba[i + 2]!;
  }
  return readFrameIndex(rgb, WIDTH, HEIGHT);
}

async function screenshot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
}

// Real-time media on a shared 2-core machine: give each test room beyond the 30 s default.
describe('the player page in Chromium', { timeout: 60_000 }, () => {
  it('loads with its controls, the curated prompts and no errors', async () => {
    const page = await openPlayer();
    expect(await page.title()).toBe('livegen player');
    for (const id of ['prompt', 'start', 'leave', 'toggle-pause', 'toggle-loop', 'toggle-auto', 'download-state', 'state-file', 'video']) {
      expect(await page.locator(`#${id}`).count(), id).toBe(1);
    }
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

  it('continues across segment joins without a stall and evicts played media', async () => {
    // keepBehind=1: keep 1 s behind the playhead, so eviction shows within a few seconds.
    const page = await openPlayer('?keepBehind=1');
    await page.check('#toggle-auto');
    await page.evaluate(() => {
      const g = globalThis as unknown as PageGlobals;
      const v = g.document.getElementById('video') as VideoView;
      g.__samples = [];
      g.setInterval(() => g.__samples!.push({ wall: performance.now(), t: v.currentTime }), 50);
    });
    await page.click('#start');
    // Past two joins (2 s and 4 s on the timeline).
    await waitForPlayback(page, 2 * SEGMENT_S + 0.5, 30_000);
    const samples = await page.evaluate(() => (globalThis as unknown as PageGlobals).__samples!);
    const p = await player(page);
    const v = await video(page);
    await screenshot(page, 'continuous');

    expect(p.errors).toEqual([]);
    expect(v.error).toBeNull();
    expect(p.segments.filter((s) => s.complete).length).toBeGreaterThanOrEqual(2);
    expect(p.segments[1]?.source).toBe('auto_extension');
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
    expect(longestStillMs).toBeLessThan(500);
    expect(p.mse?.stalls.filter((s) => s.ms > 500)).toEqual([]);
    // Bounded buffer: media more than ~1 s behind the playhead was removed.
    expect(p.mse?.evictions).toBeGreaterThan(0);
    expect(p.mse?.bufferedStartS).toBeGreaterThan(0);
    await page.click('#leave');
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
});
