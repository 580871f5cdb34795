/**
 * Errors a generator throws before it makes anything. They name the offending field so
 * the caller can report it; any other error thrown mid-segment is a generation failure.
 */

/** A segment request (or generator option) the generator cannot honour. */
export class InvalidSegmentRequestError extends Error {
  override readonly name = 'InvalidSegmentRequestError';
  constructor(
    readonly field: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${field}: ${message}`, options);
  }
}

/** Continuation state that this generator did not write, or that is damaged. */
export class ContinuationStateError extends Error {
  override readonly name = 'ContinuationStateError';
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
  }
}

/** A short, safe rendering of a bad value for error messages. */
export function describeValue(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (typeof value === 'number' || typeof value === 'boolean' || value === null || value === undefined) {
    return String(value);
  }
  return Array.isArray(value) ? 'an array' : `a ${typeof value}`;
}
