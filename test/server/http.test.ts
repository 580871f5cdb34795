import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { sleep, startServer, TestClient, type TestServer } from './harness.js';

let server: TestServer | undefined;
const clients: TestClient[] = [];

afterEach(async () => {
  for (const client of clients.splice(0)) client.close();
  await server?.close();
  server = undefined;
});

const ISO_UTC = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

type Json = Record<string, unknown>;

async function getJson(path: string, init?: RequestInit): Promise<{ status: number; type: string | null; body: Json }> {
  const res = await fetch(`${server?.url}${path}`, init);
  return { status: res.status, type: res.headers.get('content-type'), body: (await res.json()) as Json };
}

function expectRecentTs(ts: unknown): void {
  expect(ts).toMatch(ISO_UTC);
  expect(Math.abs(Date.parse(ts as string) - Date.now())).toBeLessThan(5_000);
}

/** A session that has bound a worker and idles in `active` (no prompt sent). */
async function activeSession(): Promise<TestClient> {
  if (!server) throw new Error('no server');
  const client = await TestClient.init(server.wsUrl);
  clients.push(client);
  await client.waitFor('ltx2_stream_start');
  return client;
}

async function until(predicate: () => Promise<boolean>, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

const WORKER_FIELDS = [
  'ready',
  'available',
  'client_count',
  'current_model_id',
  'process_alive',
  'warmup_enabled',
  'warmup_success',
  'warmup_error',
  'warmup_timings',
] as const;

describe('GET /health', () => {
  it('reports ok, the session count, the stream mode, the service and a timestamp', async () => {
    server = await startServer();
    const { status, type, body } = await getJson('/health');
    expect(status).toBe(200);
    expect(type).toMatch(/^application\/json/);
    expect(Object.keys(body).sort()).toEqual(['pending_inits', 'service', 'sessions', 'status', 'stream_mode', 'ts']);
    expect(body).toMatchObject({ status: 'ok', sessions: 0, stream_mode: 'av_fmp4', service: 'livegen' });
    expectRecentTs(body.ts);
  });

  it('counts sessions while connected and forgets them after they leave', async () => {
    server = await startServer();
    const client = await activeSession();
    expect((await getJson('/health')).body.sessions).toBe(1);
    const second = await queuedSession();
    expect((await getJson('/health')).body.sessions).toBe(2);
    client.close();
    second.close();
    await until(async () => (await getJson('/health')).body.sessions === 0, 'sessions back to 0');
  });

  it('reports the configured stream mode', async () => {
    server = await startServer({ streaming: { stream_mode: 'legacy_jpeg' } });
    expect((await getJson('/health')).body.stream_mode).toBe('legacy_jpeg');
  });

  it('ignores a query string and answers HEAD without a body', async () => {
    server = await startServer();
    expect((await getJson('/health?probe=1')).body.status).toBe('ok');
    const head = await fetch(`${server.url}/health`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe('');
  });
});

/** A second session on a one-worker server: registered and queued. */
async function queuedSession(): Promise<TestClient> {
  if (!server) throw new Error('no server');
  const client = await TestClient.init(server.wsUrl);
  clients.push(client);
  await client.waitFor('queue_status');
  return client;
}

describe('GET /healthz', () => {
  it('reports status, service and ts only', async () => {
    server = await startServer();
    const { status, type, body } = await getJson('/healthz');
    expect(status).toBe(200);
    expect(type).toMatch(/^application\/json/);
    expect(Object.keys(body).sort()).toEqual(['service', 'status', 'ts']);
    expect(body).toMatchObject({ status: 'ok', service: 'livegen' });
    expectRecentTs(body.ts);
  });
});

describe('GET /readyz', () => {
  it('answers 200 ready with every field of the protocol', async () => {
    server = await startServer();
    const { status, body } = await getJson('/readyz');
    expect(status).toBe(200);
    expect(body).toMatchObject({
      status: 'ready',
      ready_gpu_workers: 1,
      total_gpus: 1,
      available_gpus: 1,
      warmup_successful_gpus: 0,
      warmup_failed_gpus: 0,
      queue_size: 0,
    });
    expectRecentTs(body.ts);
  });

  it('follows the pool and the queue', async () => {
    server = await startServer({ pool: { workers: 2 } });
    await activeSession();
    await activeSession();
    await queuedSession();
    const { status, body } = await getJson('/readyz');
    expect(status).toBe(200);
    expect(body).toMatchObject({ status: 'ready', ready_gpu_workers: 2, total_gpus: 2, available_gpus: 0, queue_size: 1 });
  });
});

describe('GET /status', () => {
  it('reports every field of the protocol, with one idle worker', async () => {
    server = await startServer();
    const { status, type, body } = await getJson('/status');
    expect(status).toBe(200);
    expect(type).toMatch(/^application\/json/);
    expect(body).toMatchObject({
      total_gpus: 1,
      available_gpus: 1,
      queue_size: 0,
      warmup_enabled: false,
      warmup_successful_gpus: 0,
      warmup_failed_gpus: 0,
    });
    const gpus = body.gpu_status as Record<string, Json>;
    expect(Object.keys(gpus)).toEqual(['0']);
    const worker = gpus['0'] as Json;
    for (const field of WORKER_FIELDS) expect(worker, field).toHaveProperty(field);
    expect(worker).toMatchObject({
      ready: true,
      available: true,
      client_count: 0,
      current_model_id: 'livegen/synthetic',
      process_alive: true,
      warmup_enabled: false,
      warmup_success: false,
      warmup_error: null,
      warmup_timings: {},
    });
  });

  it('shows the worker busy with one client while a session holds it, and free after', async () => {
    server = await startServer();
    const client = await activeSession();
    let { body } = await getJson('/status');
    expect(body.available_gpus).toBe(0);
    expect((body.gpu_status as Record<string, Json>)['0']).toMatchObject({ available: false, client_count: 1, ready: true });

    await queuedSession();
    ({ body } = await getJson('/status'));
    expect(body.queue_size).toBe(1);

    client.close();
    // The queued session takes the worker over; once it leaves too, the worker is free.
    await until(async () => (await getJson('/status')).body.queue_size === 0, 'queue drained');
    for (const c of clients) c.close();
    await until(async () => (await getJson('/status')).body.available_gpus === 1, 'worker released');
    expect(((await getJson('/status')).body.gpu_status as Record<string, Json>)['0']).toMatchObject({ available: true, client_count: 0 });
  });

  it('lists one entry per worker', async () => {
    server = await startServer({ pool: { workers: 2 }, generator: { model_id: 'test/model' } });
    await activeSession();
    const { body } = await getJson('/status');
    expect(body).toMatchObject({ total_gpus: 2, available_gpus: 1 });
    const gpus = body.gpu_status as Record<string, Json>;
    expect(Object.keys(gpus).sort()).toEqual(['0', '1']);
    for (const worker of Object.values(gpus)) {
      for (const field of WORKER_FIELDS) expect(worker, field).toHaveProperty(field);
      expect(worker.current_model_id).toBe('test/model');
    }
    expect(Object.values(gpus).map((w) => [w.available, w.client_count]).sort()).toEqual([
      [false, 1],
      [true, 0],
    ]);
  });
});

describe('GET /metrics', () => {
  it('answers Prometheus text with the session, queue and worker gauges', async () => {
    server = await startServer();
    await activeSession();
    const res = await fetch(`${server.url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await res.text();
    expect(text).toContain('# TYPE livegen_sessions gauge');
    expect(text).toMatch(/^livegen_sessions\{state="active"\} 1$/m);
    expect(text).toContain('# TYPE livegen_queue_depth gauge');
    expect(text).toMatch(/^livegen_queue_depth 0$/m);
    expect(text).toContain('# TYPE livegen_workers gauge');
    // The label's name is the metrics module's business; its values are not.
    expect(text).toMatch(/^livegen_workers\{\w+="busy"\} 1$/m);
    expect(text).toMatch(/^livegen_workers\{\w+="available"\} 0$/m);
  });
});

describe('other requests', () => {
  it('answers an unknown path with 404 JSON giving a reason', async () => {
    server = await startServer();
    const { status, type, body } = await getJson('/nope');
    expect(status).toBe(404);
    expect(type).toMatch(/^application\/json/);
    expect(body).toEqual({ error: 'not_found', message: 'no route /nope' });
  });

  it('answers POST on a route with 405 JSON', async () => {
    server = await startServer();
    for (const path of ['/health', '/status', '/metrics']) {
      const { status, body } = await getJson(path, { method: 'POST', body: '{}' });
      expect(status, path).toBe(405);
      expect(body.error).toBe('method_not_allowed');
      expect(body.message).toContain(path);
    }
  });

  it('answers a plain GET of the stream path with 404 (it only takes WebSocket upgrades)', async () => {
    server = await startServer();
    expect((await getJson('/v1/stream')).status).toBe(404);
  });

  it('refuses a WebSocket upgrade on another path with 404', async () => {
    server = await startServer();
    const ws = new WebSocket(`${server.url.replace(/^http/, 'ws')}/v1/other`);
    const statusCode = await new Promise<number>((resolve, reject) => {
      ws.once('unexpected-response', (_req, res) => {
        resolve(res.statusCode ?? 0);
        res.resume();
      });
      ws.once('open', () => reject(new Error('upgrade on /v1/other was accepted')));
      ws.once('error', () => {
        // the refusal also surfaces as an error after unexpected-response
      });
    });
    ws.terminate();
    expect(statusCode).toBe(404);
    expect(await server.sessionCount()).toBe(0);
  });
});

describe('close()', () => {
  it('stops accepting connections on the port', async () => {
    server = await startServer();
    const { port, hostname } = new URL(server.url);
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
    await server.close();
    server = undefined;
    const refused = await new Promise<string>((resolve) => {
      const socket = connect(Number(port), hostname);
      socket.once('connect', () => {
        socket.destroy();
        resolve('connected');
      });
      socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
    });
    expect(refused).toBe('ECONNREFUSED');
  });

  it('closes connected sessions with 1001', async () => {
    server = await startServer();
    const client = await activeSession();
    await server.close();
    server = undefined;
    expect((await client.closed).code).toBe(1001);
  });
});

describe('server.web_root', () => {
  it('serves a static export at / with its MIME types, .html for extensionless paths and immutable hashed assets', async () => {
    const root = mkdtempSync(join(tmpdir(), 'livegen-web-root-'));
    try {
      mkdirSync(join(root, '_next', 'static', 'css'), { recursive: true });
      mkdirSync(join(root, 'internal'), { recursive: true });
      writeFileSync(join(root, 'index.html'), '<!doctype html><title>export</title>');
      writeFileSync(join(root, '_next', 'static', 'css', 'a1b2.css'), 'body{}');
      writeFileSync(join(root, 'internal', 'monitor.html'), '<p>monitor</p>');
      writeFileSync(join(root, 'font.woff2'), Buffer.from([0x77, 0x4f, 0x46, 0x32]));
      server = await startServer({ server: { web_root: root } });
      const index = await fetch(`${server.url}/`);
      expect(index.headers.get('content-type')).toContain('text/html');
      expect(index.headers.get('cache-control')).toBe('no-cache');
      expect(await index.text()).toContain('<title>export</title>');
      const css = await fetch(`${server.url}/_next/static/css/a1b2.css`);
      expect(css.headers.get('content-type')).toContain('text/css');
      expect(css.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
      expect(await (await fetch(`${server.url}/internal/monitor`)).text()).toBe('<p>monitor</p>');
      expect((await fetch(`${server.url}/font.woff2`)).headers.get('content-type')).toBe('font/woff2');
      expect((await fetch(`${server.url}/missing.js`)).status).toBe(404);
      // The dialect it talks to is on the same origin.
      const ws = new WebSocket(`${server.url.replace(/^http/, 'ws')}/ws`);
      await new Promise<void>((resolve, reject) => ws.once('open', () => resolve()).once('error', reject));
      ws.close();
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('refuses to start, naming the field, when the directory has no index.html', async () => {
    const root = mkdtempSync(join(tmpdir(), 'livegen-web-root-'));
    try {
      await expect(startServer({ server: { web_root: root } })).rejects.toThrow(/^server\.web_root: .* has no index\.html/);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
