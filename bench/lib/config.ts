/** The server config every benchmark starts from: loopback, an ephemeral port, silent logs. */
import { mergeConfigInput, parseConfig, type ServeConfig } from '../../src/server/index.js';

export const BENCH_BASE_CONFIG = {
  server: { host: '127.0.0.1', port: 0 },
  logging: { level: 'silent' },
};

export function benchConfig(patch: Record<string, unknown>): ServeConfig {
  return parseConfig(mergeConfigInput(BENCH_BASE_CONFIG, patch));
}
