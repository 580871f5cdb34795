/**
 * A /ws session beyond the flows of dialect.test.ts:
 * - the init's `initial_image` (a base64 data URL), kept in a private temp file for the
 *   generator while the session lasts and removed at its end; a bad one ends the session
 *   with Dreamverse's "Invalid initial image" and close 1003;
 * - the session's own rewrite settings (`rewrite_model`, `rewrite_temperature`, the two
 *   rewrite system prompts, `set_rewrite_*`, a rewrite frame's own), checked on what the
 *   fake LLM is asked;
 * - the idle clock and the app's countdown: `gpu_assigned` is sent again whenever the
 *   idle clock starts over, and a rewrite the LLM is still working on is activity.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeLlm } from '../prompts/fake-llm.js';
import { startServer, type TestServer } from '../server/harness.js';
import { DvClient, dvUrl } from './dv-client.js';

const PNG_1X1 = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==';

let server: TestServer | undefined;
let fake: FakeLlm | undefined;
let dir: string | undefined;
const clients: DvClient[] = [];
afterEach(async () => {
  clients.splice(0).forEach((c) => c.close());
  await server?.close();
  server = undefined;
  await fake?.close();
  fake = undefined;
  if (dir) await rm(dir, { recursive: true, force: true });
  dir = undefined;
});

const PLAN = JSON.stringify(['one', 'two', 'three', 'four', 'five', 'six']);

async function start(init: Record<string, unknown>): Promise<DvClient> {
  fake = await FakeLlm.start(() => ({ content: PLAN }));
  server = await startServer({
    streaming: { generation_segment_cap: 2, prompt: { enabled: true, temperature: 0.7, providers: [{ name: 'fake', base_url: fake.baseUrl, model: 'fake-model' }] } },
  });
  const c = await DvClient.start(dvUrl(server.url), { enhancement_enabled: false, ...init });
  clients.push(c);
  return c;
}

describe('the /ws initial image', () => {
  it('is written to a private temp file for the first segment and removed when the session ends', async () => {
    dir = await mkdtemp(join(tmpdir(), 'livegen-dv-image-'));
    server = await startServer({ streaming: { generation_segment_cap: 1 } }, { tempDir: dir });
    const c = await DvClient.start(dvUrl(server.url), {
      type: 'session_init_v2',
      preset_id: 'p',
      curated_prompts: ['a lighthouse'],
      initial_image: { data_url: `data:image/png;base64,${PNG_1X1}`, mime_type: 'image/png', name: 'x.png' },
      enhancement_enabled: false,
    });
    clients.push(c);
    await c.waitFor('ltx2_stream_start');
    const runDir = (await server.server.inspect()).tempDir;
    const sessionDir = readdirSync(runDir).find((name) => name !== 'pid') as string;
    const file = join(runDir, sessionDir, 'initial.png');
    expect(readFileSync(file).toString('base64')).toBe(PNG_1X1);
    await c.waitFor('ltx2_stream_complete');
    c.close();
    await expect.poll(() => existsSync(file)).toBe(false);
  });

  it.each([
    ['not a data URL', { data_url: 'https://example.com/x.png', mime_type: 'image/png' }],
    ['bytes that are not the declared image', { data_url: `data:image/png;base64,${Buffer.from('not a png').toString('base64')}`, mime_type: 'image/png' }],
    ['a type Dreamverse does not take', { data_url: `data:image/gif;base64,${PNG_1X1}`, mime_type: 'image/gif' }],
  ])('refuses %s with "Invalid initial image" and close 1003', async (_name, image) => {
    server = await startServer();
    const c = await DvClient.start(dvUrl(server.url), { type: 'session_init_v2', curated_prompts: ['a lighthouse'], initial_image: image });
    clients.push(c);
    const closed = await c.waitForClose();
    expect(closed.code).toBe(1003);
    expect(c.ofType('error')[0]?.message).toMatch(/^Invalid initial image: /);
    expect(c.ofType('gpu_assigned')).toHaveLength(0);
  });
});

describe('a Dreamverse session chooses how its rollouts are rewritten', () => {
  it('uses the init rewrite_model, rewrite_temperature and rewrite_user_system_prompt for a custom start', async () => {
    const c = await start({
      curated_prompts: [],
      initial_rollout_prompt: 'a fox in the snow',
      rewrite_model: 'chosen-model',
      rewrite_temperature: 0.2,
      rewrite_user_system_prompt: 'turn the user prompt into six shots',
      rewrite_window_system_prompt: 'rewrite the window',
    });
    expect(await c.waitFor('rewrite_seed_prompts_started')).toMatchObject({ model: 'chosen-model' });
    expect(await c.waitFor('rewrite_seed_prompts_complete')).toMatchObject({ fallback_used: false, model: 'chosen-model' });
    const call = fake?.calls[0];
    expect(call?.body).toMatchObject({ model: 'chosen-model', temperature: 0.2 });
    expect(call?.system).toBe('turn the user prompt into six shots');
  });

  it('follows set_rewrite_model and set_rewrite_temperature (echoed), refuses bad values, and takes a rewrite frame’s own settings for that rewrite only', async () => {
    const c = await start({ curated_prompts: ['a', 'b', 'c'], rewrite_window_system_prompt: 'rewrite the window' });
    await c.waitFor('ltx2_stream_start');
    c.send({ type: 'set_rewrite_model', model: 'model-two' });
    expect(await c.waitFor('rewrite_model_updated')).toMatchObject({ model: 'model-two' });
    c.send({ type: 'set_rewrite_temperature', temperature: 5 });
    expect((await c.waitFor('error')).message).toContain('rewrite_temperature');
    c.send({ type: 'set_rewrite_temperature', temperature: 1.1 });
    expect(await c.waitFor('rewrite_temperature_updated')).toMatchObject({ temperature: 1.1 });

    c.send({ type: 'rewrite_seed_prompts', rewrite_instruction: 'make it rain', prompt_window_prompts: ['a', 'b', 'c'] });
    await c.waitFor('rewrite_seed_prompts_complete');
    expect(fake?.calls[0]?.body).toMatchObject({ model: 'model-two', temperature: 1.1 });
    expect(fake?.calls[0]?.system).toBe('rewrite the window');

    c.send({ type: 'rewrite_seed_prompts', rewrite_instruction: 'now snow', prompt_window_prompts: ['a', 'b', 'c'], rewrite_model: 'just-this-once' });
    await c.waitFor('rewrite_seed_prompts_complete', 2);
    expect(fake?.calls[1]?.body).toMatchObject({ model: 'just-this-once', temperature: 1.1 });
    c.send({ type: 'rewrite_seed_prompts', rewrite_instruction: 'and wind', prompt_window_prompts: ['a', 'b', 'c'] });
    await c.waitFor('rewrite_seed_prompts_complete', 3);
    expect(fake?.calls[2]?.body).toMatchObject({ model: 'model-two' });
  });
});

describe('the /ws countdown', () => {
  it('sends gpu_assigned again when a client message restarts the idle clock', async () => {
    server = await startServer({ streaming: { generation_segment_cap: 1 } });
    const c = await DvClient.start(dvUrl(server.url), { curated_prompts: ['a lighthouse'], enhancement_enabled: false });
    clients.push(c);
    await c.waitFor('ltx2_stream_complete');
    const before = c.ofType('gpu_assigned').length;
    c.send({ type: 'set_loop_generation', enabled: false });
    await c.waitFor('loop_generation_updated', 2);
    await c.waitFor('gpu_assigned', before + 1);
    expect(c.ofType('gpu_assigned').every((a) => a.gpu_id === 0)).toBe(true);
  });

  it('does not time a session out while the LLM is still rewriting, however long the idle timeout', async () => {
    fake = await FakeLlm.start(() => ({ delayMs: 2500, content: JSON.stringify(['a slow plan, 1', 'a slow plan, 2']) }));
    server = await startServer({
      streaming: {
        generation_segment_cap: 1,
        session_timeout_seconds: 1,
        prompt: { enabled: true, providers: [{ name: 'fake', base_url: fake.baseUrl, model: 'fake-model' }] },
      },
    });
    const c = await DvClient.start(dvUrl(server.url), { curated_prompts: ['a lighthouse', 'a harbor'], enhancement_enabled: false });
    clients.push(c);
    await c.waitFor('ltx2_stream_complete');
    c.send({ type: 'rewrite_seed_prompts', rewrite_instruction: 'make it foggy', prompt_window_prompts: ['a lighthouse', 'a harbor'] });
    expect(await c.waitFor('rewrite_seed_prompts_complete')).toMatchObject({ fallback_used: false });
    await c.waitFor('ltx2_stream_start', 2);
    expect(c.ofType('session_timeout')).toEqual([]);
    // Idle again once the new stream is done: then the one-second timeout applies.
    expect(await c.waitFor('session_timeout')).toMatchObject({ timeout_seconds: 1 });
    expect(c.ofType('ltx2_segment_start').map((m) => m.prompt)).toContain('a slow plan, 1');
  });
});
