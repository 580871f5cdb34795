import { afterEach, describe, expect, it } from 'vitest';
import { probeMedia, startServer, TestClient, type TestServer } from './harness.js';

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

describe('a session streams segments end to end', () => {
  it('init, request, and the full segment sequence arrive in order with decodable media', async () => {
    server = await startServer();
    const client = await TestClient.init(server.wsUrl, { curated_prompts: ['a red fox'] });
    await client.waitFor('ltx2_stream_start');
    client.send({ type: 'segment_prompt_source', prompt: 'a red fox' });
    await client.waitFor('ltx2_segment_complete');
    const types = client.messages.map((m) => m.type);
    expect(types.slice(0, 4)).toEqual(['queue_status', 'gpu_assigned', 'ltx2_stream_start', 'ltx2_segment_start']);
    const media = Buffer.concat(client.segmentMedia(0));
    const probe = await probeMedia(media, 192, 112);
    expect(probe.codecs).toEqual(['h264', 'aac']);
    expect(probe.videoFrames).toBe(24);
    expect(probe.frameIndices).toEqual(Array.from({ length: 24 }, (_, i) => i));
    client.close();
  });
});
