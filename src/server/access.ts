import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { isIPv4, isIPv6 } from 'node:net';
import { MemoryConcurrencyCounter, MemoryRateLimiter, type ConcurrencyCounter, type RateLimiter } from '../store/index.js';
import { ConfigError, type ServeConfig } from './config.js';

/** Why a request may not proceed; `reason` never contains the presented secret. */
export type AccessRefusal = { status: 401 | 403 | 429; reason: string };
export type AccessDecision = { ok: true; keyId: string | undefined } | { ok: false; refusal: AccessRefusal };

/** Shortest API key accepted from any source; the same minimum `auth.api_keys` enforces. */
export const MIN_API_KEY_LENGTH = 16;

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
 * The keys in `LIVEGEN_API_KEYS`: comma-separated, blanks around them ignored. Throws a
 * ConfigError when one is shorter than the minimum, naming its position in the list and
 * never the key, since the message ends up in logs.
 */
export function parseEnvApiKeys(value: string | undefined): string[] {
  const keys: string[] = [];
  (value ?? '').split(',').forEach((entry, index) => {
    const key = entry.trim();
    if (!key) return;
    if (key.length < MIN_API_KEY_LENGTH) {
      throw new ConfigError(
        `LIVEGEN_API_KEYS: entry ${index + 1} is shorter than ${MIN_API_KEY_LENGTH} characters; API keys must be at least ${MIN_API_KEY_LENGTH} characters`,
      );
    }
    keys.push(key);
  });
  return keys;
}

/** The rate key of every loopback address: 127.0.0.0/8 and ::1 are all this host. */
const LOOPBACK = 'loopback';

/**
 * The key a client's connection rate is counted under: its network rather than its exact
 * address, so rotating through addresses one host owns does not buy more connections.
 * Every loopback address is one key; an IPv4-mapped IPv6 address counts as its IPv4
 * address; an IPv4 address is its own key; an IPv6 address counts by its /64, which one
 * host (one customer, one VM) usually owns whole. Anything else is returned as given.
 */
export function rateKeyOf(address: string): string {
  const trimmed = address.trim();
  // A zone (fe80::1%eth0) names the local interface, not the peer.
  const host = (trimmed.split('%')[0] ?? '').toLowerCase();
  if (isIPv4(host)) return ipv4RateKey(host);
  const groups = ipv6Groups(host);
  if (!groups) return trimmed;
  const [a = 0, b = 0, c = 0, d = 0, e = 0, f = 0, g = 0, h = 0] = groups;
  if (a === 0 && b === 0 && c === 0 && d === 0 && e === 0 && f === 0 && g === 0 && h === 1) return LOOPBACK;
  if (a === 0 && b === 0 && c === 0 && d === 0 && e === 0 && f === 0xffff) {
    return ipv4RateKey(`${g >> 8}.${g & 0xff}.${h >> 8}.${h & 0xff}`);
  }
  return `${[a, b, c, d].map((group) => group.toString(16)).join(':')}::/64`;
}

function ipv4RateKey(address: string): string {
  return address.startsWith('127.') ? LOOPBACK : address;
}

/** The eight 16-bit groups of an IPv6 address (`::` expanded, a dotted IPv4 tail split), or undefined if it is not one. */
function ipv6Groups(address: string): number[] | undefined {
  if (!isIPv6(address)) return undefined;
  let text = address;
  const tail: number[] = [];
  const lastColon = text.lastIndexOf(':');
  if (text.includes('.', lastColon)) {
    const [o1 = 0, o2 = 0, o3 = 0, o4 = 0] = text.slice(lastColon + 1).split('.').map(Number);
    tail.push((o1 << 8) | o2, (o3 << 8) | o4);
    // Keep a `::` that ends right before the IPv4 part; drop a single separating colon.
    text = text.endsWith('::', lastColon + 1) ? text.slice(0, lastColon + 1) : text.slice(0, lastColon);
  }
  const parse = (part: string): number[] => (part ? part.split(':').map((group) => parseInt(group, 16)) : []);
  const halves = text.split('::');
  const head = parse(halves[0] ?? '');
  const rest = halves.length > 1 ? parse(halves[1] ?? '') : [];
  const zeros = new Array<number>(8 - head.length - rest.length - tail.length).fill(0);
  return [...head, ...zeros, ...rest, ...tail];
}

export interface AccessControlOptions {
  /**
   * Keys beyond `auth.api_keys`, such as `parseEnvApiKeys(process.env.LIVEGEN_API_KEYS)`;
   * held to the same minimum length (a shorter one throws a ConfigError).
   */
  apiKeys?: readonly string[];
  /** Connection rate per client network; in-process by default, shared for a cluster. */
  rateLimiter?: RateLimiter;
  /** Concurrent sessions per API key; in-process by default, shared for a cluster. */
  sessionCounter?: ConcurrencyCounter;
}

/**
 * API keys, allowed origins, per-network connection rate and per-key session limits.
 * Keys are compared as SHA-256 digests with `timingSafeEqual` against every configured
 * key, so neither the match position nor the key length leaks through timing. The
 * counters sit behind interfaces so replicas can share them; the checks that touch them
 * are async and reject when the counters' backend fails.
 */
export class AccessControl {
  private readonly keys: { id: string; digest: Buffer }[];
  private readonly origins: Set<string>;
  private readonly rateLimiter: RateLimiter;
  private readonly sessionCounter: ConcurrencyCounter;

  constructor(
    private readonly config: ServeConfig,
    options: AccessControlOptions = {},
  ) {
    const extra = options.apiKeys ?? [];
    extra.forEach((key, index) => {
      if (key.length < MIN_API_KEY_LENGTH) {
        throw new ConfigError(`extra API key ${index + 1} is shorter than ${MIN_API_KEY_LENGTH} characters`);
      }
    });
    const all = [...new Set([...config.auth.api_keys, ...extra])];
    // A key is identified by its position, never by its value, in logs and limits.
    this.keys = all.map((key, index) => ({ id: `key${index + 1}`, digest: digest(key) }));
    this.origins = new Set(config.auth.allowed_origins);
    this.rateLimiter = options.rateLimiter ?? new MemoryRateLimiter();
    this.sessionCounter = options.sessionCounter ?? new MemoryConcurrencyCounter();
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

  /**
   * Everything a WebSocket upgrade must pass: origin, rate, key. The rate comes before
   * the key so that guessing keys costs connections too.
   */
  async checkUpgrade(req: IncomingMessage): Promise<AccessDecision> {
    const origin = req.headers.origin;
    if (this.origins.size > 0 && (!origin || !this.origins.has(origin))) {
      return { ok: false, refusal: { status: 403, reason: `origin ${origin ? JSON.stringify(origin.slice(0, 200)) : '(none)'} is not allowed` } };
    }
    const perMinute = this.config.limits.connections_per_minute_per_ip;
    if (perMinute > 0 && !(await this.rateLimiter.take(rateKeyOf(req.socket.remoteAddress ?? 'unknown'), perMinute))) {
      return { ok: false, refusal: { status: 429, reason: 'too many connections from this network; retry later' } };
    }
    return this.authenticate(req);
  }

  /** `/status` and `/metrics` need a key when `auth.protect_status` is on. */
  checkStatusRoute(req: IncomingMessage): AccessDecision {
    if (!this.config.auth.protect_status) return { ok: true, keyId: undefined };
    return this.authenticate(req);
  }

  /** Counts a session against its key; false when the key is at its limit. Sessions without a key are not counted. */
  async openSession(keyId: string | undefined): Promise<boolean> {
    if (!keyId) return true;
    return this.sessionCounter.acquire(keyId, this.config.auth.max_sessions_per_key);
  }

  /** Gives back the place `openSession` counted. */
  async closeSession(keyId: string | undefined): Promise<void> {
    if (!keyId) return;
    await this.sessionCounter.release(keyId);
  }

  /** Rate buckets held (for leak checks); undefined when the limiter is not in-process. */
  get trackedAddresses(): number | undefined {
    return this.rateLimiter instanceof MemoryRateLimiter ? this.rateLimiter.trackedKeys : undefined;
  }
}
