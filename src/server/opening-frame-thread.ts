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

/**
 * The bytes as a view that owns its ArrayBuffer, added to `transfer`. A small buffer may
 * sit in Node's shared pool, which must not be detached: it is copied first.
 */
function transferable(bytes: Uint8Array, transfer: ArrayBuffer[]): Uint8Array {
  const owned = bytes.byteOffset === 0 && bytes.buffer.byteLength === bytes.length && bytes.buffer instanceof ArrayBuffer;
  const view = owned ? bytes : new Uint8Array(bytes);
  transfer.push(view.buffer as ArrayBuffer);
  return view;
}

const port = parentPort;
if (!port) throw new Error('opening-frame-thread runs as a worker thread');

port.on('message', ({ id, frame, limits }: Request) => {
  try {
    const result = parseOpeningFrame(Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength), false, limits);
    if (!result.ok) {
      port.postMessage({ id, result });
      return;
    }
    // Transfer the decoded image and the encoded snapshot instead of copying them.
    const transfer: ArrayBuffer[] = [];
    const image = result.image ? { ...result.image, bytes: transferable(result.image.bytes, transfer) } : undefined;
    const snapshot = result.snapshot ? transferable(result.snapshot, transfer) : undefined;
    port.postMessage({ id, result: { ...result, image, snapshot } }, transfer);
  } catch (err) {
    port.postMessage({ id, error: err instanceof Error ? err.message : String(err) });
  }
});
