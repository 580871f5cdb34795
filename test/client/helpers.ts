import WebSocket from 'ws';
import { LivegenClient, type LivegenClientOptions, type MediaChunk } from '../../src/client/index.js';
import type { ServerMessage } from '../../src/protocol/index.js';

/** Node 20 has no global WebSocket: the SDK takes `ws` instead. */
export const nodeOptions: LivegenClientOptions = { WebSocket };

/** Everything a client heard, in order: messages, media chunks, errors and the close. */
export interface Recording {
  events: string[];
  messages: ServerMessage[];
  media: MediaChunk[];
  errors: { code: string; retryable: boolean; source: string; message: string }[];
}

export function record(client: LivegenClient): Recording {
  const rec: Recording = { events: [], messages: [], media: [], errors: [] };
  client.on('message', (m) => {
    rec.messages.push(m);
    rec.events.push(m.type);
  });
  client.on('media', (chunk) => {
    rec.media.push(chunk);
    rec.events.push(`media:${chunk.kind}`);
  });
  client.on('error', (e) => {
    rec.errors.push({ code: e.code, retryable: e.retryable, source: e.source, message: e.message });
  });
  client.on('close', () => rec.events.push('close'));
  return rec;
}

export function segmentBytes(rec: Recording, segmentIdx: number): Buffer {
  return Buffer.concat(rec.media.filter((c) => c.segmentIdx === segmentIdx).map((c) => c.data));
}

/** Waits for the `count`-th `ltx2_segment_complete` (counting from the first this client saw). */
export async function segmentsDone(client: LivegenClient, count: number, timeoutMs = 20_000): Promise<void> {
  while (client.segmentsCompleted < count) await client.next('ltx2_segment_complete', { timeoutMs });
}
