/**
 * A Dreamverse session's own rewrite settings: `rewrite_model`, `rewrite_temperature` and
 * the two rewrite system prompts from the init, `set_rewrite_model` /
 * `set_rewrite_temperature` (echoed as `rewrite_model_updated` /
 * `rewrite_temperature_updated`), and the ones a `rewrite_seed_prompts` frame carries for
 * itself. Checked on what the fake LLM is asked.
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
