/** Waiting that an AbortSignal cuts short, for generators that imitate a model's pace. */
import { performance } from 'node:perf_hooks';

/** Resolve after `ms`, or reject with the signal's reason as soon as it aborts. */
export function abortableDelay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason as Error);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal.reason as Error);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** Wait until `performance.now()` reaches `deadlineMs` (timers may fire a little early, so loop). */
export async function waitUntil(deadlineMs: number, signal: AbortSignal): Promise<void> {
  for (let left = deadlineMs - performance.now(); left > 0; left = deadlineMs - performance.now()) {
    await abortableDelay(Math.ceil(left), signal);
  }
  signal.throwIfAborted();
}

/** Let I/O and timers run: a generator that never waits would otherwise starve the server. */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
