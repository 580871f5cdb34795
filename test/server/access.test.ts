import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { startServer, TestClient, type TestServer } from './harness.js';
import { waitUntil } from '../reliability/helpers.js';

const KEY = 'k3y-0123456789abcdef-secret';
const OTHER = 'zzzz-wrong-key-that-is-long';

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

/** Attempts an upgrade; resolves with the HTTP refusal (status and body) or 'open'. */
function attempt(url: string, options: WebSocket.ClientOptions = {}): Promise<{ status: number; body: string } | 'open'> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false, ...options });
    ws.once('open', () => {
      ws.close();
      resolve('open');
    });
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    ws.once('error', (err) => {
      if (!/Unexpected server response/.test(err.message)) reject(err);
    });
  });
}

describe('API keys', () => {
  it('refuses an upgrade without a key with HTTP 401 and a reason', async () => {
    server = await startServer({ auth: { api_keys: [KEY] } });
    const result = await attempt(server.wsUrl);
    expect(result).not.toBe('open');
    if (result === 'open') return;
    expect(result.status).toBe(401);
    expect(JSON.parse(result.body).message).toMatch(/API key is required/);
  });

  it('refuses a wrong key with 401 and never echoes it', async () => {
    server = await startServer({ auth: { api_keys: [KEY] } });
    for (const result of [
      await attempt(server.wsUrl, { headers: { authorization: `Bearer ${OTHER}` } }),
      await attempt(`${server.wsUrl}?token=${OTHER}`),
    ]) {
      expect(result).not.toBe('open');
      if (result === 'open') return;
      expect(result.status).toBe(401);
      expect(result.body).not.toContain(OTHER);
      expect(result.body).not.toContain(KEY);
    }
  });

  it('accepts the key as a Bearer header or as a token query parameter', async () => {
    server = await startServer({ auth: { api_keys: [KEY] } });
    expect(await attempt(server.wsUrl, { headers: { authorization: `Bearer ${KEY}` } })).toBe('open');
    expect(await attempt(`${server.wsUrl}?token=${encodeURIComponent(KEY)}`)).toBe('open');
  });

  it('accepts keys from LIVEGEN_API_KEYS', async () => {
    process.env.LIVEGEN_API_KEYS = `unused-0000000000000,${OTHER}`;
    try {
      server = await startServer();
      expect((await attempt(server.wsUrl)) === 'open').toBe(false);
      expect(await attempt(`${server.wsUrl}?token=${OTHER}`)).toBe('open');
    } finally {
      delete process.env.LIVEGEN_API_KEYS;
    }
  });

  it('limits concurrent sessions per key with session_rejected and close 1008', async () => {
    server = await startServer({ auth: { api_keys: [KEY], max_sessions_per_key: 1 } });
    const first = await TestClient.init(`${server.wsUrl}?token=${KEY}`);
    await first.waitFor('gpu_assigned');
    const second = await TestClient.connect(`${server.wsUrl}?token=${KEY}`);
    const closed = await second.closed;
    expect(closed.code).toBe(1008);
    expect(second.messages[0]).toMatchObject({ type: 'error', code: 'session_rejected' });
    first.close();
    await first.closed;
    // The place is given back when the first session ends.
    await waitUntil(async () => (await server!.sessionCount()) === 0, 'first session closed');
    const third = await TestClient.init(`${server.wsUrl}?token=${KEY}`);
    await third.waitFor('gpu_assigned');
    third.close();
  });

  it('keeps health routes open and protects /status and /metrics when protect_status is on', async () => {
    server = await startServer({ auth: { api_keys: [KEY], protect_status: true } });
    for (const path of ['/health', '/healthz', '/readyz']) expect((await fetch(`${server.url}${path}`)).status).toBe(200);
    for (const path of ['/status', '/metrics']) {
      const refused = await fetch(`${server.url}${path}`);
      expect(refused.status).toBe(401);
      expect(refused.headers.get('www-authenticate')).toBe('Bearer');
      expect((await fetch(`${server.url}${path}`, { headers: { authorization: `Bearer ${KEY}` } })).status).toBe(200);
    }
  });
});

describe('origins and rates', () => {
  it('refuses a WebSocket from an origin not on the allowed list with 403', async () => {
    server = await startServer({ auth: { allowed_origins: ['https://app.example'] } });
    const refused = await attempt(server.wsUrl, { origin: 'https://evil.example' });
    expect(refused).toMatchObject({ status: 403 });
    expect(await attempt(server.wsUrl, { origin: 'https://app.example' })).toBe('open');
  });

  it('refuses connections past the per-IP rate with 429', async () => {
    server = await startServer({ limits: { connections_per_minute_per_ip: 3 } });
    const results = [];
    for (let i = 0; i < 4; i++) results.push(await attempt(server.wsUrl));
    expect(results.slice(0, 3)).toEqual(['open', 'open', 'open']);
    expect(results[3]).toMatchObject({ status: 429 });
  });

  it('counts every loopback address as one network, so rotating source addresses does not evade the rate', async () => {
    server = await startServer({ limits: { connections_per_minute_per_ip: 3 } });
    const results = [];
    for (const localAddress of ['127.0.0.1', '127.0.0.2', '127.0.0.3', '127.0.0.4']) results.push(await attempt(server.wsUrl, { localAddress }));
    expect(results.slice(0, 3)).toEqual(['open', 'open', 'open']);
    expect(results[3]).toMatchObject({ status: 429 });
  });
});
