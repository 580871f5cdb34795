import type { ErrorCode } from '../protocol/codes.js';

/** Failures the client itself detects (the server's own codes are `ErrorCode`). */
export const ClientErrorCode = {
  /** The socket could not be opened. */
  CONNECTION_FAILED: 'connection_failed',
  /** The socket closed while something waited on it. */
  CONNECTION_CLOSED: 'connection_closed',
  /** A call needs an open socket (before `connect`, or after the close). */
  NOT_OPEN: 'not_open',
  /** The call would send a frame the protocol refuses (checked before sending). */
  INVALID_REQUEST: 'invalid_request',
  /** A server frame failed the protocol schema. */
  INVALID_SERVER_MESSAGE: 'invalid_server_message',
  /** A binary frame arrived outside a segment's media (no `media_init` before it). */
  UNEXPECTED_BINARY: 'unexpected_binary',
  /** A wait took longer than its limit. */
  TIMEOUT: 'timeout',
} as const;
export type ClientErrorCode = (typeof ClientErrorCode)[keyof typeof ClientErrorCode];

export interface LivegenErrorOptions {
  retryable?: boolean;
  /** `server`: an `error` frame from the server; `client`: detected here. */
  source?: 'server' | 'client';
  /** The server's additive `reason` (`prompt_blocked`), when it gave one. */
  reason?: string;
  /** The prompt a `prompt_blocked` error refused, when the server named it. */
  prompt?: string;
  cause?: unknown;
}

/** Every error the SDK reports: a code, whether trying again may help, and who raised it. */
export class LivegenError extends Error {
  override readonly name = 'LivegenError';
  readonly code: ErrorCode | ClientErrorCode;
  readonly retryable: boolean;
  readonly source: 'server' | 'client';
  /** Why, beyond the code (`prompt_blocked`: the safety filter refused a prompt; the session goes on). */
  readonly reason: string | undefined;
  /** The refused prompt of a `prompt_blocked` error. */
  readonly prompt: string | undefined;

  constructor(code: ErrorCode | ClientErrorCode, message: string, options: LivegenErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retryable = options.retryable ?? false;
    this.source = options.source ?? 'client';
    this.reason = options.reason;
    this.prompt = options.prompt;
  }
}
