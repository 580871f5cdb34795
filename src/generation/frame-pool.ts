/**
 * Recycled frame buffers. A 1024x576 RGB24 frame is 1.7 MB: allocating one per frame
 * costs fresh pages (page faults) and GC work at 24 frames/s per stream. A buffer comes
 * back through the `release` callback of the frame event once the encoder has written
 * it; a frame never released is simply garbage-collected, so correctness never depends
 * on the consumer calling back.
 */
/** Where a generator gets the buffer each frame is rendered into. */
export interface FrameSource {
  /** A buffer of `size` bytes (contents undefined) and the callback that gives it back. */
  take(size: number): { buffer: Buffer; release: () => void };
}

export class FrameBufferPool implements FrameSource {
  private readonly free = new Map<number, Buffer[]>();

  constructor(private readonly maxFreePerSize = 16) {}

  /** A buffer of `size` bytes (contents undefined) and the callback that gives it back. */
  take(size: number): { buffer: Buffer; release: () => void } {
    const buffer = this.free.get(size)?.pop() ?? Buffer.allocUnsafeSlow(size);
    let released = false;
    return {
      buffer,
      release: () => {
        if (released) return; // a double release would hand one buffer to two frames
        released = true;
        const list = this.free.get(size) ?? [];
        if (list.length < this.maxFreePerSize) list.push(buffer);
        this.free.set(size, list);
      },
    };
  }

  /** Buffers waiting for reuse (for tests). */
  get freeCount(): number {
    let n = 0;
    for (const list of this.free.values()) n += list.length;
    return n;
  }
}
