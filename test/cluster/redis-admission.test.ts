import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisAdmission } from '../../src/cluster/redis-admission.js';
import { createRedisClient } from '../../src/store/redis.js';
import { admissionBackendContract, eventually, FakePlacement, join } from '../session/admission-backend.contract.js';
import { startRedis, type TestRedis } from '../support/redis-server.js';

let redis: TestRedis;
let namespaces = 0;
/** A fresh namespace per backend: every test starts from an empty queue on the one server. */
const namespace = (): string => `q${++namespaces}:`;

beforeAll(async () => {
  redis = await startRedis();
});

afterAll(async () => {
  await redis?.stop();
});

admissionBackendContract(
  'RedisAdmission',
  (placement, options) =>
    new RedisAdmission(createRedisClient(redis.url), placement, {
      namespace: namespace(),
      ownerId: 'router-a',
      maxQueue: options.maxQueue,
      depthUpdateIntervalMs: options.depthUpdateIntervalMs,
      ownsClient: true,
    }),
);

describe('RedisAdmission across owners', () => {
  it('counts every owner\'s waiters in one FIFO: positions are global and grants go in arrival order', async () => {
    const ns = namespace();
    const placement = new FakePlacement(1);
    const make = (ownerId: string) =>
      new RedisAdmission(createRedisClient(redis.url), placement, { namespace: ns, ownerId, maxQueue: 10, depthUpdateIntervalMs: 0, pollMs: 100, ownsClient: true });
    const a = make('router-a');
    const b = make('router-b');
    try {
      const holder = await join(a, 'holder').promise;
      const a1 = join(a, 'a1');
      await eventually(() => a1.ticket.last?.[0] === 0, 'a1 first');
      const b1 = join(b, 'b1');
      await eventually(() => b1.ticket.last?.[0] === 1, 'b1 second');
      const a2 = join(a, 'a2');
      await eventually(() => a2.ticket.last?.[0] === 2 && a1.ticket.last?.[1] === 3 && b1.ticket.last?.[1] === 3, 'every waiter sees depth 3');
      expect(b.queueDepth).toBe(3);
      a.release(holder);
      const first = await a1.promise;
      await eventually(() => b1.ticket.last?.[0] === 0 && a2.ticket.last?.[0] === 1, 'b1 and a2 move up');
      a.release(first);
      const second = await b1.promise;
      expect(second.sessionId).toBe('b1');
      b.release(second);
      expect((await a2.promise).sessionId).toBe('a2');
    } finally {
      a.close();
      b.close();
    }
  });

  it('drops the waiters of an owner that died (no heartbeat) within its presence TTL, so nobody waits behind ghosts', async () => {
    const ns = namespace();
    const placement = new FakePlacement(1);
    const deadClient = createRedisClient(redis.url);
    const dead = new RedisAdmission(deadClient, placement, { namespace: ns, ownerId: 'router-dead', maxQueue: 10, depthUpdateIntervalMs: 0, presenceTtlMs: 600, heartbeatMs: 200 });
    const live = new RedisAdmission(createRedisClient(redis.url), placement, { namespace: ns, ownerId: 'router-live', maxQueue: 10, depthUpdateIntervalMs: 0, presenceTtlMs: 600, heartbeatMs: 200, pollMs: 100, ownsClient: true });
    try {
      await join(live, 'holder').promise;
      const ghosts = ['g1', 'g2'].map((id) => join(dead, id));
      await eventually(() => ghosts[1]?.ticket.last?.[0] === 1, 'ghosts queued');
      const waiter = join(live, 'w');
      await eventually(() => waiter.ticket.last?.[0] === 2, 'w behind two');
      // kill -9 of the router: its connection and timers stop at once, nothing is cleaned up.
      deadClient.disconnect();
      (dead as unknown as { timers: NodeJS.Timeout[] }).timers.forEach((t) => clearInterval(t));
      await eventually(() => waiter.ticket.last?.[0] === 0 && waiter.ticket.last[1] === 1, 'w at the front alone', 3_000);
      expect(live.queueDepth).toBe(1);
    } finally {
      dead.close();
      live.close();
    }
  });
});
