import { writeFileSync } from 'node:fs';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { probeMedia, sleep, startServer, TestClient, type TestServer } from '../server/harness.js';

// The FastVideo bridge, driven end to end through livegen over a real socket, on top of
// a stub `fastvideo` package written for this test (no GPU, no weights here).
const BRIDGE = fileURLToPath(new URL('../../workers/fastvideo/livegen_fastvideo_worker.py', import.meta.url));
const STUB = fileURLToPath(new URL('../fixtures/fastvideo-stub', import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), 'livegen-fastvideo-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

function bridgeConfig(env: Record<string, string> = {}): Record<string, unknown> {
  return {
    pool: { workers: 1, gpu_ids: [5] },
    generator: {
      kind: 'worker',
      worker: {
        command: 'python3',
        args: [BRIDGE, '--model-path', '/models/stub-ltx2', '--option', 'num_gpus=1', '--audio-sample-rate', '16000', '--continuation-kind', 'fastvideo.stub.v1'],
        env: { PYTHONPATH: STUB, PYTHONUNBUFFERED: '1', ...env },
        start_timeout_seconds: 30,
        restart_backoff_ms: 5000,
      },
    },
  };
}

async function waitReady(base: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while ((await fetch(`${base}/readyz`)).status !== 200) {
    if (Date.now() > deadline) throw new Error(`worker never ready: ${await (await fetch(`${base}/status`)).text()}`);
    await sleep(100);
  }
}

describe('the FastVideo bridge', () => {
  it.each([['generate_async (streamed frames)', 'async'], ['generate (blocking)', 'sync']])(
    'maps requests, frames, audio and continuation state through %s',
    async (_name, mode) => {
      server = await startServer(bridgeConfig({ STUB_MODE: mode }));
      await waitReady(server.url);
      const client = await TestClient.init(server.wsUrl);
      await client.waitFor('ltx2_stream_start');
      expect(client.ofType('gpu_assigned')[0]).toMatchObject({ gpu_id: 5, model_id: 'stub-ltx2' });
      client.send({ type: 'segment_prompt_source', prompt: 'a koi pond', negative_prompt: 'blur', seed: 7, num_inference_steps: 4, guidance_scale: 3.5 });
      await client.waitFor('ltx2_segment_complete', 1, 20_000);
      const steps = client.ofType('step_complete');
      expect(steps.at(-1)).toMatchObject({ step: 4, total_steps: 4, stage: 'denoise' });
      if (mode === 'async') expect(steps.map((s) => s.step)).toEqual([1, 2, 3, 4]);
      const media = await probeMedia(Buffer.concat(client.segmentMedia(0)), 192, 112);
      expect(media.codecs).toEqual(['h264', 'aac']);
      expect(media.videoFrames).toBe(24);
      client.send({ type: 'snapshot_state' });
      const snapshot = await client.waitFor('continuation_state_snapshot');
      expect(snapshot.state).toEqual({
        kind: 'fastvideo.stub.v1',
        payload: {
          next_frame: 24,
          model_path: '/models/stub-ltx2',
          num_gpus: 1,
          cuda_visible_devices: '5',
          last_request: {
            prompt: 'a koi pond',
            negative_prompt: 'blur',
            seed: 7,
            steps: 4,
            guidance_scale: 3.5,
            size: [192, 112],
            image_path: null,
            had_state: false,
          },
        },
      });
      client.send({ type: 'segment_prompt_source', prompt: 'the koi swim on' });
      await client.waitFor('ltx2_segment_complete', 2, 20_000);
      client.send({ type: 'snapshot_state' });
      const second = await client.waitFor('continuation_state_snapshot', 2);
      expect(second.state.payload).toMatchObject({ next_frame: 48, last_request: { had_state: true } });
      client.close();
    },
  );

  it('resumes a new session from a snapshot and passes the initial image path', async () => {
    server = await startServer(bridgeConfig());
    await waitReady(server.url);
    const png = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==';
    const client = await TestClient.init(server.wsUrl, {
      continuation_state: { kind: 'fastvideo.stub.v1', payload: { next_frame: 100 } },
      initial_image: { mime: 'image/png', data: png },
    });
    await client.waitFor('ltx2_stream_start');
    client.send({ type: 'segment_prompt_source', prompt: 'resume' });
    await client.waitFor('ltx2_segment_complete', 1, 20_000);
    client.send({ type: 'snapshot_state' });
    const snapshot = await client.waitFor('continuation_state_snapshot');
    expect(snapshot.state.payload.next_frame).toBe(124);
    const last = snapshot.state.payload.last_request as Record<string, unknown>;
    expect(last.had_state).toBe(true);
    expect(String(last.image_path)).toMatch(/initial\.png$/);
    client.close();
  });

  it('rejects a continuation state of another kind than the worker declares', async () => {
    server = await startServer(bridgeConfig());
    await waitReady(server.url);
    const client = await TestClient.init(server.wsUrl, { continuation_state: { kind: 'livegen.synthetic.v1', payload: {} } });
    expect((await client.closed).code).toBe(1003);
    expect(client.messages[0]?.message).toMatch(/continuation_state\.kind: expected "fastvideo\.stub\.v1"/);
  });

  it('reports a model that fails to load in /status and keeps it out of the pool', async () => {
    server = await startServer(bridgeConfig({ STUB_FAIL_LOAD: '1' }));
    const deadline = Date.now() + 30_000;
    let entry: Record<string, unknown> | undefined;
    while (Date.now() < deadline) {
      const body = (await (await fetch(`${server.url}/status`)).json()) as { gpu_status: Record<string, Record<string, unknown>> };
      entry = body.gpu_status['5'];
      if (entry?.warmup_error) break;
      await sleep(100);
    }
    expect(String(entry?.warmup_error)).toMatch(/load failed: RuntimeError: weights not found/);
    expect(entry).toMatchObject({ ready: false, available: false });
    expect((await fetch(`${server.url}/readyz`)).status).toBe(503);
  });
});

// Keep the example in the README runnable: it must parse as a config.
describe('the README example config for a FastVideo model', () => {
  it('is a valid livegen config', async () => {
    const { readFileSync } = await import('node:fs');
    const { loadConfigFile } = await import('../../src/server/index.js');
    const readme = readFileSync(fileURLToPath(new URL('../../README.md', import.meta.url)), 'utf8');
    const match = /```yaml\n(# fastvideo\.yaml[\s\S]*?)```/.exec(readme);
    expect(match, 'README has a ```yaml block starting with "# fastvideo.yaml"').not.toBeNull();
    const file = join(tmp, 'fastvideo.yaml');
    writeFileSync(file, match?.[1] ?? '');
    const config = loadConfigFile(file);
    expect(config.generator.kind).toBe('worker');
    expect(config.generator.worker.command).toBe('python3');
  });
});
