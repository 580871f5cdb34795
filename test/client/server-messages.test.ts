import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer, type WebSocket as ServerSocket } from 'ws';
import { LivegenClient } from '../../src/client/index.js';
import { nodeOptions, record } from './helpers.js';

/** A scripted server: whatever `script` sends, over a real socket. */
async function scriptedServer(script: (socket: ServerSocket) => void): Promise<{ url: string; close(): Promise<void> }> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((resolve) => wss.once('listening', resolve));
  wss.on('connection', (socket) => socket.once('message', () => script(socket)));
  const { port } = wss.address() as AddressInfo;
  return {
    url: `ws://127.0.0.1:${port}/v1/stream`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of wss.clients) c.terminate();
        wss.close(() => resolve());
      }),
  };
}

let close: (() => Promise<void>) | undefined;
afterEach(async () => {
  await close?.();
  close = undefined;
});

describe('LivegenClient reading server frames', () => {
  it('ignores unknown types and fields, and reports invalid known messages and stray binary frames', async () => {
    const server = await scriptedServer((socket) => {
      socket.send(JSON.stringify({ type: 'from_the_future', x: 1 }));
      socket.send(JSON.stringify({ type: 'queue_status', position: 2, queue_depth: 3, eta_ms: 900 }));
      socket.send(JSON.stringify({ type: 'queue_status', position: -1, queue_depth: 3 }));
      socket.send('not json');
      socket.send(Buffer.from('stray'), { binary: true });
      socket.send(JSON.stringify({ type: 'media_init', segment_idx: 0, stream_id: 's' }));
      socket.send(Buffer.from('init'), { binary: true });
      socket.send(Buffer.from('frag'), { binary: true });
      socket.send(JSON.stringify({ type: 'media_segment_complete', segment_idx: 0, stream_id: 's', chunks: 1 }));
      socket.close(1000, 'done');
    });
    close = server.close;
    const client = await LivegenClient.connect(server.url, nodeOptions);
    const rec = record(client);
    const unknown: string[] = [];
    client.on('unknown', (u) => unknown.push(u.type));
    client.init();
    expect((await client.closed).code).toBe(1000);

    expect(unknown).toEqual(['from_the_future']);
    expect(rec.messages.map((m) => m.type)).toEqual(['queue_status', 'media_init', 'media_segment_complete']);
    expect(client.queue).toEqual({ type: 'queue_status', position: 2, queue_depth: 3 });
    expect(rec.errors.map((e) => e.code)).toEqual(['invalid_server_message', 'invalid_server_message', 'unexpected_binary']);
    expect(rec.errors[0]?.message).toMatch(/queue_status\.position/);
    // media_init's defaults apply: the mime a client feeds to MSE is always there.
    expect(rec.media.map((c) => [c.kind, Buffer.from(c.data).toString(), c.mime])).toEqual([
      ['init', 'init', 'video/mp4; codecs="avc1.64001f, mp4a.40.2"'],
      ['fragment', 'frag', 'video/mp4; codecs="avc1.64001f, mp4a.40.2"'],
    ]);
  });
});
