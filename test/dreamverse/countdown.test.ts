/**
 * The idle clock on /ws and the app's countdown: the app counts `gpu_assigned.session_timeout`
 * down by the wall clock, so livegen sends `gpu_assigned` again whenever its idle clock
 * starts over (a client message, a segment, an ending), and a rewrite the LLM is still
 * working on is activity, not idleness.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { FakeLlm } from '../prompts/fake-llm.js';
import { startServer, type TestServer } from '../server/harness.js';
import { DvClient, dvUrl } from './dv-client.js';

let server: TestServer | undefined;
let fake: FakeLlm | undefined;
const clients: DvClient[] = [];
afterEach(async () => {
  clients.splice(0).forEach((c) => c.close());
  await server?.close();
  server = undefined;
  await fake?.close();
  fake = undefined;
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
