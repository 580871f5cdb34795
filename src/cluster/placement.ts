/**
 * Placement across replicas: which replica a granted session goes to. One Lua script reads
 * the live replica records and the holds routers keep on them, picks the least loaded
 * replica with a free worker that serves the session's preset, and records the hold, all
 * in one step (the queue already lets one router place at a time; the script makes the
 * choice and the hold one atomic read-and-write as well).
 *
 * A hold is `<ns>holds:<replica>` field `<session>` = the router's id. It lives while the
 * router's presence key lives, so the holds of a router that died stop counting with it;
 * the router deletes a hold when its session ends or moves.
 *
 * A replica's free workers are the smaller of what it reported on its last beat and its
 * worker count minus the holds on it: the first covers workers that are warming, failed,
 * or taken by sessions that came in directly; the second covers grants made since its
 * last beat.
 */
import type { Redis } from 'ioredis';
import { call } from '../store/redis.js';
import type { AsyncPlacement } from './redis-admission.js';

export interface ReplicaLease {
  readonly sessionId: string;
  readonly replicaId: string;
  readonly url: string;
}

/** What the router knows of a session it is placing. */
export interface PlacementRequest {
  /** The init's preset (undefined: any replica). */
  preset: string | undefined;
  /** Replicas not to use (the one a moving session just left). */
  exclude: ReadonlySet<string>;
}

// KEYS: replica id set. ARGV: namespace, session, preset ('' = any), excluded ids (comma-separated), router id, presence prefix.
const PLACE = `
local ns = ARGV[1]
local excluded = {}
for id in string.gmatch(ARGV[4], '[^,]+') do excluded[id] = true end
local best, bestLoad, bestFree = nil, nil, nil
local ids = redis.call('SMEMBERS', KEYS[1])
table.sort(ids)
for _, id in ipairs(ids) do
  local raw = redis.call('GET', ns .. 'replica:' .. id)
  if raw and not excluded[id] then
    local r = cjson.decode(raw)
    local preset = r.preset
    if r.draining ~= true and (ARGV[3] == '' or preset == cjson.null or preset == ARGV[3]) then
      local holdsKey = ns .. 'holds:' .. id
      local holds = redis.call('HGETALL', holdsKey)
      local held = 0
      for i = 1, #holds, 2 do
        if redis.call('EXISTS', ARGV[6] .. holds[i + 1]) == 1 then held = held + 1 else redis.call('HDEL', holdsKey, holds[i]) end
      end
      local free = math.min(r.available, r.workers - held)
      if free > 0 and r.workers > 0 then
        local load = (r.workers - free) / r.workers
        if best == nil or load < bestLoad or (load == bestLoad and free > bestFree) then
          best, bestLoad, bestFree = r, load, free
        end
      end
    end
  end
end
if best == nil then return nil end
redis.call('HSET', ns .. 'holds:' .. best.id, ARGV[2], ARGV[5])
return {best.id, best.url}
`;

export class ClusterPlacement implements AsyncPlacement<ReplicaLease> {
  private readonly requests = new Map<string, PlacementRequest>();
  private readonly listeners = new Set<() => void>();

  constructor(
    private readonly client: Redis,
    private readonly options: { namespace: string; routerId: string; presencePrefix: string; channel: string },
  ) {}

  /** Says what `sessionId` needs before it is admitted; forgotten once it is placed. */
  expect(sessionId: string, request: PlacementRequest): void {
    this.requests.set(sessionId, request);
  }

  forget(sessionId: string): void {
    this.requests.delete(sessionId);
  }

  async tryPlace(sessionId: string): Promise<ReplicaLease | undefined> {
    const request = this.requests.get(sessionId) ?? { preset: undefined, exclude: new Set<string>() };
    const { namespace, routerId, presencePrefix } = this.options;
    const placed = (await call(this.client, 'placement', () =>
      this.client.eval(PLACE, 1, `${namespace}replicas`, namespace, sessionId, request.preset ?? '', [...request.exclude].join(','), routerId, presencePrefix),
    )) as [string, string] | null;
    if (!placed) return undefined;
    return { sessionId, replicaId: placed[0], url: placed[1] };
  }

  /** Drops the hold (best effort: a hold of a dead router lapses by itself) and wakes the queue. */
  release(lease: ReplicaLease): void {
    const { namespace, channel } = this.options;
    this.client
      .multi()
      .hdel(`${namespace}holds:${lease.replicaId}`, lease.sessionId)
      .publish(channel, 'c')
      .exec()
      .catch(() => undefined);
    for (const listener of [...this.listeners]) listener();
  }

  onCapacity(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
