import type { Redis } from 'ioredis';
import type { ClaimLock } from '../server/resume-tokens.js';
import { call } from '../store/redis.js';

/**
 * Resume-token claims shared by every replica: `SET NX PX`, so one token resumes one
 * session across the cluster. A claim lasts at most `ttlMs` (longer than a session may
 * wait between claiming and becoming active), so a replica that dies holding one does
 * not lock the token for ever.
 */
export class RedisClaimLock implements ClaimLock {
  constructor(
    private readonly client: Redis,
    private readonly namespace: string,
    private readonly ttlMs: number,
  ) {}

  async take(key: string): Promise<boolean> {
    const ok = await call(this.client, 'resume claim', () => this.client.set(`${this.namespace}claim:${key}`, '1', 'PX', this.ttlMs, 'NX'));
    return ok === 'OK';
  }

  async give(key: string): Promise<void> {
    await call(this.client, 'resume claim release', () => this.client.del(`${this.namespace}claim:${key}`));
  }
}
