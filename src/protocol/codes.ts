/** `error.code` values (PROTOCOL.md, server → client `error`). */
export const ErrorCode = {
  SESSION_REJECTED: 'session_rejected',
  INVALID_MESSAGE: 'invalid_message',
  PRESET_MISMATCH: 'preset_mismatch',
  GPU_UNAVAILABLE: 'gpu_unavailable',
  WORKER_FAILED: 'worker_failed',
  UPSTREAM_TIMEOUT: 'upstream_timeout',
  INTERNAL_ERROR: 'internal_error',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];
export const ERROR_CODES = Object.values(ErrorCode) as [ErrorCode, ...ErrorCode[]];

/** WebSocket close codes the server uses (RFC 6455 §7.4.1 meanings). */
export const CloseCode = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  UNSUPPORTED_DATA: 1003,
  POLICY_VIOLATION: 1008,
  MESSAGE_TOO_BIG: 1009,
  INTERNAL_ERROR: 1011,
  TRY_AGAIN_LATER: 1013,
} as const;
export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];

/** `ltx2_stream_complete.reason` values. */
export const StreamCompleteReason = {
  SEGMENT_CAP: 'segment_cap',
  STOP_REQUESTED: 'stop_requested',
  ERROR: 'error',
} as const;
export type StreamCompleteReason = (typeof StreamCompleteReason)[keyof typeof StreamCompleteReason];
