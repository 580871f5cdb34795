/** The livegen client SDK: one typed client for Node and browsers, sharing only `src/protocol`. */
export {
  LivegenClient,
  type CloseInfo,
  type ConnectionPhase,
  type LivegenClientEvents,
  type LivegenClientOptions,
  type MediaChunk,
  type SegmentRequestOptions,
  type SessionInitFields,
  type SessionPhase,
  type UnknownServerMessage,
} from './client.js';
export { TypedEmitter, type Listener } from './emitter.js';
export { ClientErrorCode, LivegenError, type LivegenErrorOptions } from './errors.js';
export { parseContinuationState, readServerFrame, type ReadServerFrame } from './messages.js';
export {
  SocketState,
  globalWebSocket,
  streamUrl,
  type SocketCloseEvent,
  type SocketMessageEvent,
  type WebSocketConstructor,
  type WebSocketLike,
} from './websocket.js';
export { CloseCode, ErrorCode } from '../protocol/codes.js';
export { DEFAULT_MEDIA_MIME } from '../protocol/server-messages.js';
export type { ContinuationState, SessionInitV2, SegmentPromptSource } from '../protocol/client-messages.js';
export type {
  ContinuationStateSnapshot,
  ErrorMessage,
  GpuAssigned,
  Ltx2SegmentComplete,
  Ltx2SegmentStart,
  Ltx2StreamComplete,
  Ltx2StreamStart,
  MediaInit,
  MediaSegmentComplete,
  QueueStatus,
  ServerMessage,
  ServerMessageOf,
  ServerMessageType,
  SessionTimeout,
  StepComplete,
} from '../protocol/server-messages.js';
