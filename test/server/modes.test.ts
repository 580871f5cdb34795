import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { probeMedia, sleep, startServer, TestClient, type TestServer } from './harness.js';

let server: TestServer | undefined;
const dirs: string[] = [];
afterEach(async () => {
  await server?.close();
  server = undefined;
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'livegen-modes-'));
  dirs.push(dir);
  return dir;
}

// A 1x1 PNG.
const PNG_1X1 =
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==';

describe('generation_paused_updated', () => {
  it('holds requests while paused and runs them when resumed', async () => {
    server = await startServer();
    const client = await TestClient.init(server.wsUrl);
    await client.waitFor('ltx2_stream_start');
    client.send({ type: 'generation_paused_updated', paused: true });
    client.send({ type: 'segment_prompt_source', prompt: 'held' });
    await sleep(300);
    expect(client.ofType('ltx2_segment_start')).toHaveLength(0);
    client.send({ type: 'generation_paused_updated', paused: false });
    const start = await client.waitFor('ltx2_segment_start');
    expect(start.prompt).toBe('held');
    await client.waitFor('ltx2_segment_complete');
    client.close();
  });

  it('lets the running segment finish when paused mid-segment', async () => {
    server = await startServer({ generator: { synthetic: { pace: 'realtime', step_ms: 0 } } });
    const client = await TestClient.init(server.wsUrl);
    await client.waitFor('ltx2_stream_start');
    client.send({ type: 'segment_prompt_source', prompt: 'running' });
    client.send({ type: 'segment_prompt_source', prompt: 'waiting' });
    await client.waitFor('ltx2_segment_start');
    client.send({ type: 'generation_paused_updated', paused: true });
    await client.waitFor('ltx2_segment_complete');
    await sleep(300);
    expect(client.ofType('ltx2_segment_start').map((m) => m.prompt)).toEqual(['running']);
    client.close();
  });
});

describe('loop_generation_enabled', () => {
  it('drives segments from the curated prompts in turn, wrapping, until the cap', async () => {
    server = await startServer({ streaming: { generation_segment_cap: 5 } });
    const client = await TestClient.init(server.wsUrl, { loop_generation_enabled: true, curated_prompts: ['a', 'b', 'c'] });
    expect((await client.closed).code).toBe(1000);
    const starts = client.ofType('ltx2_segment_start');
    expect(starts.map((m) => m.prompt)).toEqual(['a', 'b', 'c', 'a', 'b']);
    expect(starts.every((m) => m.source === 'curated')).toBe(true);
    expect(client.messages.at(-1)).toEqual({ type: 'ltx2_stream_complete', reason: 'segment_cap' });
  });

  it('starts when switched on mid-session and stops when paused', async () => {
    server = await startServer({ streaming: { generation_segment_cap: 50 } });
    const client = await TestClient.init(server.wsUrl, { curated_prompts: ['x'] });
    await client.waitFor('ltx2_stream_start');
    await sleep(200);
    expect(client.ofType('ltx2_segment_start')).toHaveLength(0);
    client.send({ type: 'loop_generation_updated', enabled: true });
    await client.waitFor('ltx2_segment_complete', 2);
    client.send({ type: 'generation_paused_updated', paused: true });
    await sleep(500);
    const settled = client.ofType('ltx2_segment_start').length;
    await sleep(400);
    expect(client.ofType('ltx2_segment_start').length).toBe(settled);
    client.close();
  });
});

describe('auto_extension_enabled', () => {
  it('continues with the last prompt as source auto_extension when no request waits', async () => {
    server = await startServer({ streaming: { generation_segment_cap: 3 } });
    const client = await TestClient.init(server.wsUrl, { auto_extension_enabled: true });
    await client.waitFor('ltx2_stream_start');
    client.send({ type: 'segment_prompt_source', prompt: 'a lighthouse at dusk' });
    await client.closed;
    const starts = client.ofType('ltx2_segment_start');
    expect(starts.map((m) => [m.prompt, m.source])).toEqual([
      ['a lighthouse at dusk', 'user'],
      ['a lighthouse at dusk', 'auto_extension'],
      ['a lighthouse at dusk', 'auto_extension'],
    ]);
  });

  it('uses the configured PromptExtender', async () => {
    server = await startServer(
      { streaming: { generation_segment_cap: 2 } },
      { extender: { next: async ({ lastPrompt, segmentIdx }) => `${lastPrompt}, part ${segmentIdx + 1}` } },
    );
    const client = await TestClient.init(server.wsUrl, { auto_extension_enabled: true });
    await client.waitFor('ltx2_stream_start');
    client.send({ type: 'segment_prompt_source', prompt: 'saga' });
    await client.closed;
    expect(client.ofType('ltx2_segment_start').map((m) => m.prompt)).toEqual(['saga', 'saga, part 2']);
  });
});

describe('single_clip_mode', () => {
  it('generates each clip fresh, follows it with stop_requested and keeps the session open', async () => {
    server = await startServer();
    const client = await TestClient.init(server.wsUrl, { single_clip_mode: true });
    await client.waitFor('ltx2_stream_start');
    client.send({ type: 'segment_prompt_source', prompt: 'clip one' });
    await client.waitFor('ltx2_stream_complete');
    client.send({ type: 'segment_prompt_source', prompt: 'clip two' });
    await client.waitFor('ltx2_stream_complete', 2);
    const types = client.messages.map((m) => m.type);
    expect(types.filter((t) => t === 'ltx2_segment_complete')).toHaveLength(2);
    expect(types.indexOf('ltx2_stream_complete')).toBe(types.indexOf('ltx2_segment_complete') + 1);
    expect(client.ofType('ltx2_stream_complete').every((m) => m.reason === 'stop_requested')).toBe(true);
    const second = await probeMedia(Buffer.concat(client.segmentMedia(1)), 192, 112);
    expect(second.frameIndices[0]).toBe(0);
    expect(client.ws.readyState).toBe(client.ws.OPEN);
    client.close();
  });
});

describe('stream_mode legacy_jpeg', () => {
  it('sends one JPEG per binary frame after a media_init with mime image/jpeg', async () => {
    server = await startServer();
    const client = await TestClient.init(server.wsUrl, { stream_mode: 'legacy_jpeg' });
    await client.waitFor('ltx2_stream_start');
    client.send({ type: 'segment_prompt_source', prompt: 'jpeg' });
    await client.waitFor('ltx2_segment_complete');
    expect(client.ofType('media_init')[0]).toMatchObject({ mime: 'image/jpeg', mode: 'legacy_jpeg' });
    const frames = client.segmentMedia(0);
    expect(frames).toHaveLength(24);
    for (const f of frames) {
      expect(f.subarray(0, 2).toString('hex')).toBe('ffd8');
      expect(f.subarray(-2).toString('hex')).toBe('ffd9');
    }
    expect(client.ofType('media_segment_complete')[0]).toMatchObject({ chunks: 24 });
    client.close();
  });
});

describe('initial_image', () => {
  it('writes the image to a private temp file for the generator and removes it at session end', async () => {
    const dir = await tempDir();
    server = await startServer({}, { tempDir: dir });
    const client = await TestClient.init(server.wsUrl, { initial_image: { mime: 'image/png', name: 'x.png', data: PNG_1X1 } });
    await client.waitFor('ltx2_stream_start');
    // Under the server's own run directory, one private directory per session.
    const runDir = (await server.server.inspect()).tempDir;
    expect(runDir.startsWith(dir)).toBe(true);
    const sessionDir = readdirSync(runDir).find((name) => name !== 'pid');
    expect(sessionDir).toBeDefined();
    const file = join(runDir, sessionDir as string, 'initial.png');
    expect(readFileSync(file).toString('base64')).toBe(PNG_1X1);
    client.send({ type: 'segment_prompt_source', prompt: 'with image' });
    await client.waitFor('ltx2_segment_complete');
    client.close();
    await client.closed;
    await sleep(100);
    expect(existsSync(file)).toBe(false);
    expect(readdirSync(runDir)).toEqual(['pid']);
  });

  it.each([
    ['a bad mime', { mime: 'image/gif', data: PNG_1X1 }, /^initial_image\.mime/],
    ['bad base64', { mime: 'image/png', data: 'not base64!' }, /^initial_image\.data: expected base64/],
    ['empty data', { mime: 'image/png', data: '' }, /^initial_image\.data/],
  ])('rejects %s with invalid_message naming the field', async (_name, image, pattern) => {
    server = await startServer();
    const client = await TestClient.init(server.wsUrl, { initial_image: image });
    expect((await client.closed).code).toBe(1003);
    expect(client.messages[0]).toMatchObject({ type: 'error', code: 'invalid_message' });
    expect(client.messages[0]?.message).toMatch(pattern);
  });
});

describe('session event log', () => {
  it('writes one JSONL line per event with session id, event, timestamp and payload, under a sanitised name', async () => {
    const dir = await tempDir();
    server = await startServer({ logging: { session_log_dir: dir } });
    const client = await TestClient.init(server.wsUrl, { client_id: '../../etc/passwd' });
    await client.waitFor('ltx2_stream_start');
    client.send({ type: 'segment_prompt_source', prompt: 'logged' });
    await client.waitFor('ltx2_segment_complete');
    client.close();
    await client.closed;
    await sleep(150);
    const files = readdirSync(dir);
    expect(files).toHaveLength(1);
    expect(files[0]).toMatch(/^etc_passwd-[0-9a-f]{32}\.jsonl$/);
    const lines = readFileSync(join(dir, files[0] as string), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((l) => l.event)).toEqual(['init', 'active', 'segment_start', 'segment_complete', 'end']);
    for (const line of lines) {
      expect(line.session_id).toMatch(/^[0-9a-f]{32}$/);
      expect(new Date(line.ts).toISOString()).toBe(line.ts);
      expect(typeof line.payload).toBe('object');
    }
  });
});
