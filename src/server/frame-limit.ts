/**
 * Per-connection limits on incoming frame size, enforced when a frame's header arrives.
 *
 * `ws` takes one `maxPayload` for the whole server, but livegen allows a large opening
 * frame (it may carry a 32 MiB image) and only small frames after it. `ws` checks the
 * limit in its receiver as soon as a frame's length is known, before buffering the
 * payload, and reads the limit from the receiver on every frame; lowering it after the
 * opening frame makes every later oversized frame fail at its header. The receiver is
 * not public API, so this module is the only place that touches it, checks that it looks
 * as expected, and reports when it does not (the caller then falls back to checking the
 * size of frames after they arrive).
 */
import type { WebSocket } from 'ws';

interface ReceiverView {
  _maxPayload: number;
  prependListener(event: 'error', listener: (err: Error & { code?: string }) => void): unknown;
}

function receiverOf(ws: WebSocket): ReceiverView | undefined {
  const receiver = (ws as unknown as { _receiver?: Partial<ReceiverView> })._receiver;
  if (!receiver || typeof receiver._maxPayload !== 'number' || typeof receiver.prependListener !== 'function') return undefined;
  return receiver as ReceiverView;
}

/** True when the header-time limit can be applied to this connection. */
export function canLimitFrames(ws: WebSocket): boolean {
  return receiverOf(ws) !== undefined;
}

/**
 * Sets the largest frame `ws` accepts from now on; a larger one is refused at its header
 * (ws closes 1009). Returns false when the receiver is not reachable.
 */
export function setMaxFrameBytes(ws: WebSocket, bytes: number): boolean {
  const receiver = receiverOf(ws);
  if (!receiver) return false;
  receiver._maxPayload = bytes;
  return true;
}

/**
 * Runs `onOversize` when a frame is refused for its size, before `ws` sends its close
 * frame, so the server can send its own `error` frame first (every end the server
 * initiates is announced before the close).
 */
export function onOversizeFrame(ws: WebSocket, onOversize: () => void): boolean {
  const receiver = receiverOf(ws);
  if (!receiver) return false;
  receiver.prependListener('error', (err) => {
    if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') onOversize();
  });
  return true;
}
