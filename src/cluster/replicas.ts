/**
 * The replica registry: every replica announces what it serves and how loaded it is, and
 * routers read the list to place sessions. In Redis each record is a key with a TTL that
 * the replica's heartbeat renews, so a replica killed without a goodbye is gone from the
 * list `presenceTtlMs` after its last beat, for every router at once.
 */
import type { Redis } from 'ioredis';
import type { ReplicaDescription } from '../server/app.js';
import { call } from '../store/redis.js';

/** What a replica tells the cluster about itself on every beat (the shape of cluster `/status`). */
export interface ReplicaRecord extends ReplicaDescription {
  id: string;
  /** Base URL routers use to reach it (`http://host:port`). */
  url: string;
  /** Wall-clock ms of the beat (for heartbeat age). */
  beat_at: number;
}

export interface ReplicaRegistry {
  /** Creates or refreshes `record`; it expires `ttlMs` after this call unless announced again. */
  announce(record: ReplicaRecord, ttlMs: number): Promise<void>;
  /** Removes a replica at once (a clean exit). */
  withdraw(id: string): Promise<void>;
  /** The replicas alive now, by id. */
  list(): Promise<ReplicaRecord[]>;
}

/** Whether a replica serves an init's preset (no preset asked: any replica does). */
export function servesPreset(record: Pick<ReplicaRecord, 'preset'>, preset: string | undefined): boolean {
  return preset === undefined || record.preset === null || record.preset === preset;
}

/** One process's registry, for tests and for embedding a router with replicas in one process. */
export class MemoryReplicaRegistry implements ReplicaRegistry {
  private readonly records = new Map<string, { record: ReplicaRecord; expiresAt: number }>();

  constructor(private readonly now: () => number = () => performance.now()) {}

  announce(record: ReplicaRecord, ttlMs: number): Promise<void> {
    this.records.set(record.id, { record: { ...record }, expiresAt: this.now() + ttlMs });
    return Promise.resolve();
  }

  withdraw(id: string): Promise<void> {
    this.records.delete(id);
    return Promise.resolve();
  }

  list(): Promise<ReplicaRecord[]> {
    const now = this.now();
    for (const [id, entry] of this.records) if (entry.expiresAt <= now) this.records.delete(id);
    return Promise.resolve([...this.records.values()].map((e) => ({ ...e.record })).sort((a, b) => a.id.localeCompare(b.id)));
  }
}

/** Records as JSON under `<ns>replica:<id>` (PX TTL) and their ids in the set `<ns>replicas`. */
export class RedisReplicaRegistry implements ReplicaRegistry {
  readonly setKey: string;
  readonly recordPrefix: string;

  constructor(
    private readonly client: Redis,
    namespace: string,
  ) {
    this.setKey = `${namespace}replicas`;
    this.recordPrefix = `${namespace}replica:`;
  }

  async announce(record: ReplicaRecord, ttlMs: number): Promise<void> {
    await call(this.client, 'replica announce', () =>
      this.client.multi().set(this.recordPrefix + record.id, JSON.stringify(record), 'PX', Math.max(1, Math.round(ttlMs))).sadd(this.setKey, record.id).exec(),
    );
  }

  async withdraw(id: string): Promise<void> {
    await call(this.client, 'replica withdraw', () => this.client.multi().del(this.recordPrefix + id).srem(this.setKey, id).exec());
  }

  async list(): Promise<ReplicaRecord[]> {
    const ids = (await call(this.client, 'replica list', () => this.client.smembers(this.setKey))).sort();
    if (ids.length === 0) return [];
    const raws = await call(this.client, 'replica list', () => this.client.mget(ids.map((id) => this.recordPrefix + id)));
    const records: ReplicaRecord[] = [];
    const gone: string[] = [];
    raws.forEach((raw, i) => {
      if (raw === null) gone.push(ids[i] as string);
      else records.push(JSON.parse(raw) as ReplicaRecord);
    });
    // Expired records leave their id behind; tidy the set (a racing announce adds it back).
    if (gone.length > 0) void this.client.srem(this.setKey, ...gone).catch(() => undefined);
    return records;
  }
}
