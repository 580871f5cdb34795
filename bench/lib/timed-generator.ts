/** A Generator wrapper that stamps when each segment's first video frame was yielded. */
import { performance } from 'node:perf_hooks';
import type { AudioFormat, GenerationEvent, Generator, SegmentRequest } from '../../src/generation/types.js';

export class TimedGenerator implements Generator {
  /** `performance.now()` of each segment's first video frame, in segment order. */
  readonly firstFrameAt: number[] = [];
  readonly continuationKind: string | undefined;

  constructor(private readonly inner: Generator & { continuationKind?: string }) {
    this.continuationKind = inner.continuationKind;
  }

  get modelId(): string {
    return this.inner.modelId;
  }

  get audio(): AudioFormat | null {
    return this.inner.audio;
  }

  async *generate(request: SegmentRequest, signal: AbortSignal): AsyncGenerator<GenerationEvent> {
    let first = true;
    for await (const event of this.inner.generate(request, signal)) {
      if (first && event.type === 'video') {
        first = false;
        this.firstFrameAt.push(performance.now());
      }
      yield event;
    }
  }
}
