import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { ServeConfig } from './config.js';

/** Why a request may not proceed; `reason` never contains the presented secret. */
export type AccessRefusal = { status: 401 | 403 | 429; reason: string };
export type AccessDecision = { ok: true; keyId: string | undefined } | { ok: false; refusal: AccessRefusal };

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

/** The presented key: `Authorization: Bearer KEY`, or `?token=KEY` (browsers cannot set WebSocket headers). */
export function presentedKey(req: IncomingMessage): string | undefined {
  const header = req.headers.authorization;
  if (header) {
    const match = /^Bearer\s+(.+)$/i.exec(header.trim());
    return match?.[1]?.trim();
  }
  const query = (req.url ?? '').split('?')[1];
  if (!query) return undefined;
  return new URLSearchParams(query).get('token') ?? undefined;
}

/**
 * API keys, allowed origins, per-IP connection rate and per-key session limits.
 * Keys are compared as SHA-256 digests with `timingSafeEqual` against every configured
 * key, so neither the match position nor the key length leaks through timing.
 */
export class AccessControl {
  private readonly keys: { id: string; digest: Buffer }[];
  private readonly origins: Set<string>;
  private readonly sessionsByKey = new Map<string, number>();
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly config: ServeConfig,
    extraKeys: readonly string[] = [],
    private readonly now: () => number = Date.now,
  ) {
    const all = [...new Set([...config.auth.api_keys, ...extraKeys])];
    // A key is identified by its position, never by its value, in logs and limits.
    this.keys = all.map((key, index) => ({ id: `key${index + 1}`, digest: digest(key) }));
    this.origins = new Set(config.auth.allowed_origins);
  }

  get authEnabled(): boolean {
    return this.keys.length > 0;
  }

  /** Checks a presented key; `undefined` key id when auth is off. */
  authenticate(req: IncomingMessage): AccessDecision {
    if (!this.authEnabled) return { ok: true, keyId: undefined };
    const key = presentedKey(req);
    if (!key) return { ok: false, refusal: { status: 401, reason: 'an API key is required (Authorization: Bearer KEY, or ?token=KEY)' } };
    const candidate = digest(key);
    let match: string | undefined;
    for (const entry of this.keys) {
      if (timingSafeEqual(candidate, entry.digest)) match ??= entry.id;
    }
    return match ? { ok: true, keyId: match } : { ok: false, refusal: { status: 401, reason: 'invalid API key' } };
  }

  /** Everything a WebSocket upgrade must pass: origin, rate, key. */
  checkUpgrade(req: IncomingMessage): AccessDecision {
    const origin = req.headers.origin;
    if (this.origins.size > 0 && (!origin || !this.origins.has(origin))) {
      return { ok: false, refusal: { status: 403, reason: `origin ${origin ? JSON.stringify(origin.slice(0, 200)) : '(none)'} is not allowed` } };
    }
    if (!this.takeConnectionToken(req.socket.remoteAddress ?? 'unknown')) {
      return { ok: false, refusal: { status: 429, reason: 'too many connections from this address; retry later' } };
    }
    return this.authenticate(req);
  }

  /** `/status` and `/metrics` need a key when `auth.protect_status` is on. */
  checkStatusRoute(req: IncomingMessage): AccessDecision {
    if (!this.config.auth.protect_status) return { ok: true, keyId: undefined };
    return this.authenticate(req);
  }

  /** Counts a session against its key; false when the key is at its limit. */
  openSession(keyId: string | undefined): boolean {
    if (!keyId) return true;
    const limit = this.config.auth.max_sessions_per_key;
    const count = this.sessionsByKey.get(keyId) ?? 0;
    if (limit > 0 && count >= limit) return false;
    this.sessionsByKey.set(keyId, count + 1);
    return true;
  }

  closeSession(keyId: string | undefined): void {
    if (!keyId) return;
    const count = (this.sessionsByKey.get(keyId) ?? 1) - 1;
    if (count <= 0) this.sessionsByKey.delete(keyId);
    else this.sessionsByKey.set(keyId, count);
  }

  /** Token bucket per IP: `connections_per_minute_per_ip` tokens, refilled continuously. */
  private takeConnectionToken(ip: string): boolean {
    const perMinute = this.config.limits.connections_per_minute_per_ip;
    if (perMinute <= 0) return true;
    const now = this.now();
    const bucket = this.buckets.get(ip) ?? { tokens: perMinute, at: now };
    bucket.tokens = Math.min(perMinute, bucket.tokens + ((now - bucket.at) * perMinute) / 60_000);
    bucket.at = now;
    if (bucket.tokens < 1) {
      this.buckets.set(ip, bucket);
      return false;
    }
    bucket.tokens -= 1;
    this.buckets.set(ip, bucket);
    this.forgetFullBuckets(now, perMinute);
    return true;
  }

  /** Buckets that refilled completely carry no information; dropping them bounds memory. */
  private forgetFullBuckets(now: number, perMinute: number): void {
    if (this.buckets.size < 1024) return;
    for (const [ip, b] of this.buckets) {
      if (b.tokens + ((now - b.at) * perMinute) / 60_000 >= perMinute) this.buckets.delete(ip);
    }
  }

  /** Buckets held (for leak checks). */
  get trackedAddresses(): number {
    return this.buckets.size;
  }
}
