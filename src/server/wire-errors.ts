/**
 * The one place where an internal failure becomes what a client is told: an error code
 * from the protocol's catalogue, a message that names the cause without leaking
 * internals, and whether retrying can help.
 */
import { ContinuationStateError, InvalidSegmentRequestError } from '../generation/index.js';
import { WorkerFailure } from '../generation/worker/index.js';
import { EncoderError, isAbortError } from '../media/index.js';
import { ErrorCode } from '../protocol/index.js';

export interface WireError {
  code: ErrorCode;
  message: string;
  retryable: boolean;
}

/** The filesystem is full or out of quota: the server, not the client, must make room. */
const NO_SPACE = new Set(['ENOSPC', 'EDQUOT']);
/** The process or system ran out of descriptors: transient, retrying later can work. */
const NO_DESCRIPTORS = new Set(['EMFILE', 'ENFILE']);

/** The generator threw something that is not one of its typed errors. */
export class GenerationFailure extends Error {
  override readonly name = 'GenerationFailure';
}

/** A continuation store call failed (the store is down, or refused the write). */
export class StoreError extends Error {
  override readonly name = 'StoreError';
}

/** Thrown where temp space for a session's files cannot be had (full disk, over the temp budget). */
export class TempSpaceError extends Error {
  override readonly name = 'TempSpaceError';
}

function errnoOf(err: unknown): string | undefined {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

function causeOf(err: unknown): unknown {
  return err instanceof Error ? err.cause : undefined;
}

/** Maps any error thrown while serving a session to the client's `error` frame. */
export function toWireError(err: unknown): WireError {
  if (err instanceof WorkerFailure) {
    if (err.reason === 'invalid_continuation') {
      const message = err.message.startsWith('continuation_state') ? err.message : `continuation_state: ${err.message}`;
      return { code: ErrorCode.INVALID_MESSAGE, message, retryable: false };
    }
    return { code: ErrorCode.WORKER_FAILED, message: `generation failed: ${err.message}`, retryable: true };
  }
  if (err instanceof GenerationFailure) return { code: ErrorCode.WORKER_FAILED, message: `generation failed: ${err.message}`, retryable: true };
  if (err instanceof ContinuationStateError) {
    return { code: ErrorCode.INVALID_MESSAGE, message: `continuation_state.${err.message.replace(/^continuationState\.?/, '')}`, retryable: false };
  }
  if (err instanceof InvalidSegmentRequestError) {
    return { code: ErrorCode.INVALID_MESSAGE, message: `segment request refused by the generator: ${err.message}`, retryable: false };
  }
  if (err instanceof EncoderError) {
    const errno = errnoOf(causeOf(err));
    if (err.code === 'spawn_failed' && errno && NO_DESCRIPTORS.has(errno)) {
      return { code: ErrorCode.INTERNAL_ERROR, message: 'media encoder unavailable: the server is out of file descriptors; retry later', retryable: true };
    }
    if (err.code === 'spawn_failed') return { code: ErrorCode.INTERNAL_ERROR, message: 'media encoder unavailable', retryable: true };
    return { code: ErrorCode.INTERNAL_ERROR, message: `media encoding failed (${err.code})`, retryable: true };
  }
  if (err instanceof StoreError) {
    return { code: ErrorCode.INTERNAL_ERROR, message: 'the continuation state could not be stored', retryable: true };
  }
  if (err instanceof TempSpaceError) return { code: ErrorCode.INTERNAL_ERROR, message: err.message, retryable: true };
  const errno = errnoOf(err);
  if (errno && NO_SPACE.has(errno)) {
    return { code: ErrorCode.INTERNAL_ERROR, message: "the server's temp space is full; retry later", retryable: true };
  }
  if (errno && NO_DESCRIPTORS.has(errno)) {
    return { code: ErrorCode.INTERNAL_ERROR, message: 'the server is out of file descriptors; retry later', retryable: true };
  }
  if (isAbortError(err)) return { code: ErrorCode.INTERNAL_ERROR, message: 'the operation was cancelled', retryable: true };
  return { code: ErrorCode.INTERNAL_ERROR, message: 'internal error', retryable: true };
}
