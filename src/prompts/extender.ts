/**
 * Auto-extension: what the next segment's prompt is when the client asked for nothing.
 * The session's scheduler asks a `PromptExtender`; the default keeps the last prompt, the
 * LLM one (`PromptLayer.extend`) writes the next step of the story.
 */

export interface PromptExtensionContext {
  lastPrompt: string;
  curatedPrompts: readonly string[];
  /** Prompts of the segments so far, oldest first (the last few). */
  history: readonly string[];
  /** Index of the segment the prompt is for. */
  segmentIdx: number;
  signal: AbortSignal;
}

/** How a prompt was written, when an LLM had a hand in it (additive fields of `ltx2_segment_start`). */
export interface PromptProvenance {
  /** What the prompt replaced: the user's text, or the last prompt for an auto-extension. */
  original?: string;
  provider?: string;
  model?: string;
  latencyMs?: number;
  /** The LLM did not deliver (failure, timeout, blocked answer): the original was used. */
  fallbackUsed: boolean;
  /** Why, when it did not (never holds credentials). */
  error?: string;
}

export interface ExtendedPrompt extends PromptProvenance {
  prompt: string;
}

export interface PromptExtender {
  /** The next prompt; a plain string, or one with its provenance. Rejects only when `signal` aborts or it fails outright. */
  next(context: PromptExtensionContext): Promise<string | ExtendedPrompt>;
}

/** No LLM configured: keep going with the last prompt. */
export class RepeatLastPromptExtender implements PromptExtender {
  async next(context: PromptExtensionContext): Promise<string> {
    return context.lastPrompt;
  }
}
