export { LlmError, type ChatMessage, type ChatReply, type ChatRequest, type LlmFailureKind, type LlmProvider, type PromptOperation } from './llm.js';
export { OpenAiCompatibleProvider, type OpenAiCompatibleOptions } from './openai-compatible.js';
export { LlmChainError, ProviderSet, type ChainAnswer, type ChainRequest, type LlmObserver, type ProviderEntry, type ProviderStrategy } from './provider-set.js';
export { MAX_PROMPT_CHARS, promptFromReply, promptListFromReply } from './reply.js';
export { DEFAULT_SYSTEM_PROMPTS, SystemPrompts, type SystemPromptSource } from './system-prompts.js';
export { PromptSafety, type SafetyFilterName, type SafetyOptions, type SafetyStatus, type SafetyVerdict } from './safety.js';
export {
  RepeatLastPromptExtender,
  type ExtendedPrompt,
  type PromptExtender,
  type PromptExtensionContext,
  type PromptProvenance,
} from './extender.js';
export {
  PromptLayer,
  type CheckedSource,
  type EnhancedPrompt,
  type PromptLayerOptions,
  type PromptLayerStatus,
  type PromptObserver,
  type RewriteOverrides,
  type RewrittenPrompts,
} from './prompt-layer.js';
