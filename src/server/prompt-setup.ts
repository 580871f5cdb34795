/**
 * The prompt layer as `streaming.prompt` and `streaming.safety` describe it: providers
 * (FastVideo's single `provider`, or livegen's list), system prompts, safety filter.
 */
import type { Logger } from 'pino';
import {
  OpenAiCompatibleProvider,
  PromptLayer,
  PromptSafety,
  ProviderSet,
  SystemPrompts,
  type PromptObserver,
  type ProviderEntry,
} from '../prompts/index.js';
import type { FastTextClassifier } from '../prompts/fasttext.js';
import { KNOWN_LLM_PROVIDERS, type ServeConfig } from './config.js';

export interface PromptSetupOptions {
  /** Where API keys are read from (default: process.env). */
  env?: Record<string, string | undefined>;
  observer?: PromptObserver;
  /** Loads the safety classifier (default: the WASM fastText build). */
  loadClassifier?: (path: string) => Promise<FastTextClassifier>;
}

function providerSet(config: ServeConfig['streaming']['prompt'], env: Record<string, string | undefined>, observer: PromptObserver | undefined): ProviderSet | undefined {
  if (!config.enabled) return undefined;
  let entries: ProviderEntry[];
  if (config.providers.length === 0) {
    // FastVideo's form: one known provider, the operation's timeout.
    const name = config.provider ?? 'cerebras';
    const known = KNOWN_LLM_PROVIDERS[name];
    if (!known) return undefined; // refused by the config schema
    entries = [
      {
        provider: new OpenAiCompatibleProvider({ name, baseUrl: known.base_url, model: config.model, apiKey: env[known.api_key_env], apiKeyEnv: known.api_key_env }),
        timeoutMs: config.timeout_ms,
      },
    ];
  } else {
    const ordered = [...config.providers];
    // `provider` names the entry asked first; the others keep their order.
    const first = ordered.findIndex((p) => p.name === config.provider);
    if (first > 0) ordered.unshift(...ordered.splice(first, 1));
    entries = ordered.map((p) => ({
      provider: new OpenAiCompatibleProvider({
        name: p.name,
        baseUrl: p.base_url,
        model: p.model ?? config.model,
        apiKey: p.api_key_env ? env[p.api_key_env] : undefined,
        apiKeyEnv: p.api_key_env,
      }),
      timeoutMs: p.timeout_ms ?? Math.max(config.timeout_ms, config.auto_extension_timeout_ms, config.rewrite_timeout_ms),
    }));
  }
  return new ProviderSet(entries, config.strategy, observer);
}

export function createPromptLayer(streaming: ServeConfig['streaming'], logger: Logger, options: PromptSetupOptions = {}): PromptLayer {
  const { prompt, safety } = streaming;
  const env = options.env ?? process.env;
  const providers = providerSet(prompt, env, options.observer);
  for (const { provider } of providers?.providers ?? []) {
    // Said at start, by field and variable name, never by value.
    if (provider.credentials === 'missing') {
      logger.warn({ provider: provider.name }, `LLM provider ${provider.name}: its API key variable is not set; its calls fail and prompts are used as they are`);
    }
  }
  const log = logger.child({ component: 'prompts' });
  return new PromptLayer({
    providers,
    systemPrompts: new SystemPrompts(
      prompt.system_prompt_dir ?? undefined,
      (message, err) => log.warn({ err }, message),
      (sources) => log.info({ sources }, 'system prompts loaded'),
    ),
    safety: new PromptSafety({
      enabled: safety.enabled,
      classifierPath: safety.classifier_path ?? undefined,
      blocklistPath: safety.blocklist_path ?? undefined,
      blockThreshold: safety.block_threshold,
      unsafeLabels: safety.unsafe_labels,
      loadClassifier: options.loadClassifier,
      log: (level, message, fields) => log[level](fields ?? {}, message),
    }),
    timeouts: { enhanceMs: prompt.timeout_ms, autoExtensionMs: prompt.auto_extension_timeout_ms, rewriteMs: prompt.rewrite_timeout_ms },
    maxTokens: prompt.max_tokens,
    temperature: prompt.temperature,
    historyPrompts: prompt.history_prompts,
    observer: options.observer,
  });
}
