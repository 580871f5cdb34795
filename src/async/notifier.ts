import { abortable } from './abortable.js';

/**
 * Wakes whoever waits: `wait()` resolves at the next `notify()`. Waiters share one
 * promise, so a thousand waits cost one allocation, and an aborted wait removes its
 * listener. A `notify()` with nobody waiting is not remembered: callers re-check their
 * condition in a loop (`while (!ready) await notifier.wait(signal)`).
 */
export class Notifier {
  private pending: { promise: Promise<void>; resolve: () => void } | undefined;

  wait(signal?: AbortSignal): Promise<void> {
    if (!this.pending) {
      let resolve: () => void = () => undefined;
      const promise = new Promise<void>((r) => (resolve = r));
      this.pending = { promise, resolve };
    }
    return abortable(this.pending.promise, signal);
  }

  notify(): void {
    const pending = this.pending;
    this.pending = undefined;
    pending?.resolve();
  }
}
