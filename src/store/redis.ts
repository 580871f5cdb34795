/**
 * The shared (Redis) implementations of the store seams: continuation states, rate
 * limits and concurrency counts that every replica of a cluster sees alike. They pass the same contract suites
 * as the in-process ones (test/store/*.contract.ts), against a real redis-server.
 *
 * A Redis that is down or slow never stalls the caller: commands are not queued while
 * the connection is down and every command has a deadline, so a call rejects within
 * `commandTimeoutMs` with a `StoreUnavailableError` and the caller decides (a stream goes
 * on; an admission waits or is refused). The client reconnects by itself.
 */
import { randomUUID } from 'node:crypto';
import { Redis, type RedisOptions } from 'ioredis';
import type { ContinuationState } from '../core/index.js';
import type { ContinuationPutOptions, ContinuationStore } from './continuation-store.js';
import type { ConcurrencyCounter } from './concurrency-counter.js';
import type { RateLimiter } from './rate-limiter.js';
import { checkLimit, checkPerMinute, checkTtl } from './validate.js';

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
 * Resolves once `client` can take commands: at once when connected, else when its first
 * connection comes up, at most `waitMs` later (commands are not queued while
 * disconnected, so a call made at start-up waits here rather than failing needlessly).
 * A client that lost its connection and is reconnecting fails at once.
 */
function whenReady(client: Redis, waitMs: number): Promise<void> {
  if (client.status === 'ready') return Promise.resolve();
  // Lost after it was up: fail at once, so an outage costs callers nothing while it lasts.
  if (client.status === 'end' || client.status === 'close' || client.status === 'reconnecting') return Promise.reject(new Error(`connection ${client.status}`));
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
export async function call<T>(client: Redis, what: string, run: () => Promise<T>): Promise<T> {
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

// Holds per key in one hash, a field per holder (a replica) with its count. A holder is
// alive while its liveness key exists; a holder that died (no heartbeat for `leaseMs`)
// has its holds dropped by the next call that looks, so they never block others for long.
const SUM_LIVE = `
local total = 0
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local holder = fields[i]
  if holder ~= ARGV[2] and redis.call('EXISTS', ARGV[3] .. holder) == 0 then
    redis.call('HDEL', KEYS[1], holder)
  else
    total = total + tonumber(fields[i + 1])
  end
end
`;
const ACQUIRE = `
redis.call('SET', ARGV[3] .. ARGV[2], '1', 'PX', ARGV[4])
${SUM_LIVE}
local limit = tonumber(ARGV[1])
if limit > 0 and total >= limit then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
return 1
`;
const COUNT = `
${SUM_LIVE}
return total
`;
const RELEASE = `
local left = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if left <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
`;

export interface RedisConcurrencyCounterOptions extends RedisStoreOptions {
  /** This process's name among the holders (default: random); unique per live process. */
  holderId?: string;
  /** How long this process's holds outlive its last heartbeat (default 10 s); heartbeats go every third of it. */
  leaseMs?: number;
}

/**
 * Counts shared by every replica (sessions per API key across the cluster). Each replica
 * counts under its own holder id and keeps a liveness key alive; when a replica dies
 * without releasing (kill -9), its holds stop counting `leaseMs` after its last heartbeat.
 */
export class RedisConcurrencyCounter implements ConcurrencyCounter {
  private readonly prefix: string;
  private readonly holderPrefix: string;
  readonly holderId: string;
  private readonly leaseMs: number;
  private readonly ownsClient: boolean;
  private readonly heartbeat: NodeJS.Timeout;

  constructor(
    private readonly client: Redis,
    options: RedisConcurrencyCounterOptions = {},
  ) {
    const namespace = options.namespace ?? 'livegen:';
    this.prefix = `${namespace}held:`;
    this.holderPrefix = `${namespace}holder:`;
    this.holderId = options.holderId ?? randomUUID();
    this.leaseMs = options.leaseMs ?? 10_000;
    if (!Number.isInteger(this.leaseMs) || this.leaseMs < 30) throw new RangeError(`leaseMs must be a whole number of ms >= 30, got ${String(options.leaseMs)}`);
    this.ownsClient = options.ownsClient ?? true;
    // A missed beat is harmless (the lease is three beats long); the next one renews it.
    this.heartbeat = setInterval(() => {
      if (this.client.status === 'ready') this.client.set(this.holderPrefix + this.holderId, '1', 'PX', this.leaseMs).catch(() => undefined);
    }, Math.floor(this.leaseMs / 3));
    this.heartbeat.unref();
  }

  async acquire(key: string, limit: number): Promise<boolean> {
    checkLimit(limit);
    const taken = await call(this.client, 'concurrency counter acquire', () =>
      this.client.eval(ACQUIRE, 1, this.prefix + key, limit, this.holderId, this.holderPrefix, this.leaseMs),
    );
    return taken === 1;
  }

  async release(key: string): Promise<void> {
    await call(this.client, 'concurrency counter release', () => this.client.eval(RELEASE, 1, this.prefix + key, this.holderId));
  }

  async count(key: string): Promise<number> {
    const total = await call(this.client, 'concurrency counter count', () =>
      this.client.eval(COUNT, 1, this.prefix + key, '', this.holderId, this.holderPrefix),
    );
    return Number(total);
  }

  /** Stops the heartbeat and ends this holder's lease: what it still holds stops counting. */
  async close(): Promise<void> {
    clearInterval(this.heartbeat);
    if (this.client.status === 'ready') await this.client.del(this.holderPrefix + this.holderId).catch(() => undefined);
    if (this.ownsClient) this.client.disconnect();
  }
}
