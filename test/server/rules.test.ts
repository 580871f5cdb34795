import { describe } from 'vitest';
import { startServer } from './harness.js';
import { protocolRules } from './rules.suite.js';

// PROTOCOL.md's rules against one server; test/cluster/rules-via-router.test.ts runs the same suite through a router.
describe('PROTOCOL.md rules on a single server', () => {
  protocolRules(async (patch, parts) => {
    const server = await startServer(patch, { generators: parts?.generators });
    return {
      wsUrl: server.wsUrl,
      sessionCount: () => server.sessionCount(),
      sessions: async () => (await server.server.inspect()).sessions,
      close: () => server.close(),
    };
  });
});
