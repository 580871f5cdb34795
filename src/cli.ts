import { Command, InvalidArgumentError } from 'commander';
import { ConfigError, createLivegenServer, mergeConfigInput, parseConfig, readConfigInput, sessionPolicyFrom, type ServeConfig, type ServerOverrides } from './server/index.js';

function integer(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isInteger(n)) throw new InvalidArgumentError(`${name} must be an integer, got ${JSON.stringify(value)}`);
    return n;
  };
}

function envInteger(name: string, value: string | undefined): number | undefined {
  if (value === undefined || value === '') return undefined;
  const n = Number(value);
  if (!Number.isInteger(n)) throw new ConfigError(`${name}: expected an integer, got ${JSON.stringify(value)}`);
  return n;
}


interface ServeFlags {
  config?: string;
  host?: string;
  port?: number;
  workers?: number;
  logLevel?: string;
  pace?: string;
  clusterId?: string;
}

/** The config from the file, flags and environment; a Redis URL in the environment makes it a cluster member. */
function loadConfig(flags: ServeFlags): ServeConfig {
  const env = process.env;
  const configPath = flags.config ?? env.LIVEGEN_CONFIG;
  const input = mergeConfigInput(configPath ? readConfigInput(configPath) : {}, {
    server: {
      host: flags.host ?? env.LIVEGEN_HOST,
      port: flags.port ?? envInteger('LIVEGEN_PORT', env.LIVEGEN_PORT),
    },
    pool: { workers: flags.workers },
    logging: { level: flags.logLevel ?? env.LIVEGEN_LOG_LEVEL },
    generator: { synthetic: { pace: flags.pace } },
    // The Redis URL may carry a password: it can come from the environment instead of the file.
    cluster: { redis_url: env.LIVEGEN_REDIS_URL || undefined, id: flags.clusterId ?? (env.LIVEGEN_CLUSTER_ID || undefined) },
  });
  return parseConfig(input, configPath ? `config file ${configPath}` : 'config');
}

/** SIGTERM/SIGINT stop `close` gracefully, then exit 0 (1 when the stop failed). */
function stopOnSignals(logger: { info: (o: object, m: string) => void; error: (o: object, m: string) => void }, close: () => Promise<void>): void {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    close().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  // Last resort: a bug that escapes as an unhandled rejection is logged, not fatal to
  // every other session on the server.
  process.on('unhandledRejection', (reason) => logger.error({ err: reason }, 'unhandled rejection'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

async function serve(flags: ServeFlags): Promise<void> {
  const config = loadConfig(flags);
  const overrides: ServerOverrides = {};
  if (config.cluster) {
    // Loaded only for a cluster member: a single server never loads the Redis client.
    const { joinCluster } = await import('./cluster/replica.js');
    const queueMs = sessionPolicyFrom(config).queueTimeoutMs;
    overrides.cluster = joinCluster(config.cluster, { claimTtlMs: Math.min(queueMs, 3_600_000) + 60_000 });
  }
  const server = createLivegenServer(config, overrides);
  const url = await server.listen();
  server.logger.info(
    { url, ws: `${url.replace(/^http/, 'ws')}/v1/stream`, workers: config.pool.workers, cluster: overrides.cluster?.id },
    `livegen listening on ${url}`,
  );
  stopOnSignals(server.logger, () => server.close());
  // SIGHUP: system prompts and the blocklist are read again, without a restart.
  process.on('SIGHUP', () => {
    server.reloadPrompts().then(
      () => server.logger.info('prompts reloaded (SIGHUP)'),
      (err: unknown) => server.logger.error({ err }, 'prompt reload failed'),
    );
  });
}

async function router(flags: ServeFlags): Promise<void> {
  const config = loadConfig(flags);
  if (!config.cluster) throw new ConfigError('livegen router needs cluster.redis_url (in the config file, or LIVEGEN_REDIS_URL)');
  const { createRouter } = await import('./cluster/router.js');
  const r = createRouter(config);
  const url = await r.listen();
  r.logger.info({ url, ws: `${url.replace(/^http/, 'ws')}/v1/stream`, router: r.id }, `livegen router listening on ${url}`);
  stopOnSignals(r.logger, () => r.close());
}

async function runCommand(run: () => Promise<void>): Promise<void> {
  try {
    await run();
  } catch (err) {
    // Bad config exits 2; anything else at start-up (port in use, ...) exits 1.
    console.error(`livegen: ${(err as Error).message}`);
    process.exit(err instanceof ConfigError ? 2 : 1);
  }
}

export async function main(argv: string[]): Promise<void> {
  const program = new Command('livegen').description('Realtime video-generation streaming server');
  program
    .command('serve')
    .description('run the streaming server (synthetic generator unless configured otherwise)')
    .option('-c, --config <file>', 'YAML config file (see docs/config.md); env LIVEGEN_CONFIG')
    .option('--host <host>', 'interface to listen on (server.host); env LIVEGEN_HOST')
    .option('-p, --port <port>', 'port to listen on, 0 for any (server.port); env LIVEGEN_PORT', integer('--port'))
    .option('--workers <n>', 'worker slots (pool.workers)', integer('--workers'))
    .option('--pace <pace>', 'synthetic generator pace: realtime or fast (generator.synthetic.pace)')
    .option('--log-level <level>', 'log level (logging.level); env LIVEGEN_LOG_LEVEL')
    .option('--cluster-id <id>', 'this replica\'s id in the cluster (cluster.id); env LIVEGEN_CLUSTER_ID')
    .action((flags: ServeFlags) => runCommand(() => serve(flags)));
  program
    .command('router')
    .description('run a cluster router: the public /v1/stream in front of replicas, with one queue in Redis (docs/cluster.md)')
    .option('-c, --config <file>', 'YAML config file with a cluster section; env LIVEGEN_CONFIG')
    .option('--host <host>', 'interface to listen on (server.host); env LIVEGEN_HOST')
    .option('-p, --port <port>', 'port to listen on, 0 for any (server.port); env LIVEGEN_PORT', integer('--port'))
    .option('--log-level <level>', 'log level (logging.level); env LIVEGEN_LOG_LEVEL')
    .option('--cluster-id <id>', 'this router\'s id in the cluster (cluster.id); env LIVEGEN_CLUSTER_ID')
    .action((flags: ServeFlags) => runCommand(() => router(flags)));
  await program.parseAsync(argv);
}
