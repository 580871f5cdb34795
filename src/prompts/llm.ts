/**
 * The LLM seam of the prompt layer: a provider answers one chat-completions request; the
 * layer above decides which providers to ask, in what order, and what a failure means.
 */

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/** What the prompt layer asks an LLM for (the labels of its metrics and logs). */
export type PromptOperation = 'enhance' | 'auto_extend' | 'rewrite';

export interface ChatRequest {
  messages: ChatMessage[];
  /** Longest answer, in tokens. */
  maxTokens: number;
  temperature: number;
  /** This attempt's own deadline; the provider aborts its HTTP call past it. */
  timeoutMs: number;
  /** Aborted when nobody wants the answer any more (the client left, another provider won). */
  signal: AbortSignal;
  /** A model to ask for instead of the provider's own (a session's choice, e.g. Dreamverse's rewrite model). */
  model?: string;
}

export interface ChatReply {
  /** The assistant's text, as the provider returned it (cleaned by the caller). */
  content: string;
  provider: string;
  model: string;
  latencyMs: number;
}

/**
 * Why an attempt failed. Retryable failures (timeouts, 429, 5xx, network, malformed
 * replies, a provider without its key) let the next provider in a fallback chain try; a
 * request the provider refused as wrong (400/401/403/404…) ends the chain, as it would
 * most likely be refused again, and an aborted call has nobody waiting for it.
 */
export type LlmFailureKind = 'timeout' | 'rate_limited' | 'server_error' | 'client_error' | 'network' | 'malformed' | 'no_api_key' | 'aborted';

export class LlmError extends Error {
  override readonly name = 'LlmError';
  constructor(
    readonly kind: LlmFailureKind,
    message: string,
    readonly provider: string,
    readonly status?: number,
  ) {
    super(message);
  }

  get retryable(): boolean {
    return this.kind !== 'client_error' && this.kind !== 'aborted';
  }
}

export interface LlmProvider {
  readonly name: string;
  readonly model: string;
  /** Where it is reached, for `/status` (never with credentials). */
  readonly endpoint: string;
  /** Whether the provider has the credentials it needs (`/status`; a missing key fails every call). */
  readonly credentials: 'set' | 'missing' | 'none';
  /** One attempt; rejects with `LlmError` only. */
  complete(request: ChatRequest): Promise<ChatReply>;
}
