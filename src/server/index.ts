export { createLivegenServer, STREAM_PATH, type LivegenServer, type ServerOverrides } from './app.js';
export { ConfigError, loadConfigFile, mergeConfigInput, parseConfig, readConfigInput, ServeConfigSchema, type ServeConfig, type ServeConfigInput } from './config.js';
export { RepeatLastPromptExtender, type PromptExtender, type PromptExtensionContext } from './prompt-extender.js';
