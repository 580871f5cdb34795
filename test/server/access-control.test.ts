import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { AccessControl, parseEnvApiKeys, rateKeyOf, type AccessControlOptions } from '../../src/server/access.js';
import { ConfigError, parseConfig, type ServeConfigInput } from '../../src/server/config.js';
import { MemoryConcurrencyCounter, MemoryRateLimiter, type RateLimiter } from '../../src/store/index.js';

const KEY = 'k3y-0123456789abcdef-secret';
const ENV_KEY = 'env-key-0123456789abcdef';

/** Just what AccessControl reads from an upgrade request. */
function request(options: { address?: string; url?: string; headers?: Record<string, string> } = {}): IncomingMessage {
  return {
    url: options.url ?? '/v1/stream',
    headers: options.headers ?? {},
    socket: { remoteAddress: options.address ?? '127.0.0.1' },
  } as unknown as IncomingMessage;
}

function access(config: ServeConfigInput = {}, options: AccessControlOptions = {}): AccessControl {
  return new AccessControl(parseConfig(config), options);
}

function configErrorOf(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError, nothing was thrown');
}

/** Counts upgrades from each address in turn that get past the rate check. */
async function admitted(control: AccessControl, addresses: string[]): Promise<boolean[]> {
  const results: boolean[] = [];
  for (const address of addresses) results.push((await control.checkUpgrade(request({ address }))).ok);
  return results;
}

describe('rateKeyOf', () => {
  it('gives every 127.0.0.0/8 address the one loopback key', () => {
    const keys = ['127.0.0.1', '127.0.0.2', '127.1.2.3', '127.255.255.254'].map(rateKeyOf);
    expect(new Set(keys).size).toBe(1);
  });

  it('gives ::1 and IPv4-mapped loopback addresses the same loopback key', () => {
    const loopback = rateKeyOf('127.0.0.1');
    for (const address of ['::1', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1', '::ffff:127.9.8.7', '::ffff:7f00:1', '::FFFF:127.0.0.1']) {
      expect(rateKeyOf(address)).toBe(loopback);
    }
  });

  it('counts an IPv4-mapped IPv6 address as its IPv4 address', () => {
    expect(rateKeyOf('::ffff:203.0.113.7')).toBe(rateKeyOf('203.0.113.7'));
    expect(rateKeyOf('::ffff:cb00:7107')).toBe(rateKeyOf('203.0.113.7'));
  });

  it('keys each plain IPv4 address by itself', () => {
    expect(rateKeyOf('203.0.113.7')).toBe('203.0.113.7');
    expect(rateKeyOf('203.0.113.8')).not.toBe(rateKeyOf('203.0.113.7'));
    expect(rateKeyOf('10.0.0.1')).not.toBe(rateKeyOf('10.0.0.2'));
  });

  it('keys an IPv6 address by its /64, however it is written', () => {
    const key = rateKeyOf('2001:db8:1:2::1');
    expect(key).toBe('2001:db8:1:2::/64');
    for (const address of ['2001:db8:1:2:ffff:ffff:ffff:ffff', '2001:0DB8:0001:0002:0000:0000:0000:0001', '2001:db8:1:2:a:b:1.2.3.4']) {
      expect(rateKeyOf(address)).toBe(key);
    }
  });

  it('gives different /64 networks different keys', () => {
    expect(rateKeyOf('2001:db8:1:3::1')).not.toBe(rateKeyOf('2001:db8:1:2::1'));
    expect(rateKeyOf('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(rateKeyOf('64:ff9b::192.0.2.1')).toBe('64:ff9b:0:0::/64');
  });

  it('ignores the zone of a link-local address', () => {
    expect(rateKeyOf('fe80::1%eth0')).toBe(rateKeyOf('fe80::2'));
  });

  it('never confuses an IPv6 network with the loopback or an IPv4 key', () => {
    const keys = ['::1', '127.0.0.1', '::2', '::ffff:10.0.0.1', '10.0.0.1', '::'].map(rateKeyOf);
    expect(new Set(keys)).toEqual(new Set([rateKeyOf('::1'), '10.0.0.1', '0:0:0:0::/64']));
  });

  it('returns anything that is not an address as given', () => {
    expect(rateKeyOf('unknown')).toBe('unknown');
    expect(rateKeyOf('127.0.0.01')).toBe('127.0.0.01');
  });
});

describe('parseEnvApiKeys', () => {
  it('returns no keys when the variable is unset or blank', () => {
    expect(parseEnvApiKeys(undefined)).toEqual([]);
    expect(parseEnvApiKeys('')).toEqual([]);
    expect(parseEnvApiKeys(' , ')).toEqual([]);
  });

  it('splits on commas and trims each key', () => {
    expect(parseEnvApiKeys(` ${KEY} ,,${ENV_KEY}`)).toEqual([KEY, ENV_KEY]);
  });

  it('accepts a key of exactly 16 characters', () => {
    expect(parseEnvApiKeys('0123456789abcdef')).toEqual(['0123456789abcdef']);
  });

  it('refuses a short key with a ConfigError naming the variable and the position, never the key', () => {
    const error = configErrorOf(() => parseEnvApiKeys(`${KEY},${ENV_KEY},abc`));
    expect(error.message).toMatch(/LIVEGEN_API_KEYS/);
    expect(error.message).toMatch(/entry 3/);
    expect(error.message).toMatch(/16 characters/);
    expect(error.message).not.toContain('abc');
    expect(error.message).not.toContain(KEY);
  });

  it('refuses a key one character short of the minimum', () => {
    const error = configErrorOf(() => parseEnvApiKeys('0123456789abcde'));
    expect(error.message).toMatch(/entry 1/);
    expect(error.message).not.toContain('0123456789abcde');
  });
});

describe('AccessControl: keys', () => {
  it('lets everything through with no keys configured', async () => {
    const decision = await access().checkUpgrade(request());
    expect(decision).toEqual({ ok: true, keyId: undefined });
  });

  it('names keys by position, configured keys first, duplicates once', async () => {
    const control = access({ auth: { api_keys: [KEY] } }, { apiKeys: [KEY, ENV_KEY] });
    expect(await control.checkUpgrade(request({ headers: { authorization: `Bearer ${KEY}` } }))).toEqual({ ok: true, keyId: 'key1' });
    expect(await control.checkUpgrade(request({ url: `/v1/stream?token=${ENV_KEY}` }))).toEqual({ ok: true, keyId: 'key2' });
  });

  it('refuses a missing or wrong key with 401 and never names a key', async () => {
    const control = access({ auth: { api_keys: [KEY] } });
    const missing = await control.checkUpgrade(request());
    const wrong = await control.checkUpgrade(request({ headers: { authorization: 'Bearer wrong-key-0123456789abcdef' } }));
    for (const decision of [missing, wrong]) {
      expect(decision.ok).toBe(false);
      if (decision.ok) return;
      expect(decision.refusal.status).toBe(401);
      expect(decision.refusal.reason).not.toContain(KEY);
      expect(decision.refusal.reason).not.toContain('wrong-key');
    }
  });

  it('refuses an extra key shorter than the minimum, without naming it', () => {
    const error = configErrorOf(() => access({}, { apiKeys: [ENV_KEY, 'abc'] }));
    expect(error.message).toMatch(/2/);
    expect(error.message).not.toContain('abc');
  });

  it('protects the status routes only when protect_status is on', () => {
    expect(access({ auth: { api_keys: [KEY] } }).checkStatusRoute(request())).toEqual({ ok: true, keyId: undefined });
    const guarded = access({ auth: { api_keys: [KEY], protect_status: true } });
    expect(guarded.checkStatusRoute(request())).toMatchObject({ ok: false, refusal: { status: 401 } });
    expect(guarded.checkStatusRoute(request({ headers: { authorization: `Bearer ${KEY}` } }))).toEqual({ ok: true, keyId: 'key1' });
  });
});

describe('AccessControl: origins and rate', () => {
  it('refuses an origin not on the list with 403 before spending a connection token', async () => {
    const taken: string[] = [];
    const limiter: RateLimiter = { take: async (key) => (taken.push(key), true) };
    const control = access({ auth: { allowed_origins: ['https://app.example'] }, limits: { connections_per_minute_per_ip: 5 } }, { rateLimiter: limiter });
    expect(await control.checkUpgrade(request({ headers: { origin: 'https://evil.example' } }))).toMatchObject({ ok: false, refusal: { status: 403 } });
    expect(taken).toEqual([]);
    expect((await control.checkUpgrade(request({ headers: { origin: 'https://app.example' } }))).ok).toBe(true);
  });

  it('takes from the rate limiter under the client network key at the configured rate', async () => {
    const taken: [string, number][] = [];
    const limiter: RateLimiter = { take: async (key, perMinute) => (taken.push([key, perMinute]), true) };
    const control = access({ limits: { connections_per_minute_per_ip: 7 } }, { rateLimiter: limiter });
    await control.checkUpgrade(request({ address: '::ffff:127.0.0.5' }));
    await control.checkUpgrade(request({ address: '2001:db8:1:2::99' }));
    expect(taken).toEqual([
      [rateKeyOf('127.0.0.1'), 7],
      ['2001:db8:1:2::/64', 7],
    ]);
  });

  it('does not consult the rate limiter when the rate is unlimited', async () => {
    let takes = 0;
    const control = access({}, { rateLimiter: { take: async () => (takes++, true) } });
    await control.checkUpgrade(request());
    expect(takes).toBe(0);
  });

  it('counts rotating loopback addresses against one bucket', async () => {
    const control = access({ limits: { connections_per_minute_per_ip: 3 } });
    expect(await admitted(control, ['127.0.0.1', '127.0.0.2', '::1', '::ffff:127.0.0.4', '127.0.0.5'])).toEqual([true, true, true, false, false]);
    const refused = await control.checkUpgrade(request({ address: '127.8.8.8' }));
    expect(refused).toMatchObject({ ok: false, refusal: { status: 429 } });
  });

  it('counts addresses of one IPv6 /64 against one bucket and other networks apart', async () => {
    const control = access({ limits: { connections_per_minute_per_ip: 2 } });
    expect(await admitted(control, ['2001:db8:0:1::1', '2001:db8:0:1::2', '2001:db8:0:1::3'])).toEqual([true, true, false]);
    expect(await admitted(control, ['2001:db8:0:2::1', '203.0.113.1', '203.0.113.2', '::ffff:203.0.113.1'])).toEqual([true, true, true, true]);
    expect(await admitted(control, ['203.0.113.1'])).toEqual([false]);
  });

  it('refills the bucket with time', async () => {
    let now = 0;
    const control = access({ limits: { connections_per_minute_per_ip: 2 } }, { rateLimiter: new MemoryRateLimiter({ now: () => now }) });
    expect(await admitted(control, ['10.0.0.1', '10.0.0.1', '10.0.0.1'])).toEqual([true, true, false]);
    now += 30_000;
    expect(await admitted(control, ['10.0.0.1', '10.0.0.1'])).toEqual([true, false]);
  });

  it('rejects when the rate limiter fails, leaving the policy to the caller', async () => {
    const control = access({ limits: { connections_per_minute_per_ip: 1 } }, { rateLimiter: { take: () => Promise.reject(new Error('backend down')) } });
    await expect(control.checkUpgrade(request())).rejects.toThrow('backend down');
  });

  it('reports the buckets an in-process limiter holds, and nothing for another limiter', async () => {
    const local = access({ limits: { connections_per_minute_per_ip: 2 } });
    expect(local.trackedAddresses).toBe(0);
    await admitted(local, ['127.0.0.1', '127.0.0.2', '10.0.0.1']);
    expect(local.trackedAddresses).toBe(2);
    expect(access({}, { rateLimiter: { take: async () => true } }).trackedAddresses).toBeUndefined();
  });
});

describe('AccessControl: sessions per key', () => {
  it('admits sessions up to max_sessions_per_key and again after one closes', async () => {
    const control = access({ auth: { api_keys: [KEY], max_sessions_per_key: 2 } });
    expect(await control.openSession('key1')).toBe(true);
    expect(await control.openSession('key1')).toBe(true);
    expect(await control.openSession('key1')).toBe(false);
    expect(await control.openSession('key2')).toBe(true);
    await control.closeSession('key1');
    expect(await control.openSession('key1')).toBe(true);
  });

  it('does not count sessions without a key', async () => {
    const counter = new MemoryConcurrencyCounter();
    const control = access({ auth: { max_sessions_per_key: 1 } }, { sessionCounter: counter });
    expect(await control.openSession(undefined)).toBe(true);
    expect(await control.openSession(undefined)).toBe(true);
    await control.closeSession(undefined);
    expect(counter.trackedKeys).toBe(0);
  });

  it('counts sessions without limit when max_sessions_per_key is 0, and gives each place back', async () => {
    const counter = new MemoryConcurrencyCounter();
    const control = access({ auth: { api_keys: [KEY] } }, { sessionCounter: counter });
    for (let i = 0; i < 5; i++) expect(await control.openSession('key1')).toBe(true);
    expect(await counter.count('key1')).toBe(5);
    for (let i = 0; i < 5; i++) await control.closeSession('key1');
    expect(await counter.count('key1')).toBe(0);
  });

  it('shares the limit between access controls that share a counter', async () => {
    const counter = new MemoryConcurrencyCounter();
    const config = { auth: { api_keys: [KEY], max_sessions_per_key: 1 } };
    const first = access(config, { sessionCounter: counter });
    const second = access(config, { sessionCounter: counter });
    expect(await first.openSession('key1')).toBe(true);
    expect(await second.openSession('key1')).toBe(false);
    await first.closeSession('key1');
    expect(await second.openSession('key1')).toBe(true);
  });
});
