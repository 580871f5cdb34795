/** Why an encode failed, so callers can tell a broken ffmpeg from a bad frame or a cancel. */
export type EncoderErrorCode =
  /** ffmpeg could not be started (missing binary, no permission). */
  | 'spawn_failed'
  /** ffmpeg exited non-zero (bad option, codec error) or before its inputs were closed. */
  | 'ffmpeg_failed'
  /** ffmpeg was killed by a signal livegen did not send. */
  | 'ffmpeg_killed'
  /** ffmpeg's output could not be split into boxes or images. */
  | 'bad_output'
  /** A write was refused: wrong frame size, no audio configured, or after `end()`. */
  | 'invalid_input';

export class EncoderError extends Error {
  override readonly name = 'EncoderError';
  readonly code: EncoderErrorCode;
  /** The last lines ffmpeg wrote to stderr, when it said anything. */
  readonly stderr: string;

  constructor(code: EncoderErrorCode, message: string, options: { stderr?: string; cause?: unknown } = {}) {
    const stderr = options.stderr?.trim() ?? '';
    super(stderr ? `${message}: ${stderr}` : message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.stderr = stderr;
  }
}

/** The encode was cancelled by `abort()`; named like the platform's AbortError so `err.name === 'AbortError'` checks work. */
export class EncoderAbortedError extends Error {
  override readonly name = 'AbortError';
  readonly code = 'ABORT_ERR';

  constructor(reason?: unknown) {
    super('encoder aborted', reason === undefined ? undefined : { cause: reason });
  }
}

export function isAbortError(error: unknown): boolean {
  return error instanceof Error && error.name === 'AbortError';
}
