import { afterEach, describe, expect, it } from 'vitest';
import { probeMedia, startServer, TestClient, type TestServer } from './harness.js';

const KEY = 'k3y-0123456789abcdef-secret';
const OTHER = 'other-key-0123456789abcdef';

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

/** Frame indices shown by a segment's media (the synthetic generator's strip). */
async function frameIndices(client: TestClient, segmentIdx: number): Promise<number[]> {
  const { width, height } = (server as TestServer).server.policy.sampling;
  const indices = (await probeMedia(Buffer.concat(client.segmentMedia(segmentIdx)), width, height)).frameIndices;
  expect(indices).not.toContain(null);
  return indices as number[];
}

/** A session that made one segment and dropped its connection; resolves with its token. */
async function oneSegmentThenDrop(url: string): Promise<{ token: string; lastFrame: number }> {
  const client = await TestClient.init(url);
  const assigned = await client.waitFor('gpu_assigned');
  client.send({ type: 'segment_prompt_source', prompt: 'a fox on the ice' });
  await client.waitFor('ltx2_segment_complete');
  const indices = await frameIndices(client, 0);
  // Dropped, not closed: no close frame, as when a network goes away.
  client.ws.terminate();
  return { token: assigned.resume_token as string, lastFrame: indices[indices.length - 1] as number };
}

describe('resume tokens', () => {
  it('continue the story in a new session after the connection dropped: frame indices run on', async () => {
    server = await startServer();
    const { token, lastFrame } = await oneSegmentThenDrop(server.wsUrl);
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    await expect.poll(async () => (await server!.server.inspect()).sessions.length).toBe(0);
    expect((await server.server.inspect()).resumableStates).toBe(1);

    const resumed = await TestClient.init(server.wsUrl, { resume_token: token });
    const assigned = await resumed.waitFor('gpu_assigned');
    // A new token for the new session; the old one is used up.
    expect(assigned.resume_token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(assigned.resume_token).not.toBe(token);
    resumed.send({ type: 'segment_prompt_source', prompt: 'the fox slips' });
    await resumed.waitFor('ltx2_segment_complete');
    const indices = await frameIndices(resumed, 0);
    expect(indices[0]).toBe(lastFrame + 1);
    expect(indices).toEqual(indices.map((_, i) => lastFrame + 1 + i));
    resumed.close();
  });

  it('serve one session per token: a second use is refused with invalid_message, naming the field', async () => {
    server = await startServer();
    const { token } = await oneSegmentThenDrop(server.wsUrl);
    const first = await TestClient.init(server.wsUrl, { resume_token: token });
    await first.waitFor('gpu_assigned');
    const second = await TestClient.init(server.wsUrl, { resume_token: token });
    const closed = await second.closed;
    expect(closed.code).toBe(1003);
    expect(second.messages[0]).toMatchObject({ type: 'error', code: 'invalid_message', retryable: false });
    expect(String(second.messages[0]?.message)).toContain('resume_token is unknown, expired, in use by another session');
    first.close();
  });

  it('are given back when the resuming session ends before it is active (a queue that timed out loses no story)', async () => {
    server = await startServer({ streaming: { queue_timeout_seconds: 0.5 } });
    const { token } = await oneSegmentThenDrop(server.wsUrl);
    const holder = await TestClient.init(server.wsUrl);
    await holder.waitFor('gpu_assigned');
    // The only worker is taken: this one waits, then times out in the queue.
    const waiting = await TestClient.init(server.wsUrl, { resume_token: token });
    await waiting.waitFor('queue_status');
    expect((await waiting.closed).code).not.toBe(1003);
    expect(waiting.ofType('error').map((e) => e.code)).toEqual(['gpu_unavailable']);
    holder.close();
    await expect.poll(async () => (await server!.server.inspect()).sessions.length).toBe(0);
    const again = await TestClient.init(server.wsUrl, { resume_token: token });
    expect((await again.waitFor('gpu_assigned')).resume_token).toBeTruthy();
    again.close();
  });

  it('are bound to the API key the session used', async () => {
    server = await startServer({ auth: { api_keys: [KEY, OTHER] } });
    const { token } = await oneSegmentThenDrop(`${server.wsUrl}?token=${KEY}`);
    const thief = await TestClient.init(`${server.wsUrl}?token=${OTHER}`, { resume_token: token });
    expect((await thief.closed).code).toBe(1003);
    expect(thief.messages[0]).toMatchObject({ type: 'error', code: 'invalid_message' });
    const owner = await TestClient.init(`${server.wsUrl}?token=${KEY}`, { resume_token: token });
    await owner.waitFor('gpu_assigned');
    owner.close();
  });

  it('expire resume_ttl_seconds after the last state was written', async () => {
    server = await startServer({ streaming: { resume_ttl_seconds: 1 } });
    const { token } = await oneSegmentThenDrop(server.wsUrl);
    await new Promise((resolve) => setTimeout(resolve, 1300));
    const late = await TestClient.init(server.wsUrl, { resume_token: token });
    expect((await late.closed).code).toBe(1003);
    expect(late.messages[0]).toMatchObject({ type: 'error', code: 'invalid_message' });
    expect((await server.server.inspect()).resumableStates).toBe(0);
  });

  it('refuses an init with both a continuation_state and a resume_token, and a token when tokens are off', async () => {
    server = await startServer({ streaming: { resume_ttl_seconds: 0 } });
    const plain = await TestClient.init(server.wsUrl);
    const assigned = await plain.waitFor('gpu_assigned');
    expect(assigned.resume_token).toBeUndefined();
    plain.close();
    const off = await TestClient.init(server.wsUrl, { resume_token: 'x'.repeat(43) });
    expect((await off.closed).code).toBe(1003);
    expect(String(off.messages[0]?.message)).toContain('streaming.resume_ttl_seconds is 0');
    const both = await TestClient.init(server.wsUrl, {
      resume_token: 'x'.repeat(43),
      continuation_state: { kind: 'livegen.synthetic.v1', payload: {} },
    });
    expect((await both.closed).code).toBe(1003);
    expect(String(both.messages[0]?.message)).toContain('continuation_state and resume_token');
  });

  it('gives a single clip no token (it offers no state to continue from)', async () => {
    server = await startServer();
    const client = await TestClient.init(server.wsUrl, { single_clip_mode: true });
    expect((await client.waitFor('gpu_assigned')).resume_token).toBeUndefined();
    client.close();
  });
});
