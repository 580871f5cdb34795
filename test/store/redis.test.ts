import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRedisClient, RedisConcurrencyCounter, RedisContinuationStore, RedisRateLimiter, StoreUnavailableError } from '../../src/store/redis.js';
import { startRedis, type TestRedis } from '../support/redis-server.js';
import { continuationStoreContract } from './continuation-store.contract.js';
import { concurrencyCounterContract, rateLimiterContract } from './counters.contract.js';
import { ManualClock } from './manual-clock.js';

let redis: TestRedis;
let namespaces = 0;
/** A fresh namespace per fixture: every test starts from an empty store on the one server. */
const namespace = (): string => `t${++namespaces}:`;
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

beforeAll(async () => {
  redis = await startRedis();
});

afterAll(async () => {
  await redis?.stop();
});

continuationStoreContract('redis', () => ({
  store: new RedisContinuationStore(createRedisClient(redis.url), { namespace: namespace() }),
  // Redis keeps its own time: the TTLs really pass.
  advance: sleep,
}));

rateLimiterContract('redis (caller clock)', () => {
  const clock = new ManualClock();
  const limiter = new RedisRateLimiter(createRedisClient(redis.url), { namespace: namespace(), now: clock.now });
  return { limiter, advance: async (ms) => clock.advance(ms), dispose: () => limiter.close() };
});

concurrencyCounterContract('redis', () => new RedisConcurrencyCounter(createRedisClient(redis.url), { namespace: namespace() }));

describe('Redis stores', () => {
  it('count holds of every replica against one limit, and drop a dead replica\'s holds after its lease', async () => {
    const ns = namespace();
    const clientA = createRedisClient(redis.url);
    const a = new RedisConcurrencyCounter(clientA, { namespace: ns, leaseMs: 600 });
    const b = new RedisConcurrencyCounter(createRedisClient(redis.url), { namespace: ns, leaseMs: 600 });
    try {
      expect(await a.acquire('key-1', 3)).toBe(true);
      expect(await a.acquire('key-1', 3)).toBe(true);
      expect(await b.acquire('key-1', 3)).toBe(true);
      expect(await b.acquire('key-1', 3)).toBe(false);
      expect(await a.count('key-1')).toBe(3);
      // A heartbeat keeps A's holds counting past its lease...
      await sleep(1000);
      expect(await b.count('key-1')).toBe(3);
      // ...until A dies without releasing (its connection gone, as with kill -9).
      clientA.disconnect();
      await sleep(900);
      expect(await b.count('key-1')).toBe(1);
      expect(await b.acquire('key-1', 3)).toBe(true);
      expect(await b.acquire('key-1', 3)).toBe(true);
      expect(await b.acquire('key-1', 3)).toBe(false);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('refuses a lease too short to renew', () => {
    const client = createRedisClient(redis.url);
    try {
      expect(() => new RedisConcurrencyCounter(client, { leaseMs: 5 })).toThrow(/leaseMs/);
    } finally {
      client.disconnect();
    }
  });

  it('share one state between two replicas (two connections), and keep namespaces apart', async () => {
    const ns = namespace();
    const a = new RedisContinuationStore(createRedisClient(redis.url), { namespace: ns });
    const b = new RedisContinuationStore(createRedisClient(redis.url), { namespace: ns });
    const other = new RedisContinuationStore(createRedisClient(redis.url), { namespace: namespace() });
    try {
      await a.put('session-1', { kind: 'k', payload: { frame: 48 } }, { ttlMs: 60_000 });
      expect(await b.get('session-1')).toEqual({ kind: 'k', payload: { frame: 48 } });
      expect(await other.get('session-1')).toBeUndefined();
      expect(await other.size()).toBe(0);
      await b.delete('session-1');
      expect(await a.get('session-1')).toBeUndefined();
    } finally {
      await Promise.all([a.close(), b.close(), other.close()]);
    }
  });

  it('share one token bucket between replicas, on the Redis server clock', async () => {
    const ns = namespace();
    const a = new RedisRateLimiter(createRedisClient(redis.url), { namespace: ns });
    const b = new RedisRateLimiter(createRedisClient(redis.url), { namespace: ns });
    try {
      const taken = [await a.take('10.0.0.1', 3), await b.take('10.0.0.1', 3), await a.take('10.0.0.1', 3), await b.take('10.0.0.1', 3)];
      expect(taken).toEqual([true, true, true, false]);
      expect(await b.take('10.0.0.2', 3)).toBe(true);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('fail fast with StoreUnavailableError while Redis is down, and work again once it is back', async () => {
    const own = await startRedis();
    const store = new RedisContinuationStore(createRedisClient(own.url, { commandTimeoutMs: 500, maxReconnectDelayMs: 200 }));
    try {
      await store.put('s', { kind: 'k', payload: {} });
      await own.kill();
      const started = performance.now();
      await expect(store.get('s')).rejects.toBeInstanceOf(StoreUnavailableError);
      await expect(store.put('s', { kind: 'k', payload: {} })).rejects.toThrow(/redis unavailable/);
      // Well within the command deadline plus a connection attempt: never a hang.
      expect(performance.now() - started).toBeLessThan(5000);
      await own.start();
      // The client reconnects by itself (no persistence: the old state is gone with the server).
      await expect.poll(() => store.get('s').then(() => 'ok', () => 'down'), { timeout: 10_000, interval: 100 }).toBe('ok');
      await store.put('s', { kind: 'k', payload: { again: true } });
      expect(await store.get('s')).toEqual({ kind: 'k', payload: { again: true } });
    } finally {
      await store.close();
      await own.stop();
    }
  });

  it('refuses a malformed redis url by name', () => {
    expect(() => createRedisClient('localhost:6379')).toThrow(/redis url must/);
    expect(() => createRedisClient('http://127.0.0.1:6379')).toThrow(/redis:\/\/ or rediss:\/\//);
  });
});
