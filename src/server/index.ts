export { createLivegenServer, STREAM_PATH, type LivegenServer, type ServerOverrides, type ServerSnapshot } from './app.js';
export { ConfigError, loadConfigFile, mergeConfigInput, parseConfig, readConfigInput, ServeConfigSchema, type ServeConfig, type ServeConfigInput } from './config.js';
export { MAX_INIT_FRAME_BYTES, sessionPolicyFrom, type SessionPolicy } from './policy.js';
export { openingFrameLimits, parseOpeningFrame, type OpeningFrame } from './opening-frame.js';
export { RepeatLastPromptExtender, type ExtendedPrompt, type PromptExtender, type PromptExtensionContext } from '../prompts/index.js';
export type { SessionView } from './session-services.js';
