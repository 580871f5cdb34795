/**
 * The shared (Redis) implementations of the store seams: continuation states and rate
 * limits that every replica of a cluster sees alike. They pass the same contract suites
 * as the in-process ones (test/store/*.contract.ts), against a real redis-server.
 *
 * A Redis that is down or slow never stalls the caller: commands are not queued while
 * the connection is down and every command has a deadline, so a call rejects within
 * `commandTimeoutMs` with a `StoreUnavailableError` and the caller decides (a stream goes
 * on; an admission waits or is refused). The client reconnects by itself.
 */
import { Redis, type RedisOptions } from 'ioredis';
import type { ContinuationState } from '../core/index.js';
import type { ContinuationPutOptions, ContinuationStore } from './continuation-store.js';
import type { RateLimiter } from './rate-limiter.js';
import { checkPerMinute, checkTtl } from './validate.js';

/** A store call that could not reach Redis (down, unreachable, or slower than its deadline). */
export class StoreUnavailableError extends Error {
  override readonly name = 'StoreUnavailableError';
}

export interface RedisClientOptions {
  /** Deadline of each command in ms (default 2000). */
  commandTimeoutMs?: number;
  /** Deadline of a connection attempt in ms (default 2000). */
  connectTimeoutMs?: number;
  /** Longest wait between reconnection attempts in ms (default 2000); attempts never stop. */
  maxReconnectDelayMs?: number;
}

/**
 * A Redis client for livegen's stores: `redis://[:password@]host:port[/db]` (or
 * `rediss://` for TLS). Commands fail fast while disconnected instead of queueing, and
 * reconnection goes on with a capped backoff for as long as the client is open.
 */
export function createRedisClient(url: string, options: RedisClientOptions = {}): Redis {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new RangeError(`redis url must look like redis://host:port, got ${JSON.stringify(url)}`);
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
    throw new RangeError(`redis url must start with redis:// or rediss://, got ${JSON.stringify(parsed.protocol)}`);
  }
  const maxDelay = options.maxReconnectDelayMs ?? 2000;
  const redisOptions: RedisOptions = {
    commandTimeout: options.commandTimeoutMs ?? 2000,
    connectTimeout: options.connectTimeoutMs ?? 2000,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: (attempt) => Math.min(50 * 2 ** Math.min(attempt, 10), maxDelay),
    lazyConnect: false,
  };
  const client = new Redis(url, redisOptions);
  // Without a listener a connection error would be an uncaught 'error' event; the
  // reconnection above handles it, and each command reports its own failure.
  client.on('error', () => undefined);
  return client;
}

/**
 * Resolves once `client` can take commands: at once when connected, else when it
 * connects, at most `waitMs` later (commands are not queued while disconnected, so a
 * call made while the client connects waits here rather than failing needlessly).
 */
function whenReady(client: Redis, waitMs: number): Promise<void> {
  if (client.status === 'ready') return Promise.resolve();
  if (client.status === 'end' || client.status === 'close') return Promise.reject(new Error(`connection ${client.status}`));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.off('ready', onReady);
      reject(new Error(`not connected within ${waitMs} ms (${client.status})`));
    }, waitMs);
    const onReady = (): void => {
      clearTimeout(timer);
      resolve();
    };
    client.once('ready', onReady);
  });
}

/** Runs one Redis call, turning a connection or timeout failure into a StoreUnavailableError. */
async function call<T>(client: Redis, what: string, run: () => Promise<T>): Promise<T> {
  try {
    await whenReady(client, client.options.commandTimeout ?? 2000);
    return await run();
  } catch (err) {
    throw new StoreUnavailableError(`${what}: redis unavailable (${err instanceof Error ? err.message : String(err)})`, { cause: err });
  }
}

/** Glob-escapes a key prefix for SCAN MATCH. */
function globEscape(text: string): string {
  return text.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}

export interface RedisStoreOptions {
  /** Prefix of every key this store writes (default `livegen:`); one Redis can serve several clusters. */
  namespace?: string;
  /** Whether `close()` also closes the client (default true). */
  ownsClient?: boolean;
}

/**
 * Continuation states as JSON strings under `<namespace>state:<key>`, the TTL kept by
 * Redis itself (`SET ... PX`), so an expired state is gone for every replica at once.
 */
export class RedisContinuationStore implements ContinuationStore {
  private readonly prefix: string;
  private readonly ownsClient: boolean;

  constructor(
    private readonly client: Redis,
    options: RedisStoreOptions = {},
  ) {
    this.prefix = `${options.namespace ?? 'livegen:'}state:`;
    this.ownsClient = options.ownsClient ?? true;
  }

  async get(key: string): Promise<ContinuationState | undefined> {
    const text = await call(this.client, 'continuation store get', () => this.client.get(this.prefix + key));
    if (text === null) return undefined;
    return JSON.parse(text) as ContinuationState;
  }

  async put(key: string, state: ContinuationState, options: ContinuationPutOptions = {}): Promise<void> {
    checkTtl(options.ttlMs);
    const text = JSON.stringify(state);
    // Redis counts PX in whole milliseconds; round up so an entry never outlives less than asked.
    await call(this.client, 'continuation store put', () =>
      options.ttlMs === undefined
        ? this.client.set(this.prefix + key, text)
        : this.client.set(this.prefix + key, text, 'PX', Math.ceil(options.ttlMs as number)),
    );
  }

  async delete(key: string): Promise<void> {
    await call(this.client, 'continuation store delete', () => this.client.del(this.prefix + key));
  }

  /** Counts this namespace's states with SCAN (Redis skips expired keys): for leak checks and metrics, O(keys). */
  async size(): Promise<number> {
    return call(this.client, 'continuation store size', async () => {
      let cursor = '0';
      let count = 0;
      do {
        const [next, keys] = await this.client.scan(cursor, 'MATCH', `${globEscape(this.prefix)}*`, 'COUNT', 1000);
        cursor = next;
        count += keys.length;
      } while (cursor !== '0');
      return count;
    });
  }

  async close(): Promise<void> {
    if (this.ownsClient) this.client.disconnect();
  }
}

// A token bucket per key in one hash (tokens, at), updated atomically. The clock is the
// caller's (ARGV[3]) when given, else Redis's own, so replicas with skewed clocks agree.
// The key expires once the bucket would be full again: a full bucket is no bucket.
const TAKE_TOKEN = `
local capacity = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end
local tokens = capacity
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
if state[1] then
  tokens = math.min(capacity, tonumber(state[1]) + (now - tonumber(state[2])) * capacity / window)
end
local taken = 0
if tokens >= 1 then
  tokens = tokens - 1
  taken = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil((capacity - tokens) * window / capacity)))
return taken
`;

export interface RedisRateLimiterOptions extends RedisStoreOptions {
  /** Clock in ms for the buckets; default: the Redis server's clock (one clock for every replica). */
  now?: () => number;
}

const MINUTE_MS = 60_000;

/** Token buckets shared by every replica: the same rule as MemoryRateLimiter, in one Lua script per take. */
export class RedisRateLimiter implements RateLimiter {
  private readonly prefix: string;
  private readonly now: (() => number) | undefined;
  private readonly ownsClient: boolean;

  constructor(
    private readonly client: Redis,
    options: RedisRateLimiterOptions = {},
  ) {
    this.prefix = `${options.namespace ?? 'livegen:'}rate:`;
    this.now = options.now;
    this.ownsClient = options.ownsClient ?? true;
  }

  async take(key: string, perMinute: number): Promise<boolean> {
    checkPerMinute(perMinute);
    if (perMinute === 0) return true;
    const now = this.now ? this.now() : -1;
    const taken = await call(this.client, 'rate limiter take', () => this.client.eval(TAKE_TOKEN, 1, this.prefix + key, perMinute, MINUTE_MS, now));
    return taken === 1;
  }

  async close(): Promise<void> {
    if (this.ownsClient) this.client.disconnect();
  }
}
