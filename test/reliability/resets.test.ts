/**
 * A peer may reset its TCP connection at any moment. Whatever the stage, the server must
 * stay up, release what the connection held, and go on serving everyone else.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startServer, TestClient, type TestServer } from '../server/harness.js';
import { expectHealthy, waitUntil } from './helpers.js';
import { clientFrame, frameHeader, Opcode, RawWsClient, upgradeRequest } from './raw-ws.js';

const KEY = 'reset-test-key-0123456789';

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

function portOf(s: TestServer): number {
  return Number(new URL(s.url).port);
}

/** A full session still streams a segment: the server and its worker are fine. */
async function expectServing(s: TestServer): Promise<void> {
  await expectHealthy(s.url);
  const client = await TestClient.init(s.wsUrl);
  await client.waitFor('gpu_assigned');
  client.send({ type: 'segment_prompt_source', prompt: 'after the resets' });
  await client.waitFor('ltx2_segment_complete');
  client.close();
  await client.closed;
}

describe('a TCP reset at every stage of a connection', () => {
  it('before the upgrade: at connect and in the middle of the request line', async () => {
    server = await startServer();
    const port = portOf(server);
    for (let i = 0; i < 5; i++) {
      (await RawWsClient.open(port)).reset();
      const partial = await RawWsClient.open(port);
      partial.write('GET /v1/str');
      partial.reset();
    }
    await expectServing(server);
  });

  it('on every refused upgrade (404, 401, 403, 429), before and after the answer is read', async () => {
    server = await startServer({
      auth: { api_keys: [KEY], allowed_origins: ['https://allowed.example'] },
      limits: { connections_per_minute_per_ip: 3 },
    });
    const port = portOf(server);
    const cases: { path: string; headers: Record<string, string>; status: number }[] = [
      { path: '/nowhere', headers: {}, status: 404 },
      { path: '/v1/stream', headers: { Origin: 'https://evil.example' }, status: 403 },
      { path: '/v1/stream', headers: { Origin: 'https://allowed.example' }, status: 401 },
    ];
    for (let round = 0; round < 3; round++) {
      for (const c of cases) {
        // Reset as soon as the request is out, racing the server's answer.
        const early = await RawWsClient.open(port);
        early.write(upgradeRequest(c.path, c.headers));
        early.reset();
        // Reset after reading the answer.
        const late = await RawWsClient.handshake(port, c.path, c.headers);
        expect(late.status === c.status || late.status === 429).toBe(true);
        late.reset();
      }
    }
    // By now the rate limit refuses everything from this address: 429, reset too.
    const limited = await RawWsClient.handshake(port, '/v1/stream', { Origin: 'https://allowed.example', Authorization: `Bearer ${KEY}` });
    expect(limited.status).toBe(429);
    limited.reset();
    await expectHealthy(server.url);
  });

  it('mid-handshake, mid-frame and on a session the server refused', async () => {
    server = await startServer({ streaming: { max_sessions: 1 } });
    const port = portOf(server);
    for (let i = 0; i < 5; i++) {
      const handshaking = await RawWsClient.open(port);
      handshaking.write(upgradeRequest('/v1/stream'));
      handshaking.reset();

      const framing = await RawWsClient.handshake(port);
      expect(framing.status).toBe(101);
      const { header } = frameHeader(Opcode.TEXT, 4000);
      framing.write(header);
      framing.write(Buffer.alloc(100, 0x20));
      framing.reset();
    }
    const holder = await TestClient.init(server.wsUrl);
    await holder.waitFor('gpu_assigned');
    for (let i = 0; i < 5; i++) {
      // The server is full: this one is answered session_rejected, and resets meanwhile.
      const refused = await RawWsClient.handshake(port);
      refused.write(clientFrame(Opcode.TEXT, JSON.stringify({ type: 'session_init_v2' })));
      refused.reset();
    }
    holder.close();
    await holder.closed;
    await waitUntil(async () => (await server?.sessionCount()) === 0, 'every session to be gone');
    await expectServing(server);
  });

  it('mid-media: the session ends, its worker is freed and the next client streams', async () => {
    server = await startServer({ generator: { synthetic: { pace: 'realtime' } } });
    const port = portOf(server);
    for (let i = 0; i < 3; i++) {
      const raw = await RawWsClient.handshake(port);
      raw.sendText(JSON.stringify({ type: 'session_init_v2' }));
      raw.sendText(JSON.stringify({ type: 'segment_prompt_source', prompt: 'reset me' }));
      await raw.until(() => raw.frames.some((f) => f.opcode === Opcode.BINARY), 'the first media frame');
      raw.reset();
    }
    await waitUntil(async () => (await server?.sessionCount()) === 0, 'the reset sessions to end');
    await expectServing(server);
  });
});
