/**
 * What a session generates next: the client's waiting requests first (a bounded queue),
 * then the curated prompts in turn when loop generation is on, then a prompt from the
 * `PromptExtender` when auto-extension is on. Nothing runs while generation is paused.
 */
import { Notifier } from '../async/index.js';
import type { SegmentPromptSource } from '../protocol/index.js';
import type { PromptExtender } from './prompt-extender.js';
import type { SegmentJob } from './segment.js';

/** The session flags the choice depends on (read live: the client toggles them at any time). */
export interface SchedulingFlags {
  readonly generationPaused: boolean;
  readonly loopGenerationEnabled: boolean;
  readonly autoExtensionEnabled: boolean;
  readonly curatedPrompts: readonly string[];
  readonly segmentIdx: number;
}

/** The one mapping from the wire's segment request to a job. */
export function jobFromRequest(message: SegmentPromptSource, receivedAt: number): SegmentJob {
  return {
    prompt: message.prompt,
    source: message.source,
    overrides: {
      negativePrompt: message.negative_prompt ?? undefined,
      seed: message.seed ?? undefined,
      numInferenceSteps: message.num_inference_steps ?? undefined,
      guidanceScale: message.guidance_scale ?? undefined,
    },
    receivedAt,
  };
}

export class SegmentScheduler {
  private readonly pending: SegmentJob[] = [];
  private readonly changed = new Notifier();
  private loopCursor = 0;
  private last: string | undefined;

  constructor(
    private readonly flags: SchedulingFlags,
    private readonly extender: PromptExtender,
    private readonly maxPending: number,
    private readonly clock: () => number,
    /** Told when the extender fails; the session goes on with the last prompt. */
    private readonly onExtenderFailure: (err: unknown) => void,
  ) {}

  /** Queues a client request; false when `maxPending` already wait. */
  enqueue(job: SegmentJob): boolean {
    if (this.pending.length >= this.maxPending) return false;
    this.pending.push(job);
    this.changed.notify();
    return true;
  }

  /** A flag or the curated list changed: whoever waits in `next()` looks again. */
  notify(): void {
    this.changed.notify();
  }

  /** The curated list was replaced: the loop starts over at its first prompt. */
  restartLoop(): void {
    this.loopCursor = 0;
    this.changed.notify();
  }

  /** The prompt of the segment that ran last, if any. */
  get lastPrompt(): string | undefined {
    return this.last;
  }

  /** Resolves with the next job as soon as there is one; rejects when `signal` aborts. */
  async next(signal: AbortSignal): Promise<SegmentJob> {
    for (;;) {
      signal.throwIfAborted();
      const job = this.flags.generationPaused ? undefined : await this.pick(signal);
      if (job) {
        this.last = job.prompt;
        return job;
      }
      await this.changed.wait(signal);
    }
  }

  private async pick(signal: AbortSignal): Promise<SegmentJob | undefined> {
    const requested = this.pending.shift();
    if (requested) return requested;
    const f = this.flags;
    if (f.loopGenerationEnabled && f.curatedPrompts.length > 0) {
      const prompt = f.curatedPrompts[this.loopCursor % f.curatedPrompts.length] as string;
      this.loopCursor += 1;
      return { prompt, source: 'curated', overrides: {}, receivedAt: this.clock() };
    }
    if (f.autoExtensionEnabled && this.last !== undefined) {
      const lastPrompt = this.last;
      let prompt: string;
      try {
        prompt = await this.extender.next({ lastPrompt, curatedPrompts: f.curatedPrompts, segmentIdx: f.segmentIdx, signal });
      } catch (err) {
        signal.throwIfAborted();
        this.onExtenderFailure(err);
        prompt = lastPrompt;
      }
      // A request, a pause or a toggle that arrived while the extender thought wins.
      if (this.pending.length > 0) return this.pending.shift();
      if (f.generationPaused || !f.autoExtensionEnabled) return undefined;
      return { prompt, source: 'auto_extension', overrides: {}, receivedAt: this.clock() };
    }
    return undefined;
  }
}
