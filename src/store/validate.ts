/**
 * Argument checks every store implementation shares, so the memory and the Redis
 * versions refuse the same inputs with the same errors.
 */

/** Throws a RangeError unless `ttlMs` is absent or a positive finite number. */
export function checkTtl(ttlMs: number | undefined): void {
  if (ttlMs === undefined) return;
  if (typeof ttlMs !== 'number' || !Number.isFinite(ttlMs) || ttlMs <= 0) {
    throw new RangeError(`ttlMs must be a positive number of milliseconds, got ${String(ttlMs)}`);
  }
}

/** Throws a RangeError unless `perMinute` is a finite number at or above zero. */
export function checkPerMinute(perMinute: number): void {
  if (typeof perMinute !== 'number' || !Number.isFinite(perMinute) || perMinute < 0) {
    throw new RangeError(`perMinute must be a finite number at or above 0, got ${String(perMinute)}`);
  }
}

/** Throws a RangeError unless `limit` is a whole number at or above zero. */
export function checkLimit(limit: number): void {
  if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 0) {
    throw new RangeError(`limit must be a whole number at or above 0, got ${String(limit)}`);
  }
}
