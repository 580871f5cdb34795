/**
 * Several LLM providers behind one call, with a strategy:
 * - `fallback`: in order; the next one is asked when one fails in a retryable way.
 * - `race`: all at once; the first valid answer wins and the others are aborted.
 *
 * Every attempt is bounded by the provider's own timeout and by the operation's budget
 * (what is left of it, in a fallback chain), and by the caller's signal: the caller gets
 * an answer or an `LlmChainError` within the budget, never later.
 */
import { LlmError, type ChatMessage, type ChatReply, type LlmFailureKind, type LlmProvider, type PromptOperation } from './llm.js';

export type ProviderStrategy = 'fallback' | 'race';

/** Told of every attempt (metrics). */
export interface LlmObserver {
  attempt(operation: PromptOperation, provider: string, outcome: 'ok' | LlmFailureKind, seconds: number): void;
}

export interface ProviderEntry {
  provider: LlmProvider;
  /** This provider's longest attempt. */
  timeoutMs: number;
}

export interface ChainRequest {
  operation: PromptOperation;
  messages: ChatMessage[];
  maxTokens: number;
  temperature: number;
  /** The whole operation's budget. */
  budgetMs: number;
  signal: AbortSignal;
  /** Asked of every provider instead of its own model, when set. */
  model?: string;
  /** Turns the raw text into the answer, or undefined when it is not usable (counts as a malformed reply). */
  accept(content: string): string | undefined;
}

export interface ChainAnswer extends ChatReply {
  /** A provider other than the first answered. */
  providerFallback: boolean;
}

export class LlmChainError extends Error {
  override readonly name = 'LlmChainError';
  constructor(readonly failures: LlmError[]) {
    super(failures.map((f) => `${f.provider}: ${f.kind} (${f.message})`).join('; ') || 'no LLM provider is configured');
  }

  /** The caller went away: no failure to report. */
  get aborted(): boolean {
    return this.failures.some((f) => f.kind === 'aborted');
  }

  /** The one word metrics and clients get: the first failure's kind, or `aborted`. */
  get kind(): LlmFailureKind {
    return this.aborted ? 'aborted' : (this.failures[0]?.kind ?? 'network');
  }
}

export class ProviderSet {
  constructor(
    private readonly entries: readonly ProviderEntry[],
    readonly strategy: ProviderStrategy,
    private readonly observer?: LlmObserver,
  ) {}

  get providers(): readonly ProviderEntry[] {
    return this.entries;
  }

  async complete(request: ChainRequest): Promise<ChainAnswer> {
    return this.strategy === 'race' ? this.race(request) : this.fallback(request);
  }

  private async fallback(request: ChainRequest): Promise<ChainAnswer> {
    const failures: LlmError[] = [];
    const deadline = performance.now() + request.budgetMs;
    for (const [index, entry] of this.entries.entries()) {
      const left = deadline - performance.now();
      if (left <= 0) {
        failures.push(new LlmError('timeout', `the ${request.budgetMs} ms budget was spent before it was asked`, entry.provider.name));
        break;
      }
      try {
        return { ...(await this.attempt(entry, request, Math.min(entry.timeoutMs, left), request.signal)), providerFallback: index > 0 };
      } catch (err) {
        const failure = asLlmError(err, entry.provider.name);
        failures.push(failure);
        if (!failure.retryable) break;
      }
    }
    throw new LlmChainError(failures);
  }

  private race(request: ChainRequest): Promise<ChainAnswer> {
    const losers = new AbortController();
    const signal = AbortSignal.any([request.signal, losers.signal]);
    const failures: LlmError[] = [];
    return new Promise<ChainAnswer>((resolve, reject) => {
      let pending = this.entries.length;
      if (pending === 0) reject(new LlmChainError([]));
      for (const [index, entry] of this.entries.entries()) {
        this.attempt(entry, request, Math.min(entry.timeoutMs, request.budgetMs), signal).then(
          (reply) => {
            // The first valid answer wins; the others are aborted (their outcome is `aborted`).
            losers.abort();
            resolve({ ...reply, providerFallback: index > 0 });
          },
          (err: unknown) => {
            if (!losers.signal.aborted || request.signal.aborted) failures.push(asLlmError(err, entry.provider.name));
            pending -= 1;
            if (pending === 0) reject(new LlmChainError(failures));
          },
        );
      }
    });
  }

  private async attempt(entry: ProviderEntry, request: ChainRequest, timeoutMs: number, signal: AbortSignal): Promise<ChatReply> {
    const { provider } = entry;
    const started = performance.now();
    let outcome: 'ok' | LlmFailureKind = 'ok';
    try {
      const reply = await provider.complete({
        messages: request.messages,
        maxTokens: request.maxTokens,
        temperature: request.temperature,
        timeoutMs,
        signal,
        ...(request.model !== undefined ? { model: request.model } : {}),
      });
      const content = request.accept(reply.content);
      if (content === undefined) throw new LlmError('malformed', 'the reply holds no usable prompt', provider.name);
      return { ...reply, content };
    } catch (err) {
      outcome = asLlmError(err, provider.name).kind;
      throw err;
    } finally {
      this.observer?.attempt(request.operation, provider.name, outcome, (performance.now() - started) / 1000);
    }
  }
}

function asLlmError(err: unknown, provider: string): LlmError {
  if (err instanceof LlmError) return err;
  return new LlmError('network', err instanceof Error ? err.message : String(err), provider);
}
