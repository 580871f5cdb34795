/**
 * The worker thread behind OpeningFrameParser: parses one large opening frame at a time
 * and hands the decoded image back without copying it.
 */
import { parentPort } from 'node:worker_threads';
import { parseOpeningFrame, type OpeningFrameLimits } from './opening-frame.js';

interface Request {
  id: number;
  frame: Uint8Array;
  limits: OpeningFrameLimits;
}

const port = parentPort;
if (!port) throw new Error('opening-frame-thread runs as a worker thread');

port.on('message', ({ id, frame, limits }: Request) => {
  try {
    const result = parseOpeningFrame(Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength), false, limits);
    if (result.ok && result.image) {
      // Transfer the decoded bytes; a small image may sit in Node's shared buffer pool,
      // which must not be detached, so it is copied into its own buffer first.
      const bytes = result.image.bytes;
      const owned = bytes.byteOffset === 0 && bytes.buffer.byteLength === bytes.length;
      const copy = owned ? bytes : new Uint8Array(bytes);
      port.postMessage({ id, result: { ...result, image: { ...result.image, bytes: copy } } }, [copy.buffer as ArrayBuffer]);
      return;
    }
    port.postMessage({ id, result });
  } catch (err) {
    port.postMessage({ id, error: err instanceof Error ? err.message : String(err) });
  }
});
