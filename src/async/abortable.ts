/**
 * Resolves or rejects as `promise` does, or rejects with `signal.reason` as soon as the
 * signal aborts, whichever comes first. The abort listener is removed when the promise
 * settles, so waiting many times on one long-lived signal leaks nothing.
 */
export function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) {
    promise.catch(() => undefined); // the caller no longer listens
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

/** Waits `ms`; rejects with `signal.reason` (and clears the timer) if the signal aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const waited = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms);
  });
  if (!signal) return waited;
  return abortable(waited, signal).finally(() => clearTimeout(timer));
}
