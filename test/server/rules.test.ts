import { afterEach, describe, expect, it } from 'vitest';
import { sleep, startServer, TestClient, type TestServer } from './harness.js';

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

function noNulls(value: unknown): boolean {
  if (value === null || value === undefined) return false;
  if (Array.isArray(value)) return value.every(noNulls);
  if (typeof value === 'object') return Object.values(value).every(noNulls);
  return true;
}

describe('the opening frame', () => {
  it.each([
    ['another message type', JSON.stringify({ type: 'snapshot_state' })],
    ['an unknown type', JSON.stringify({ type: 'hello' })],
    ['invalid JSON', '{not json'],
    ['a session_init_v2 with a mistyped field', JSON.stringify({ type: 'session_init_v2', single_clip_mode: 'yes' })],
  ])('rejects %s with invalid_message and close 1003', async (_name, frame) => {
    server = await startServer();
    const client = await TestClient.connect(server.wsUrl);
    client.sendRaw(frame);
    const closed = await client.closed;
    expect(closed.code).toBe(1003);
    expect(client.messages).toHaveLength(1);
    expect(client.messages[0]).toMatchObject({ type: 'error', code: 'invalid_message', retryable: false });
    expect(await server.sessionCount()).toBe(0);
  });

  it('rejects a binary opening frame with invalid_message and close 1003', async () => {
    server = await startServer();
    const client = await TestClient.connect(server.wsUrl);
    client.sendRaw(Buffer.from([1, 2, 3]), true);
    expect((await client.closed).code).toBe(1003);
    expect(client.messages[0]).toMatchObject({ type: 'error', code: 'invalid_message' });
  });

  it('names the offending field in the error message', async () => {
    server = await startServer();
    const client = await TestClient.connect(server.wsUrl);
    client.send({ type: 'session_init_v2', stream_mode: 'webm' });
    await client.closed;
    expect(client.messages[0]?.message).toMatch(/^stream_mode: /);
  });

  it('times a connection out when no init arrives within the init deadline, however long the idle timeout', async () => {
    server = await startServer({ limits: { init_timeout_seconds: 0.3 }, streaming: { session_timeout_seconds: 300 } });
    const client = await TestClient.connect(server.wsUrl);
    const closed = await client.closed;
    expect(closed.code).toBe(1000);
    expect(client.messages).toEqual([{ type: 'session_timeout', timeout_seconds: 0.3 }]);
  });
});

describe('after init', () => {
  it('answers an invalid frame with a retryable invalid_message and keeps the connection', async () => {
    server = await startServer();
    const client = await TestClient.init(server.wsUrl);
    await client.waitFor('ltx2_stream_start');
    client.sendRaw('{oops');
    client.send({ type: 'enhancement_updated', enabled: 'yes' });
    client.sendRaw(Buffer.from('binary'), true);
    await client.waitFor('error', 3);
    const errors = client.ofType('error');
    expect(errors.map((e) => [e.code, e.retryable])).toEqual([
      ['invalid_message', true],
      ['invalid_message', true],
      ['invalid_message', true],
    ]);
    expect(errors[1]?.message).toBe('enabled: expected boolean');
    client.send({ type: 'snapshot_state' });
    await client.waitFor('error', 4);
    expect(client.ws.readyState).toBe(client.ws.OPEN);
    client.close();
  });

  it('applies valid toggles silently', async () => {
    server = await startServer();
    const client = await TestClient.init(server.wsUrl);
    await client.waitFor('ltx2_stream_start');
    const before = client.received.length;
    client.send({ type: 'enhancement_updated', enabled: true });
    client.send({ type: 'auto_extension_updated', enabled: false });
    client.send({ type: 'loop_generation_updated', enabled: false });
    client.send({ type: 'generation_paused_updated', paused: true });
    client.send({ type: 'seed_prompts_updated', seed_prompts: ['x', 'y'] });
    await sleep(200);
    expect(client.received.length).toBe(before);
    const session = (await server.server.inspect()).sessions[0];
    expect(session?.enhancementEnabled).toBe(true);
    expect(session?.generationPaused).toBe(true);
    expect(session?.curatedPrompts).toEqual(['x', 'y']);
    client.close();
  });

  it('applies toggles that arrive right behind the init, in the same TCP segment', async () => {
    server = await startServer({ streaming: { generation_segment_cap: 1 } });
    const client = await TestClient.connect(server.wsUrl);
    // cork: the three frames leave as one write, so the server reads them in one tick.
    const socket = (client.ws as unknown as { _socket: import('node:net').Socket })._socket;
    socket.cork();
    client.send({ type: 'session_init_v2' });
    client.send({ type: 'seed_prompts_updated', seed_prompts: ['right behind'] });
    client.send({ type: 'loop_generation_updated', enabled: true });
    socket.uncork();
    const start = await client.waitFor('ltx2_segment_start');
    expect(start).toMatchObject({ prompt: 'right behind', source: 'curated' });
    await client.closed;
  });

  it('answers snapshot_state with no stored state with internal_error and keeps the connection', async () => {
    server = await startServer();
    const client = await TestClient.init(server.wsUrl);
    await client.waitFor('ltx2_stream_start');
    client.send({ type: 'snapshot_state' });
    const error = await client.waitFor('error');
    expect(error).toMatchObject({ code: 'internal_error', retryable: false });
    await sleep(100);
    expect(client.ws.readyState).toBe(client.ws.OPEN);
    client.close();
  });

  it('keeps unknown init fields as session metadata', async () => {
    server = await startServer();
    const client = await TestClient.init(server.wsUrl, { client_id: 'c1', ui_theme: 'dark' });
    await client.waitFor('ltx2_stream_start');
    const session = (await server.server.inspect()).sessions[0];
    expect(session?.metadata).toEqual({ ui_theme: 'dark' });
    expect(session?.clientId).toBe('c1');
    client.close();
  });

  it('sends gpu_assigned with the worker id, session timeout and model id, then ltx2_stream_start with the stream geometry', async () => {
    server = await startServer({ streaming: { session_timeout_seconds: 42 } });
    const client = await TestClient.init(server.wsUrl, { preset: 'demo' });
    await client.waitFor('ltx2_stream_start');
    expect(client.messages.slice(0, 3)).toEqual([
      { type: 'queue_status', position: 0, queue_depth: 0 },
      { type: 'gpu_assigned', gpu_id: 0, session_timeout: 42, model_id: 'livegen/synthetic', resume_token: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/) },
      { type: 'ltx2_stream_start', preset: 'demo', width: 192, height: 112, fps: 24, num_frames: 24 },
    ]);
    client.close();
  });

  it('rejects an init naming another preset than the server serves with preset_mismatch', async () => {
    server = await startServer({ streaming: { preset: 'ltx2-distilled' } });
    const client = await TestClient.init(server.wsUrl, { preset: 'wan' });
    expect((await client.closed).code).toBe(1003);
    expect(client.messages[0]).toMatchObject({ type: 'error', code: 'preset_mismatch' });
  });
});

describe('budgets', () => {
  it('rejects a session past max_sessions with session_rejected and close 1013', async () => {
    server = await startServer({ streaming: { max_sessions: 1 } });
    const first = await TestClient.init(server.wsUrl);
    await first.waitFor('ltx2_stream_start');
    // Connections waiting for their init are counted apart: the second is refused when its init arrives.
    const second = await TestClient.init(server.wsUrl);
    expect((await second.closed).code).toBe(1013);
    expect(second.messages).toEqual([expect.objectContaining({ type: 'error', code: 'session_rejected' })]);
    first.close();
  });

  it('refuses a connection past max_pending_inits with session_rejected and close 1013, without counting it as a session', async () => {
    server = await startServer({ limits: { max_pending_inits: 2 }, streaming: { max_sessions: 16 } });
    const waiting = [await TestClient.connect(server.wsUrl), await TestClient.connect(server.wsUrl)];
    const third = await TestClient.connect(server.wsUrl);
    expect((await third.closed).code).toBe(1013);
    expect(third.messages).toEqual([expect.objectContaining({ type: 'error', code: 'session_rejected', retryable: true })]);
    // A real session still gets in while the pending ones wait.
    waiting[0]?.send({ type: 'session_init_v2' });
    await waiting[0]?.waitFor('gpu_assigned');
    for (const client of waiting) client.close();
  });

  it('ends an idle active session with session_timeout and close 1000', async () => {
    server = await startServer({ streaming: { session_timeout_seconds: 0.4 } });
    const client = await TestClient.init(server.wsUrl);
    await client.waitFor('ltx2_stream_start');
    const closed = await client.closed;
    expect(closed.code).toBe(1000);
    expect(client.messages.at(-1)).toEqual({ type: 'session_timeout', timeout_seconds: 0.4 });
    expect(await server.sessionCount()).toBe(0);
  });

  it('completes the session at the segment cap with reason segment_cap and close 1000', async () => {
    server = await startServer({ streaming: { generation_segment_cap: 2 } });
    const client = await TestClient.init(server.wsUrl);
    await client.waitFor('ltx2_stream_start');
    client.send({ type: 'segment_prompt_source', prompt: 'one' });
    client.send({ type: 'segment_prompt_source', prompt: 'two' });
    const closed = await client.closed;
    expect(closed.code).toBe(1000);
    expect(client.ofType('ltx2_segment_complete').map((m) => m.segment_idx)).toEqual([0, 1]);
    expect(client.messages.at(-1)).toEqual({ type: 'ltx2_stream_complete', reason: 'segment_cap' });
  });

  it('answers a full per-session request queue with a retryable error, never a silent drop', async () => {
    server = await startServer({ streaming: { max_pending_requests: 2 }, generator: { synthetic: { pace: 'realtime', step_ms: 0 } } });
    const client = await TestClient.init(server.wsUrl);
    await client.waitFor('ltx2_stream_start');
    client.send({ type: 'segment_prompt_source', prompt: 'p0' });
    await client.waitFor('ltx2_segment_start');
    for (let i = 1; i < 4; i++) client.send({ type: 'segment_prompt_source', prompt: `p${i}` });
    const error = await client.waitFor('error');
    expect(error).toMatchObject({ code: 'gpu_unavailable', retryable: true });
    // One runs, two wait, one is refused: three segments in all.
    await client.waitFor('ltx2_segment_complete', 3);
    expect(client.ofType('ltx2_segment_start').map((m) => m.prompt)).toEqual(['p0', 'p1', 'p2']);
    client.close();
  });
});

describe('every server frame', () => {
  it('carries no null or undefined field', async () => {
    server = await startServer();
    const client = await TestClient.init(server.wsUrl);
    await client.waitFor('ltx2_stream_start');
    client.send({ type: 'segment_prompt_source', prompt: 'x' });
    await client.waitFor('ltx2_segment_complete');
    client.send({ type: 'snapshot_state' });
    await client.waitFor('continuation_state_snapshot');
    expect(client.messages.every(noNulls)).toBe(true);
    client.close();
  });
});
