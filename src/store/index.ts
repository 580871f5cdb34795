/**
 * State that outlives one connection or is shared between replicas: continuation states,
 * and the counters behind access control. Each is an interface with an in-process
 * implementation; a Redis one fits the same interface and passes the same contract tests.
 * The Redis ones live in ./redis.js, imported from there only, so a single-node server
 * never loads the Redis client.
 */
export {
  MemoryContinuationStore,
  type ContinuationStore,
  type ContinuationPutOptions,
  type MemoryContinuationStoreOptions,
} from './continuation-store.js';
export { MemoryRateLimiter, type RateLimiter, type MemoryRateLimiterOptions } from './rate-limiter.js';
export { MemoryConcurrencyCounter, type ConcurrencyCounter } from './concurrency-counter.js';
export { checkLimit, checkPerMinute, checkTtl } from './validate.js';
