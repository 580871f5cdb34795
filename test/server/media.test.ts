import { afterEach, describe, expect, it } from 'vitest';
import { childBoxes, findChild, iterateBoxes, readBaseMediaDecodeTime, readTracks } from '../../src/media/index.js';
import { readFragmentTrackId } from '../../src/media/boxes.js';
import { probeMedia, startServer, TestClient, type TestServer } from './harness.js';

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

function boxTypes(data: Buffer): string[] {
  return [...iterateBoxes(data)].map((b) => b.type);
}

async function runSegments(client: TestClient, prompts: string[]): Promise<void> {
  await client.waitFor('ltx2_stream_start');
  for (const prompt of prompts) client.send({ type: 'segment_prompt_source', prompt });
  await client.waitFor('ltx2_segment_complete', prompts.length);
}

describe('media over the socket', () => {
  it('sends box-aligned binary frames: ftyp+moov first, then whole moof+mdat pairs', async () => {
    server = await startServer();
    const client = await TestClient.init(server.wsUrl);
    await runSegments(client, ['boxes']);
    const frames = client.segmentMedia(0);
    expect(boxTypes(frames[0] as Buffer)).toEqual(['ftyp', 'moov']);
    expect(frames.length).toBeGreaterThan(2);
    for (const frame of frames.slice(1)) {
      const types = boxTypes(frame);
      expect(types.length % 2).toBe(0);
      for (let i = 0; i < types.length; i += 2) expect(types.slice(i, i + 2)).toEqual(['moof', 'mdat']);
    }
    const complete = client.ofType('media_segment_complete')[0];
    expect(complete?.chunks).toBe(frames.length - 1);
    expect(complete?.bytes).toBe(frames.reduce((n, f) => n + f.length, 0));
    expect(complete?.duration_ms).toBe(1000);
    expect(complete?.pts_base_ms).toBe(0);
    client.close();
  });

  it('derives media_init.mime from the encoded avcC box and sends it right before the first binary frame', async () => {
    server = await startServer();
    const client = await TestClient.init(server.wsUrl);
    await runSegments(client, ['mime']);
    const init = client.ofType('media_init')[0];
    expect(init?.mime).toMatch(/^video\/mp4; codecs="avc1\.[0-9a-f]{6}, mp4a\.40\.2"$/);
    const moov = client.segmentMedia(0)[0] as Buffer;
    const avcc = moov.indexOf(Buffer.from('avcC'));
    const profile = moov.subarray(avcc + 5, avcc + 8).toString('hex');
    expect(init?.mime).toContain(`avc1.${profile}`);
    const initIndex = client.received.findIndex((r) => r.kind === 'json' && r.message.type === 'media_init');
    expect(client.received[initIndex + 1]?.kind).toBe('binary');
    expect(client.received.slice(0, initIndex).some((r) => r.kind === 'binary')).toBe(false);
    client.close();
  });

  it('encodes H.264 + AAC whose frames carry consecutive indices within and across segments', async () => {
    server = await startServer();
    const client = await TestClient.init(server.wsUrl);
    await runSegments(client, ['first', 'second']);
    const first = await probeMedia(Buffer.concat(client.segmentMedia(0)), 192, 112);
    const second = await probeMedia(Buffer.concat(client.segmentMedia(1)), 192, 112);
    expect(first.codecs).toEqual(['h264', 'aac']);
    expect(first.hasAudio).toBe(true);
    expect(first.videoFrames).toBe(24);
    expect(first.durationS).toBeCloseTo(1, 1);
    expect(first.frameIndices).toEqual(Array.from({ length: 24 }, (_, i) => i));
    expect(second.frameIndices).toEqual(Array.from({ length: 24 }, (_, i) => 24 + i));
    client.close();
  });

  it('starts each segment at pts_base_ms, the sum of the earlier durations, in media_segment_complete and in tfdt', async () => {
    server = await startServer();
    const client = await TestClient.init(server.wsUrl);
    await runSegments(client, ['a', 'b', 'c']);
    const completes = client.ofType('media_segment_complete');
    expect(completes.map((m) => m.pts_base_ms)).toEqual([0, 1000, 2000]);
    for (const [idx, expectedMs] of [[1, 1000], [2, 2000]] as const) {
      const frames = client.segmentMedia(idx);
      const moov = [...iterateBoxes(frames[0] as Buffer)].find((b) => b.type === 'moov');
      const tracks = readTracks(moov!);
      expect(tracks.map((t) => t.handler).sort()).toEqual(['soun', 'vide']);
      // The first fragment of each track starts at the segment's pts base.
      const firstTfdt = new Map<number, bigint>();
      for (const fragment of frames.slice(1)) {
        for (const moof of [...iterateBoxes(fragment)].filter((b) => b.type === 'moof')) {
          for (const traf of [...childBoxes(moof)].filter((b) => b.type === 'traf')) {
            const trackId = readFragmentTrackId(findChild(traf, 'tfhd')!);
            if (!firstTfdt.has(trackId)) firstTfdt.set(trackId, readBaseMediaDecodeTime(findChild(traf, 'tfdt')!));
          }
        }
      }
      for (const track of tracks) {
        const tfdt = firstTfdt.get(track.trackId);
        expect(tfdt).toBeDefined();
        expect(Number(tfdt) / track.timescale).toBeCloseTo(expectedMs / 1000, 2);
      }
      const probe = await probeMedia(Buffer.concat(frames), 192, 112);
      expect(probe.startTimeS).toBeGreaterThanOrEqual(expectedMs / 1000 - 0.05);
      expect(probe.startTimeS).toBeLessThan(expectedMs / 1000 + 0.1);
    }
    client.close();
  });

  it('ships the first fragment while the segment is still being generated', async () => {
    server = await startServer({
      default_request: { sampling: { num_frames: 72 } },
      generator: { synthetic: { pace: 'realtime', step_ms: 0 } },
    });
    const client = await TestClient.init(server.wsUrl);
    await runSegments(client, ['live']);
    const binaries = client.received.filter((r) => r.kind === 'binary');
    const firstFragment = binaries[1];
    const complete = client.received.find((r) => r.kind === 'json' && r.message.type === 'media_segment_complete');
    // 72 frames paced at 24 fps take three seconds to generate; the first fragment must not wait for them.
    expect(complete!.at - firstFragment!.at).toBeGreaterThan(1500);
    client.close();
  });

  it('continues frame indices in a new session hydrated from a snapshot', async () => {
    server = await startServer();
    const first = await TestClient.init(server.wsUrl);
    await runSegments(first, ['story']);
    first.send({ type: 'snapshot_state' });
    const snapshot = await first.waitFor('continuation_state_snapshot');
    expect(snapshot.state.kind).toBe('livegen.synthetic.v1');
    expect(snapshot.kind).toBe(snapshot.state.kind);
    expect(snapshot.payload).toEqual(snapshot.state.payload);
    first.close();
    await first.closed;

    const second = await TestClient.init(server.wsUrl, { continuation_state: snapshot.state });
    await runSegments(second, ['story goes on']);
    const probe = await probeMedia(Buffer.concat(second.segmentMedia(0)), 192, 112);
    expect(probe.frameIndices).toEqual(Array.from({ length: 24 }, (_, i) => 24 + i));
    second.close();
  });

  it('replaces the stored continuation state after every segment', async () => {
    server = await startServer();
    const client = await TestClient.init(server.wsUrl);
    await runSegments(client, ['one']);
    client.send({ type: 'snapshot_state' });
    const afterOne = await client.waitFor('continuation_state_snapshot');
    client.send({ type: 'segment_prompt_source', prompt: 'two' });
    await client.waitFor('ltx2_segment_complete', 2);
    client.send({ type: 'snapshot_state' });
    const afterTwo = await client.waitFor('continuation_state_snapshot', 2);
    expect(afterOne.state.payload.nextFrameIndex).toBe(24);
    expect(afterTwo.state.payload.nextFrameIndex).toBe(48);
    client.close();
  });

  it('rejects a continuation state of another generator kind at init', async () => {
    server = await startServer();
    const client = await TestClient.init(server.wsUrl, { continuation_state: { kind: 'other.v1', payload: {} } });
    expect((await client.closed).code).toBe(1003);
    expect(client.messages[0]).toMatchObject({ type: 'error', code: 'invalid_message' });
    expect(client.messages[0]?.message).toMatch(/^continuation_state\.kind/);
  });

  it('answers snapshot_state at once while a segment runs', async () => {
    server = await startServer({
      default_request: { sampling: { num_frames: 48 } },
      generator: { synthetic: { pace: 'realtime', step_ms: 0 } },
    });
    const client = await TestClient.init(server.wsUrl);
    await runSegments(client, ['first']);
    client.send({ type: 'segment_prompt_source', prompt: 'second' });
    await client.waitFor('ltx2_segment_start', 2);
    client.send({ type: 'snapshot_state' });
    await client.waitFor('continuation_state_snapshot');
    // The answer came while the second segment was still running.
    expect(client.ofType('ltx2_segment_complete')).toHaveLength(1);
    client.close();
  });
});

describe('resuming from a continuation state the generator cannot read', () => {
  it('is refused at init with invalid_message naming the payload field, not at the first segment', async () => {
    server = await startServer();
    const client = await TestClient.init(server.wsUrl, {
      continuation_state: { kind: 'livegen.synthetic.v1', payload: { nextFrameIndex: 'soon' } },
    });
    expect((await client.closed).code).toBe(1003);
    expect(client.messages).toHaveLength(1);
    expect(client.messages[0]).toMatchObject({ type: 'error', code: 'invalid_message', retryable: false });
    expect(client.messages[0]?.message).toMatch(/^continuation_state\.payload\./);
  });
});
