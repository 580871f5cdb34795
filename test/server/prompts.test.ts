/**
 * The prompt layer in a running server, over real sockets, against a fake
 * OpenAI-compatible server on loopback: enhancement (and its fallbacks), enhancement
 * ahead of the generator, LLM auto-extension, the safety filter, aborted calls when the
 * client leaves, /status, /metrics and the session log.
 */
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { writeTinySafetyModel } from '../support/safety-model.js';
import { FakeLlm, type FakeCall, type ReplyFn } from '../prompts/fake-llm.js';
import { startServer, TestClient, type TestServer } from './harness.js';

let dir: string;
let server: TestServer | undefined;
let fake: FakeLlm | undefined;
const clients: TestClient[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'livegen-prompt-server-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});
afterEach(async () => {
  clients.splice(0).forEach((c) => c.close());
  await server?.close();
  server = undefined;
  await fake?.close();
  fake = undefined;
});

/** A server whose LLM is the fake, answering with `reply`. */
async function serverWithLlm(reply: ReplyFn, patch: { streaming?: Record<string, unknown>; prompt?: Record<string, unknown>; [k: string]: unknown } = {}): Promise<TestServer> {
  fake = await FakeLlm.start(reply);
  const { prompt, streaming, ...rest } = patch;
  server = await startServer(
    {
      ...rest,
      streaming: {
        ...streaming,
        prompt: { enabled: true, providers: [{ name: 'fake', base_url: fake.baseUrl, model: 'fake-model', api_key_env: 'LIVEGEN_TEST_LLM_KEY' }], ...prompt },
      },
    },
    { prompts: { env: { LIVEGEN_TEST_LLM_KEY: 'sk-livegen-test-secret-0001' } } },
  );
  return server;
}

async function client(fields: Record<string, unknown> = {}): Promise<TestClient> {
  const c = await TestClient.init((server as TestServer).wsUrl, fields);
  clients.push(c);
  await c.waitFor('ltx2_stream_start');
  return c;
}

function atOf(c: TestClient, type: string, segmentIdx: number): number {
  const entry = c.received.find((r) => r.kind === 'json' && r.message.type === type && r.message.segment_idx === segmentIdx);
  if (!entry) throw new Error(`no ${type} for segment ${segmentIdx}: ${c.summary()}`);
  return entry.at;
}

/** The prompt the user typed: the last line of the LLM's user message (the story so far comes first). */
function typed(call: FakeCall): string {
  return call.user.split('\n').pop() ?? '';
}

async function blocklist(...terms: string[]): Promise<string> {
  const path = join(dir, `blocklist-${Math.random().toString(36).slice(2)}.txt`);
  await writeFile(path, `${terms.join('\n')}\n`);
  return path;
}

describe('enhancement', () => {
  it('generates the LLM text with source enhanced and says what it replaced, who wrote it and how long it took', async () => {
    await serverWithLlm((call) => ({ content: `Cinematic: ${typed(call)}` }));
    const c = await client({ enhancement_enabled: true });
    c.send({ type: 'segment_prompt_source', prompt: 'a fox crosses a river' });
    const start = await c.waitFor('ltx2_segment_start');
    expect(start).toMatchObject({
      prompt: 'Cinematic: a fox crosses a river',
      source: 'enhanced',
      original_prompt: 'a fox crosses a river',
      prompt_provider: 'fake',
      prompt_model: 'fake-model',
      fallback_used: false,
    });
    expect(start.prompt_latency_ms).toBeGreaterThanOrEqual(0);
    expect(start).not.toHaveProperty('prompt_error');
    await c.waitFor('ltx2_segment_complete');
    expect(fake?.calls[0]?.authorization).toBe('Bearer sk-livegen-test-secret-0001');
  });

  it('leaves prompts alone when the session does not ask, and follows enhancement_updated', async () => {
    await serverWithLlm((call) => ({ content: `Cinematic: ${typed(call)}` }));
    const c = await client();
    c.send({ type: 'segment_prompt_source', prompt: 'plain' });
    const first = await c.waitFor('ltx2_segment_start');
    expect(first).toMatchObject({ prompt: 'plain', source: 'user' });
    expect(first).not.toHaveProperty('original_prompt');
    await c.waitFor('ltx2_segment_complete');
    expect(fake?.calls).toHaveLength(0);
    c.send({ type: 'enhancement_updated', enabled: true });
    c.send({ type: 'segment_prompt_source', prompt: 'fancy' });
    expect(await c.waitFor('ltx2_segment_start', 2)).toMatchObject({ prompt: 'Cinematic: fancy', source: 'enhanced' });
    // Prompts the client sent as curated or already enhanced are not enhanced again.
    c.send({ type: 'segment_prompt_source', prompt: 'from the list', source: 'curated' });
    expect(await c.waitFor('ltx2_segment_start', 3)).toMatchObject({ prompt: 'from the list', source: 'curated' });
    expect(fake?.calls).toHaveLength(1);
  });

  it.each([
    ['a 500', { status: 500 }, 'server_error'],
    ['a timeout', { delayMs: 10_000 }, 'timeout'],
    ['a malformed reply', { body: '{"choices": []}' }, 'malformed'],
  ])('generates the prompt as typed after %s, says why, and goes on', async (_name, reply, kind) => {
    await serverWithLlm(() => reply, { prompt: { timeout_ms: 300 } });
    const c = await client({ enhancement_enabled: true });
    c.send({ type: 'segment_prompt_source', prompt: 'a fox' });
    const start = await c.waitFor('ltx2_segment_start');
    expect(start).toMatchObject({ prompt: 'a fox', source: 'user', original_prompt: 'a fox', fallback_used: true });
    expect(start.prompt_error).toContain(kind);
    expect(start.prompt_error).not.toContain('sk-livegen-test-secret');
    await c.waitFor('ltx2_segment_complete');
  });

  it('tells a session that asks for enhancement on a server without an LLM, and generates as typed', async () => {
    server = await startServer();
    const c = await client({ enhancement_enabled: true });
    c.send({ type: 'segment_prompt_source', prompt: 'a fox' });
    const start = await c.waitFor('ltx2_segment_start');
    expect(start).toMatchObject({ prompt: 'a fox', source: 'user', fallback_used: true });
    expect(start.prompt_error).toContain('streaming.prompt.enabled');
  });

  it('enhances waiting requests while the segment before them generates, so the LLM adds no wait between segments', async () => {
    // Realtime pace: a segment takes about a second; the LLM answers in 150 ms.
    await serverWithLlm((call) => ({ delayMs: 150, content: `Cinematic: ${typed(call)}` }), { generator: { synthetic: { pace: 'realtime' } } });
    const c = await client({ enhancement_enabled: true });
    for (const prompt of ['one', 'two', 'three']) c.send({ type: 'segment_prompt_source', prompt });
    await c.waitFor('ltx2_segment_complete', 3);
    expect(c.ofType('ltx2_segment_start').map((m) => [m.prompt, m.source])).toEqual([
      ['Cinematic: one', 'enhanced'],
      ['Cinematic: two', 'enhanced'],
      ['Cinematic: three', 'enhanced'],
    ]);
    const calls = fake?.calls ?? [];
    expect(calls.map((call) => call.user.split('\n').pop())).toEqual(['one', 'two', 'three']);
    // Every later prompt's enhancement was asked for and answered before the segment ahead of it finished.
    for (const segment of [1, 2]) {
      const call = calls[segment];
      expect(call?.answeredAt).toBeDefined();
      expect(call?.answeredAt as number).toBeLessThan(atOf(c, 'ltx2_segment_complete', segment - 1));
    }
    // And it knew the story ahead of it: the third request's call saw the first two prompts.
    expect(calls[2]?.user).toContain('1. one\n2. two');
  });

  it('aborts the LLM calls of a client that leaves', async () => {
    await serverWithLlm(() => ({ delayMs: 30_000 }));
    const c = await client({ enhancement_enabled: true });
    c.send({ type: 'segment_prompt_source', prompt: 'one' });
    c.send({ type: 'segment_prompt_source', prompt: 'two' });
    await expect.poll(() => fake?.calls.length).toBe(2);
    c.close();
    await expect.poll(() => fake?.calls.every((call) => call.aborted), { timeout: 5000 }).toBe(true);
    await expect.poll(() => server?.sessionCount()).toBe(0);
  });
});

describe('auto-extension by the LLM', () => {
  it('writes the next prompt from the story so far, asked while the segment before it generates', async () => {
    let n = 0;
    await serverWithLlm(() => ({ content: `chapter ${++n}` }), {
      streaming: { generation_segment_cap: 3 },
      prompt: { auto_extension_timeout_ms: 10_000 },
      generator: { synthetic: { pace: 'realtime' } },
    });
    const c = await client({ auto_extension_enabled: true, curated_prompts: ['a plan'] });
    c.send({ type: 'segment_prompt_source', prompt: 'a fox wakes' });
    await c.closed;
    const starts = c.ofType('ltx2_segment_start');
    expect(starts.map((m) => [m.prompt, m.source])).toEqual([
      ['a fox wakes', 'user'],
      ['chapter 1', 'auto_extension'],
      ['chapter 2', 'auto_extension'],
    ]);
    expect(starts[1]).toMatchObject({ original_prompt: 'a fox wakes', prompt_provider: 'fake', fallback_used: false });
    const calls = fake?.calls ?? [];
    expect(calls[0]?.user).toContain('1. a fox wakes');
    expect(calls[0]?.user).toContain('1. a plan');
    expect(calls[1]?.user).toContain('1. a fox wakes\n2. chapter 1');
    // Asked ahead: the prompt for segment 1 was ready before segment 0 finished.
    expect(calls[0]?.answeredAt as number).toBeLessThan(atOf(c, 'ltx2_segment_complete', 0));
  });

  it('goes on with the last prompt when the LLM fails or is too slow, never ending the session', async () => {
    await serverWithLlm(() => ({ delayMs: 10_000 }), { streaming: { generation_segment_cap: 2 }, prompt: { auto_extension_timeout_ms: 200 } });
    const c = await client({ auto_extension_enabled: true });
    c.send({ type: 'segment_prompt_source', prompt: 'a fox wakes' });
    await c.closed;
    const starts = c.ofType('ltx2_segment_start');
    expect(starts[1]).toMatchObject({ prompt: 'a fox wakes', source: 'auto_extension', fallback_used: true });
    expect(starts[1]?.prompt_error).toContain('timeout');
    expect(c.ofType('ltx2_stream_complete')).toEqual([{ type: 'ltx2_stream_complete', reason: 'segment_cap' }]);
  });
});

describe('the safety filter', () => {
  it('refuses a blocked request with a retryable error naming the reason, keeps the connection and generates the next one', async () => {
    server = await startServer({ streaming: { safety: { enabled: true, blocklist_path: await blocklist('gore') } } });
    const c = await client();
    c.send({ type: 'segment_prompt_source', prompt: 'rivers of GORE' });
    const error = await c.waitFor('error');
    expect(error).toMatchObject({ code: 'invalid_message', retryable: true, reason: 'prompt_blocked' });
    expect(error.message).toContain('blocked term "gore"');
    c.send({ type: 'segment_prompt_source', prompt: 'a quiet river' });
    expect(await c.waitFor('ltx2_segment_start')).toMatchObject({ prompt: 'a quiet river' });
    await c.waitFor('ltx2_segment_complete');
    expect(c.ofType('ltx2_segment_start')).toHaveLength(1);
  });

  it('leaves blocked curated prompts out of the loop, saying which', async () => {
    server = await startServer({ streaming: { generation_segment_cap: 3, safety: { enabled: true, blocklist_path: await blocklist('gore') } } });
    const c = await client({ loop_generation_enabled: true, curated_prompts: ['a meadow', 'gore fest', 'a lake'] });
    await c.closed;
    expect(c.ofType('error')[0]).toMatchObject({ reason: 'prompt_blocked', retryable: true });
    expect(c.ofType('error')[0]?.message).toContain('curated_prompts[1]');
    expect(c.ofType('ltx2_segment_start').map((m) => m.prompt)).toEqual(['a meadow', 'a lake', 'a meadow']);
  });

  it('generates the typed prompt when the enhanced one is blocked, and the last one when an auto-extension is', async () => {
    await serverWithLlm((call) => ({ content: call.system.includes('continue') ? 'and then gore' : `gore and ${typed(call)}` }), {
      streaming: { generation_segment_cap: 2, safety: { enabled: true, blocklist_path: await blocklist('gore') } },
    });
    const c = await client({ enhancement_enabled: true, auto_extension_enabled: true });
    c.send({ type: 'segment_prompt_source', prompt: 'a fox' });
    await c.closed;
    const starts = c.ofType('ltx2_segment_start');
    expect(starts[0]).toMatchObject({ prompt: 'a fox', source: 'user', fallback_used: true });
    expect(starts[0]?.prompt_error).toContain('blocked by the safety filter');
    expect(starts[1]).toMatchObject({ prompt: 'a fox', source: 'auto_extension', fallback_used: true });
    expect(starts.every((s) => !String(s.prompt).includes('gore'))).toBe(true);
  });

  it("blocks with FastVideo's fastText classifier file", async () => {
    const model = await writeTinySafetyModel(join(dir, 'classifier.bin'));
    server = await startServer({ streaming: { safety: { enabled: true, classifier_path: model } } });
    const c = await client();
    c.send({ type: 'segment_prompt_source', prompt: 'a gruesome bloodbath with gore after a weapon attack' });
    const error = await c.waitFor('error');
    expect(error).toMatchObject({ reason: 'prompt_blocked', retryable: true });
    expect(error.message).toContain('classifier labels it "unsafe"');
    c.send({ type: 'segment_prompt_source', prompt: 'a misty mountain lake at sunrise' });
    await c.waitFor('ltx2_segment_complete');
  });

  it('starts and allows when its files cannot be loaded, and says so in /status', async () => {
    server = await startServer({ streaming: { safety: { enabled: true, classifier_path: join(dir, 'missing.bin') } } });
    const status = (await (await fetch(`${server.url}/status`)).json()) as { prompts: { safety: { available: boolean; classifier: { error: string } } } };
    expect(status.prompts.safety.available).toBe(false);
    expect(status.prompts.safety.classifier.error).toContain('missing.bin');
    const c = await client();
    c.send({ type: 'segment_prompt_source', prompt: 'gore' });
    await c.waitFor('ltx2_segment_complete');
  });
});

describe('operations', () => {
  it('shows the prompt layer in /status without keys, counts calls, fallbacks and blocks in /metrics, and logs original and final prompts', async () => {
    const logDir = await mkdtemp(join(dir, 'logs-'));
    await serverWithLlm((call) => (call.user.includes('fail') ? { status: 503 } : { content: `Cinematic: ${typed(call)}` }), {
      logging: { session_log_dir: logDir },
      streaming: { safety: { enabled: true, blocklist_path: await blocklist('gore') } },
    });
    const c = await client({ enhancement_enabled: true });
    c.send({ type: 'segment_prompt_source', prompt: 'a fox' });
    c.send({ type: 'segment_prompt_source', prompt: 'please fail' });
    c.send({ type: 'segment_prompt_source', prompt: 'gore' });
    await c.waitFor('ltx2_segment_complete', 2);
    const statusText = await (await fetch(`${server?.url}/status`)).text();
    expect(statusText).not.toContain('sk-livegen-test-secret');
    expect(JSON.parse(statusText).prompts).toMatchObject({
      llm: { enabled: true, strategy: 'fallback', providers: [{ name: 'fake', model: 'fake-model', api_key: 'set' }] },
      safety: { enabled: true, available: true },
    });
    const metrics = await (await fetch(`${server?.url}/metrics`)).text();
    expect(metrics).toMatch(/livegen_llm_request_seconds_count\{provider="fake",operation="enhance",outcome="ok"\} 1/);
    expect(metrics).toMatch(/livegen_llm_request_seconds_count\{provider="fake",operation="enhance",outcome="server_error"\} 1/);
    expect(metrics).toMatch(/livegen_prompt_fallbacks_total\{operation="enhance",kind="raw"\} 1/);
    expect(metrics).toMatch(/livegen_prompt_blocks_total\{source="user",filter="blocklist"\} 1/);
    expect(metrics).not.toContain('sk-livegen-test-secret');
    c.close();
    await c.closed;
    await expect.poll(async () => (await readdir(logDir)).length).toBe(1);
    const file = join(logDir, (await readdir(logDir))[0] as string);
    await expect
      .poll(async () => (await readFile(file, 'utf8')).includes('"event":"end"'))
      .toBe(true);
    const lines = (await readFile(file, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { event: string; payload: Record<string, unknown> });
    const starts = lines.filter((l) => l.event === 'segment_start').map((l) => l.payload);
    expect(starts[0]).toMatchObject({ prompt: 'Cinematic: a fox', original_prompt: 'a fox', source: 'enhanced' });
    expect(starts[1]).toMatchObject({ prompt: 'please fail', original_prompt: 'please fail', fallback_used: true });
    expect(lines.find((l) => l.event === 'prompt_blocked')?.payload).toMatchObject({ prompt: 'gore', filter: 'blocklist' });
  });

  it('reads edited system prompts on reloadPrompts (SIGHUP) and uses them for the next call', async () => {
    const promptDir = await mkdtemp(join(dir, 'system-'));
    await writeFile(join(promptDir, 'enhance.txt'), 'first system prompt');
    await serverWithLlm((call) => ({ content: `Cinematic: ${typed(call)}` }), { prompt: { system_prompt_dir: promptDir } });
    const c = await client({ enhancement_enabled: true });
    c.send({ type: 'segment_prompt_source', prompt: 'one' });
    await c.waitFor('ltx2_segment_complete');
    await writeFile(join(promptDir, 'enhance.txt'), 'second system prompt');
    await server?.server.reloadPrompts();
    c.send({ type: 'segment_prompt_source', prompt: 'two' });
    await c.waitFor('ltx2_segment_complete', 2);
    expect(fake?.calls.map((call) => call.system)).toEqual(['first system prompt', 'second system prompt']);
  });
});
