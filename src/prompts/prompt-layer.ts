/**
 * The prompt layer: enhancement, auto-extension and rewrite through LLM providers, and
 * the safety filter. It knows no sockets and never fails a stream: every operation has a
 * deadline, and on any failure it returns the prompt the caller already had (with the
 * reason), except when the caller's signal aborts (the client left), which rejects with
 * the signal's reason.
 */
import type { ChatMessage, LlmFailureKind, PromptOperation } from './llm.js';
import { LlmChainError, type LlmObserver, type ProviderSet } from './provider-set.js';
import { promptFromReply, promptListFromReply } from './reply.js';
import type { PromptSafety, SafetyStatus, SafetyVerdict } from './safety.js';
import type { ExtendedPrompt, PromptExtensionContext, PromptExtender } from './extender.js';
import type { SystemPrompts } from './system-prompts.js';

/** Where a prompt came from, as metrics label blocks. */
export type CheckedSource = 'user' | 'curated' | 'enhanced' | 'auto_extension' | 'rewrite';

/** Metrics of the layer (the server's ServerMetrics implements it). */
export interface PromptObserver extends LlmObserver {
  /** An operation gave back the caller's own prompt (`raw`), or a later provider answered (`provider`). */
  fallback(operation: PromptOperation, kind: 'raw' | 'provider'): void;
  blocked(source: CheckedSource, filter: string): void;
}

export interface PromptLayerOptions {
  /** Undefined: no LLM configured (enhancement passes prompts through, extension repeats). */
  providers: ProviderSet | undefined;
  systemPrompts: SystemPrompts;
  safety: PromptSafety;
  timeouts: { enhanceMs: number; autoExtensionMs: number; rewriteMs: number };
  maxTokens: number;
  temperature: number;
  /** How many earlier prompts the LLM sees as the story so far. */
  historyPrompts: number;
  observer?: PromptObserver;
}

export interface EnhancedPrompt extends ExtendedPrompt {
  /** The LLM's text is what gets generated. */
  enhanced: boolean;
}

/** A session's own choices for its rewrites (Dreamverse's rewrite model, temperature and system prompts). */
export interface RewriteOverrides {
  model?: string;
  temperature?: number;
  systemPrompt?: string;
}

export interface RewrittenPrompts {
  prompts: string[];
  provider: string;
  model: string;
  latencyMs: number;
}

export interface PromptLayerStatus {
  llm: {
    enabled: boolean;
    strategy: string | null;
    providers: { name: string; model: string; endpoint: string; api_key: 'set' | 'missing' | 'none'; timeout_ms: number }[];
    timeouts_ms: { enhance: number; auto_extension: number; rewrite: number };
    system_prompts: Record<PromptOperation, string>;
  };
  safety: SafetyStatus;
}

function numbered(prompts: readonly string[]): string {
  return prompts.map((p, i) => `${i + 1}. ${p}`).join('\n');
}

export class PromptLayer {
  constructor(private readonly options: PromptLayerOptions) {}

  /** An LLM is configured: enhancement and LLM auto-extension can run. */
  get llmAvailable(): boolean {
    return this.options.providers !== undefined && this.options.providers.providers.length > 0;
  }

  /** Loads the system prompts and the safety filter; resolves when prompts are really checked (or known not to be). */
  async start(): Promise<void> {
    await Promise.all([this.options.systemPrompts.start(), this.options.safety.start()]);
  }

  /** SIGHUP: system prompt files and the blocklist are read again. */
  async reload(): Promise<void> {
    await Promise.all([this.options.systemPrompts.reload(), this.options.safety.reload()]);
  }

  close(): void {
    this.options.systemPrompts.close();
    this.options.safety.close();
  }

  /** Checks one prompt; a block is counted under `source`. */
  check(prompt: string, source: CheckedSource): SafetyVerdict {
    const verdict = this.options.safety.check(prompt);
    if (!verdict.allowed) this.options.observer?.blocked(source, verdict.filter);
    return verdict;
  }

  /**
   * The prompt to generate for a user's `prompt`: the LLM's improved text, or `prompt`
   * itself (with `fallbackUsed` and the reason) when there is no LLM, it fails, times out,
   * or writes something the safety filter blocks.
   */
  async enhance(prompt: string, context: { history: readonly string[]; signal: AbortSignal }): Promise<EnhancedPrompt> {
    const history = context.history.slice(-this.options.historyPrompts);
    const user = history.length > 0 ? `The story so far, oldest first:\n${numbered(history)}\n\nThe prompt to improve:\n${prompt}` : prompt;
    const started = performance.now();
    const answer = await this.ask('enhance', user, this.options.timeouts.enhanceMs, context.signal, promptFromReply);
    if (!answer.ok) return { prompt, original: prompt, enhanced: false, fallbackUsed: true, error: answer.error, latencyMs: performance.now() - started };
    const verdict = this.check(answer.text, 'enhanced');
    const provenance = { original: prompt, provider: answer.provider, model: answer.model, latencyMs: answer.latencyMs };
    if (!verdict.allowed) {
      this.options.observer?.fallback('enhance', 'raw');
      return { prompt, ...provenance, enhanced: false, fallbackUsed: true, error: `the enhanced prompt was blocked by the safety filter: ${verdict.reason}` };
    }
    return { prompt: answer.text, ...provenance, enhanced: true, fallbackUsed: false };
  }

  /** The next prompt of the story, or the last one (with the reason) when the LLM does not deliver. */
  async extend(context: PromptExtensionContext): Promise<ExtendedPrompt> {
    const history = (context.history.length > 0 ? context.history : [context.lastPrompt]).slice(-this.options.historyPrompts);
    const planned = context.curatedPrompts.length > 0 ? `\n\nThe prompts the user planned for the story:\n${numbered(context.curatedPrompts)}` : '';
    const user = `The prompts of the segments so far, oldest first:\n${numbered(history)}${planned}\n\nWrite the prompt of the next segment.`;
    const started = performance.now();
    const fallback = (error: string): ExtendedPrompt => ({ prompt: context.lastPrompt, original: context.lastPrompt, fallbackUsed: true, error, latencyMs: performance.now() - started });
    const answer = await this.ask('auto_extend', user, this.options.timeouts.autoExtensionMs, context.signal, promptFromReply);
    if (!answer.ok) return fallback(answer.error);
    const verdict = this.check(answer.text, 'auto_extension');
    if (!verdict.allowed) {
      this.options.observer?.fallback('auto_extend', 'raw');
      return { ...fallback(`the LLM's prompt was blocked by the safety filter: ${verdict.reason}`), provider: answer.provider, model: answer.model };
    }
    return { prompt: answer.text, original: context.lastPrompt, provider: answer.provider, model: answer.model, latencyMs: answer.latencyMs, fallbackUsed: false };
  }

  /**
   * A plan of `count` prompts for what the user asked, or the reason there is none (the
   * caller decides its fallback). Prompts the safety filter blocks make the plan unusable.
   */
  async rewrite(
    request: string,
    context: { count: number; current: readonly string[]; signal: AbortSignal; overrides?: RewriteOverrides },
  ): Promise<{ ok: true; value: RewrittenPrompts } | { ok: false; error: string }> {
    const current = context.current.length > 0 ? `\n\nThe current plan:\n${numbered(context.current)}` : '';
    const user = `What the user wants: ${request}\nNumber of segments: ${context.count}${current}`;
    const answer = await this.ask(
      'rewrite',
      user,
      this.options.timeouts.rewriteMs,
      context.signal,
      (text) => {
        const list = promptListFromReply(text);
        return list ? JSON.stringify(list) : undefined;
      },
      context.overrides,
    );
    if (!answer.ok) return answer;
    let prompts = JSON.parse(answer.text) as string[];
    // Exactly `count`: a short plan goes on with its last prompt, a long one is cut.
    prompts = Array.from({ length: context.count }, (_, i) => prompts[Math.min(i, prompts.length - 1)] as string);
    const blocked = prompts.map((p) => this.check(p, 'rewrite')).find((v) => !v.allowed);
    if (blocked && !blocked.allowed) return { ok: false, error: `the rewritten plan was blocked by the safety filter: ${blocked.reason}` };
    return { ok: true, value: { prompts, provider: answer.provider, model: answer.model, latencyMs: answer.latencyMs } };
  }

  /** An extender for sessions: the LLM when one is configured. */
  extender(): PromptExtender | undefined {
    return this.llmAvailable ? { next: (context) => this.extend(context) } : undefined;
  }

  status(): PromptLayerStatus {
    const set = this.options.providers;
    const { timeouts } = this.options;
    return {
      llm: {
        enabled: this.llmAvailable,
        strategy: set?.strategy ?? null,
        providers: (set?.providers ?? []).map(({ provider, timeoutMs }) => ({
          name: provider.name,
          model: provider.model,
          endpoint: provider.endpoint,
          api_key: provider.credentials,
          timeout_ms: timeoutMs,
        })),
        timeouts_ms: { enhance: timeouts.enhanceMs, auto_extension: timeouts.autoExtensionMs, rewrite: timeouts.rewriteMs },
        system_prompts: this.options.systemPrompts.sources(),
      },
      safety: this.options.safety.status(),
    };
  }

  private async ask(
    operation: PromptOperation,
    user: string,
    budgetMs: number,
    signal: AbortSignal,
    accept: (text: string) => string | undefined,
    overrides: RewriteOverrides = {},
  ): Promise<{ ok: true; text: string; provider: string; model: string; latencyMs: number } | { ok: false; error: string; kind: LlmFailureKind }> {
    signal.throwIfAborted();
    const set = this.options.providers;
    if (!set || set.providers.length === 0) return { ok: false, error: 'no LLM provider is configured', kind: 'client_error' };
    const messages: ChatMessage[] = [
      { role: 'system', content: overrides.systemPrompt ?? this.options.systemPrompts.get(operation) },
      { role: 'user', content: user },
    ];
    try {
      const answer = await set.complete({
        operation,
        messages,
        maxTokens: this.options.maxTokens,
        temperature: overrides.temperature ?? this.options.temperature,
        budgetMs,
        signal,
        accept,
        ...(overrides.model !== undefined ? { model: overrides.model } : {}),
      });
      if (answer.providerFallback) this.options.observer?.fallback(operation, 'provider');
      return { ok: true, text: answer.content, provider: answer.provider, model: answer.model, latencyMs: answer.latencyMs };
    } catch (err) {
      signal.throwIfAborted();
      const error = err instanceof LlmChainError ? err : new LlmChainError([]);
      this.options.observer?.fallback(operation, 'raw');
      return { ok: false, error: error.message, kind: error.kind };
    }
  }
}
