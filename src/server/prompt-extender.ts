/**
 * Derives the next prompt when auto-extension is on and no request is waiting. An LLM can
 * implement this; the default continues the story with the last prompt.
 */
export interface PromptExtensionContext {
  lastPrompt: string;
  curatedPrompts: readonly string[];
  /** Index of the segment about to be generated. */
  segmentIdx: number;
  signal: AbortSignal;
}

export interface PromptExtender {
  next(context: PromptExtensionContext): Promise<string>;
}

/** No LLM configured: keep going with the last prompt. */
export class RepeatLastPromptExtender implements PromptExtender {
  async next(context: PromptExtensionContext): Promise<string> {
    return context.lastPrompt;
  }
}
