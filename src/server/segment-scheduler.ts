/**
 * What a session generates next: the client's waiting requests first (a bounded queue),
 * then the curated prompts in turn when loop generation is on, then a prompt from the
 * `PromptExtender` when auto-extension is on. Nothing runs while generation is paused.
 *
 * The LLM work runs ahead of the generator: a request is enhanced as soon as it is
 * queued, and the next auto-extension prompt is asked for as soon as a segment starts, so
 * between two segments the LLM adds no wait when it is faster than a segment.
 */
import { abortable, Notifier } from '../async/index.js';
import type { CheckedSource, EnhancedPrompt, ExtendedPrompt, PromptExtender, PromptProvenance, SafetyVerdict } from '../prompts/index.js';
import type { SegmentPromptSource } from '../protocol/index.js';
import type { SegmentJob } from './segment.js';

/** The session flags the choice depends on (read live: the client toggles them at any time). */
export interface SchedulingFlags {
  readonly generationPaused: boolean;
  readonly loopGenerationEnabled: boolean;
  readonly autoExtensionEnabled: boolean;
  readonly enhancementEnabled: boolean;
  readonly curatedPrompts: readonly string[];
  readonly segmentIdx: number;
}

/** What the scheduler needs of the prompt layer. */
export interface PromptPreparation {
  /** An LLM is configured (enhancement can do something). */
  readonly llmAvailable: boolean;
  check(prompt: string, source: CheckedSource): SafetyVerdict;
  enhance(prompt: string, context: { history: readonly string[]; signal: AbortSignal }): Promise<EnhancedPrompt>;
}

export type EnqueueResult = { ok: true } | { ok: false; reason: 'full' } | { ok: false; reason: 'blocked'; verdict: SafetyVerdict & { allowed: false } };

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

/** A queued request, with its enhancement running when it asked for one. */
interface Pending {
  job: SegmentJob;
  enhanced?: Promise<EnhancedPrompt>;
  abort?: AbortController;
}

/** The auto-extension prompt asked for while a segment runs: for the segment after it. */
interface Ahead {
  /** The prompt it continues; it is used only if the story still ends there. */
  basis: string;
  result: Promise<{ ok: true; value: string | ExtendedPrompt } | { ok: false; error: unknown }>;
  abort: AbortController;
}

/** Prompts of the story so far the LLM gets to see (the prompt layer trims further). */
const HISTORY = 64;

export class SegmentScheduler {
  private readonly pending: Pending[] = [];
  private readonly changed = new Notifier();
  private readonly history: string[] = [];
  private loopCursor = 0;
  private last: string | undefined;
  private ahead: Ahead | undefined;

  constructor(
    private readonly flags: SchedulingFlags,
    private readonly extender: PromptExtender,
    private readonly prompts: PromptPreparation,
    private readonly maxPending: number,
    private readonly clock: () => number,
    /** Aborted when the session ends: every LLM call made for it stops. */
    private readonly lifetime: AbortSignal,
    /** Told when the extender fails or its prompt is blocked; the session goes on with the last prompt. */
    private readonly onExtenderFailure: (err: unknown) => void,
  ) {}

  /**
   * Queues a client request: refused when its prompt is blocked or `maxPending` already
   * wait. With enhancement on, the request's enhancement starts now.
   */
  enqueue(job: SegmentJob): EnqueueResult {
    const verdict = this.prompts.check(job.prompt, job.source === 'curated' || job.source === 'enhanced' ? job.source : 'user');
    if (!verdict.allowed) return { ok: false, reason: 'blocked', verdict };
    if (this.pending.length >= this.maxPending) return { ok: false, reason: 'full' };
    const entry: Pending = { job };
    if (job.source === 'user' && this.flags.enhancementEnabled) {
      if (this.prompts.llmAvailable) {
        entry.abort = new AbortController();
        const signal = AbortSignal.any([this.lifetime, entry.abort.signal]);
        // The story it continues: what ran, then the requests ahead of it.
        const context = [...this.history, ...this.pending.map((p) => p.job.prompt)];
        entry.enhanced = this.prompts.enhance(job.prompt, { history: context, signal });
        entry.enhanced.catch(() => undefined); // aborted with the session; nobody waits then
      } else {
        job.provenance = { original: job.prompt, fallbackUsed: true, error: 'this server has no LLM for enhancement (streaming.prompt.enabled is false)' };
      }
    }
    this.pending.push(entry);
    // A request goes before any auto-extension: the one asked for ahead is not needed.
    this.dropAhead();
    this.changed.notify();
    return { ok: true };
  }

  /** A flag or the curated list changed: whoever waits in `next()` looks again. */
  notify(): void {
    if (!this.flags.autoExtensionEnabled || this.flags.generationPaused) this.dropAhead();
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

  /**
   * Resolves with the next job as soon as there is one and its prompt is final (an
   * enhancement finished or fell back); rejects when `signal` aborts.
   */
  async next(signal: AbortSignal): Promise<SegmentJob> {
    for (;;) {
      signal.throwIfAborted();
      const job = this.flags.generationPaused ? undefined : await this.pick(signal);
      if (job) {
        this.last = job.prompt;
        this.history.push(job.prompt);
        if (this.history.length > HISTORY) this.history.shift();
        this.askAhead();
        return job;
      }
      await this.changed.wait(signal);
    }
  }

  private async pick(signal: AbortSignal): Promise<SegmentJob | undefined> {
    const requested = this.pending.shift();
    if (requested) return this.finalRequest(requested, signal);
    const f = this.flags;
    if (f.loopGenerationEnabled && f.curatedPrompts.length > 0) {
      const prompt = f.curatedPrompts[this.loopCursor % f.curatedPrompts.length] as string;
      this.loopCursor += 1;
      return { prompt, source: 'curated', overrides: {}, receivedAt: this.clock() };
    }
    if (f.autoExtensionEnabled && this.last !== undefined) {
      const lastPrompt = this.last;
      const ahead = this.ahead?.basis === lastPrompt ? this.ahead : undefined;
      this.ahead = undefined;
      const outcome = await (ahead?.result ?? this.askExtender(lastPrompt, f.segmentIdx, signal));
      signal.throwIfAborted();
      const { prompt, provenance } = this.checkedExtension(lastPrompt, outcome);
      // A request, a pause or a toggle that arrived while the extender thought wins.
      if (this.pending.length > 0) return this.pick(signal);
      if (f.generationPaused || !f.autoExtensionEnabled) return undefined;
      return { prompt, source: 'auto_extension', overrides: {}, receivedAt: this.clock(), provenance };
    }
    return undefined;
  }

  /** A request's job with its enhancement's outcome: the LLM's prompt, or the user's with the reason. */
  private async finalRequest(entry: Pending, signal: AbortSignal): Promise<SegmentJob> {
    if (!entry.enhanced) return entry.job;
    const outcome = await abortable(entry.enhanced, signal);
    const { prompt, enhanced, ...provenance } = outcome;
    return { ...entry.job, prompt, source: enhanced ? 'enhanced' : entry.job.source, provenance };
  }

  /**
   * Asks for the prompt after the segment that starts now, while it generates: used if
   * the story still ends with that segment's prompt when it is done and nothing else waits.
   */
  private askAhead(): void {
    const f = this.flags;
    const last = this.last;
    if (last === undefined || !f.autoExtensionEnabled || f.generationPaused || this.pending.length > 0) return;
    if (f.loopGenerationEnabled && f.curatedPrompts.length > 0) return;
    this.dropAhead();
    const abort = new AbortController();
    const signal = AbortSignal.any([this.lifetime, abort.signal]);
    this.ahead = { basis: last, abort, result: this.askExtender(last, f.segmentIdx + 1, signal) };
  }

  private dropAhead(): void {
    this.ahead?.abort.abort();
    this.ahead = undefined;
  }

  private askExtender(lastPrompt: string, segmentIdx: number, signal: AbortSignal): Ahead['result'] {
    const context = { lastPrompt, curatedPrompts: this.flags.curatedPrompts, history: [...this.history], segmentIdx, signal };
    return this.extender.next(context).then(
      (value) => ({ ok: true as const, value }),
      (error: unknown) => ({ ok: false as const, error }),
    );
  }

  /**
   * The extender's prompt, unless it failed or the safety filter blocks it: then the last
   * prompt again. Provenance only when there is something to tell (an LLM wrote it, or it
   * fell back); a plain extender's prompt carries none.
   */
  private checkedExtension(lastPrompt: string, outcome: Awaited<Ahead['result']>): { prompt: string; provenance?: PromptProvenance } {
    if (!outcome.ok) {
      this.onExtenderFailure(outcome.error);
      return { prompt: lastPrompt, provenance: { original: lastPrompt, fallbackUsed: true, error: 'the prompt extender failed' } };
    }
    const value = outcome.value;
    const { prompt, ...provenance } = typeof value === 'string' ? { prompt: value } : value;
    const told = typeof value === 'string' ? undefined : (provenance as PromptProvenance);
    if (prompt === lastPrompt) return { prompt, provenance: told };
    const verdict = this.prompts.check(prompt, 'auto_extension');
    if (verdict.allowed) return { prompt, provenance: told };
    this.onExtenderFailure(new Error(`auto-extension prompt blocked by the safety filter: ${verdict.reason}`));
    return { prompt: lastPrompt, provenance: { ...told, original: lastPrompt, fallbackUsed: true, error: `the prompt was blocked by the safety filter: ${verdict.reason}` } };
  }

}
