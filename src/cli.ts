import { Command, InvalidArgumentError } from 'commander';
import { ConfigError, createLivegenServer, mergeConfigInput, parseConfig, readConfigInput } from './server/index.js';

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
}

async function serve(flags: ServeFlags): Promise<void> {
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
  });
  const config = parseConfig(input, configPath ? `config file ${configPath}` : 'config');
  const server = createLivegenServer(config);
  const url = await server.listen();
  server.logger.info({ url, ws: `${url.replace(/^http/, 'ws')}/v1/stream`, workers: config.pool.workers }, `livegen listening on ${url}`);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    server.logger.info({ signal }, 'shutting down');
    server.close().then(
      () => process.exit(0),
      (err: unknown) => {
        server.logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  // Last resort: a bug that escapes as an unhandled rejection is logged, not fatal to
  // every other session on the server.
  process.on('unhandledRejection', (reason) => server.logger.error({ err: reason }, 'unhandled rejection'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
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
    .action(async (flags: ServeFlags) => {
      try {
        await serve(flags);
      } catch (err) {
        // Bad config exits 2; anything else at start-up (port in use, ...) exits 1.
        console.error(`livegen: ${(err as Error).message}`);
        process.exit(err instanceof ConfigError ? 2 : 1);
      }
    });
  await program.parseAsync(argv);
}
