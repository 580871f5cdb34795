/**
 * A well-behaved session that streams through a benchmark (loop generation on), so a
 * benchmark can tell whether everyone else kept being served while it did something
 * hostile: segments completed and media frames received in a window, and the longest
 * gap between two media frames (at 100 ms fragments a stream that flows shows ~100 ms;
 * the gap includes this process's own stalls).
 */
import { performance } from 'node:perf_hooks';
import { BenchClient } from './client.js';

export interface BystanderWindow {
  seconds: number;
  segmentsCompleted: number;
  mediaFrames: number;
  mediaBytes: number;
  /** Longest time between two media frames in the window (or from its start to the first), ms. */
  maxMediaGapMs: number;
  /** The session was still open at the end of the window. */
  open: boolean;
  /** `error` frames it received in the window. */
  errors: string[];
}

export class Bystander {
  private windowStart = 0;
  private segments = 0;
  private frames = 0;
  private bytes = 0;
  private lastMediaAt = 0;
  private maxGap = 0;
  private errors: string[] = [];

  private constructor(readonly client: BenchClient) {
    client.onBinary = (data, at) => {
      this.frames += 1;
      this.bytes += data.length;
      this.maxGap = Math.max(this.maxGap, at - this.lastMediaAt);
      this.lastMediaAt = at;
    };
    client.onJson = (message) => {
      if (message.type === 'ltx2_segment_complete') this.segments += 1;
      if (message.type === 'error') this.errors.push(String(message.code ?? message.message));
    };
  }

  /** Connects, initialises with loop generation on, and waits for its first media. */
  static async start(wsUrl: string): Promise<Bystander> {
    const client = await BenchClient.connect(wsUrl);
    const bystander = new Bystander(client);
    const started = client.next('ltx2_segment_start', 30_000);
    client.send({ type: 'session_init_v2', client_id: 'bench-bystander', curated_prompts: ['a bystander'], loop_generation_enabled: true });
    await started;
    const deadline = performance.now() + 10_000;
    while (bystander.frames === 0 && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    bystander.mark();
    return bystander;
  }

  /** Starts a window: counts restart now. */
  mark(): void {
    this.windowStart = performance.now();
    this.segments = 0;
    this.frames = 0;
    this.bytes = 0;
    this.lastMediaAt = this.windowStart;
    this.maxGap = 0;
    this.errors = [];
  }

  /** What arrived since `mark()`. */
  read(): BystanderWindow {
    const now = performance.now();
    return {
      seconds: (now - this.windowStart) / 1000,
      segmentsCompleted: this.segments,
      mediaFrames: this.frames,
      mediaBytes: this.bytes,
      maxMediaGapMs: Math.max(this.maxGap, now - this.lastMediaAt),
      open: this.client.isOpen,
      errors: [...this.errors],
    };
  }

  close(): void {
    this.client.terminate();
  }
}
