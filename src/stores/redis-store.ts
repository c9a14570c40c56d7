// RedisStore: the Store shared by every replica, over one ioredis client (standalone, Sentinel
// or Cluster). Each operation is one round trip: the multi-key ones are Lua scripts (lua/),
// atomic and timed by the Redis server's clock; the rest are single commands. It neither
// retries nor falls back: ResilientStore decides what a failure means for the request.
import type { Cluster, Redis } from 'ioredis';
import { ACQUIRE_LUA } from './lua/acquire.js';
import { ADMIT_LUA } from './lua/admit.js';
import { ADJUST_LUA } from './lua/adjust.js';
import { RESERVE_LUA, SETTLE_LUA } from './lua/budget.js';
import { FINISH_LUA } from './lua/finish.js';
import { TAKE_LUA } from './lua/take.js';
import type {
  Admission,
  AdmissionResult,
  BucketSnapshot,
  BudgetCheck,
  CounterIncrement,
  Lease,
  ReserveResult,
  SettleAlso,
  SlotResult,
  Store,
  Take,
  TakeResult,
} from './store.js';

export type RedisClient = Redis | Cluster;

// defineCommand sends EVALSHA and, on NOSCRIPT (a restarted or flushed server), resends the
// script body in the same call; the first call on each connection sends EVAL directly.
const TAKE = 'tollgateTake';
const ADJUST = 'tollgateAdjust';
const ACQUIRE = 'tollgateAcquire';
const RESERVE = 'tollgateReserve';
const SETTLE = 'tollgateSettle';
const ADMIT = 'tollgateAdmit';
const FINISH = 'tollgateFinish';

type ScriptArg = string | number | Buffer;

/** The commands defineCommand adds; ioredis cannot type them. numKeys comes first. */
interface ScriptCommands {
  [TAKE](numKeys: number, ...args: ScriptArg[]): Promise<unknown>;
  [ADJUST](numKeys: number, ...args: ScriptArg[]): Promise<unknown>;
  [ACQUIRE](numKeys: number, ...args: ScriptArg[]): Promise<unknown>;
  [RESERVE](numKeys: number, ...args: ScriptArg[]): Promise<unknown>;
  [SETTLE](numKeys: number, ...args: ScriptArg[]): Promise<unknown>;
  [ADMIT](numKeys: number, ...args: ScriptArg[]): Promise<unknown>;
  [FINISH](numKeys: number, ...args: ScriptArg[]): Promise<unknown>;
}

export class RedisStore implements Store {
  readonly kind = 'redis' as const;
  /** The client this store owns: close() quits it. ResilientStore watches its status. */
  readonly client: RedisClient;
  private readonly scripts: ScriptCommands;

  constructor(client: RedisClient) {
    this.client = client;
    client.defineCommand(TAKE, { lua: TAKE_LUA });
    client.defineCommand(ADJUST, { lua: ADJUST_LUA });
    client.defineCommand(ACQUIRE, { lua: ACQUIRE_LUA });
    client.defineCommand(RESERVE, { lua: RESERVE_LUA });
    client.defineCommand(SETTLE, { lua: SETTLE_LUA });
    client.defineCommand(ADMIT, { lua: ADMIT_LUA });
    client.defineCommand(FINISH, { lua: FINISH_LUA });
    this.scripts = client as unknown as ScriptCommands;
  }

  async take(takes: Take[]): Promise<TakeResult> {
    if (takes.length === 0) return { admitted: true, buckets: [], retryAfterMs: 0, limiting: -1 };
    const reply = asArray(await this.scripts[TAKE](takes.length, ...bucketArgs(takes)), 3 + 2 * takes.length);
    return {
      admitted: toNumber(reply[0]) === 1,
      retryAfterMs: toNumber(reply[1]),
      limiting: toNumber(reply[2]),
      buckets: snapshots(reply.slice(3), takes.length),
    };
  }

  async adjust(takes: Take[]): Promise<BucketSnapshot[]> {
    if (takes.length === 0) return [];
    const reply = asArray(await this.scripts[ADJUST](takes.length, ...bucketArgs(takes)), 2 * takes.length);
    return snapshots(reply, takes.length);
  }

  async acquire(key: string, id: string, limit: number, leaseMs: number): Promise<SlotResult> {
    const reply = asArray(await this.scripts[ACQUIRE](1, key, id, limit, leaseMs), 2);
    return { acquired: toNumber(reply[0]) === 1, inFlight: toNumber(reply[1]) };
  }

  async release(key: string, id: string): Promise<void> {
    await this.client.zrem(key, id);
  }

  async reserve(lease: Lease, checks: BudgetCheck[], ttlMs: number): Promise<ReserveResult> {
    const keys = [lease.key, leaseAmountsKey(lease.key), ...checks.map((c) => c.key)];
    const argv = checks.flatMap((c) => [c.spentField, c.reservedField, integer(c.limit), integer(c.amount)]);
    const reply = asArray(
      await this.scripts[RESERVE](keys.length, ...keys, lease.id, lease.ms, Math.ceil(ttlMs), ...argv),
      2 + checks.length,
    );
    return {
      admitted: toNumber(reply[0]) === 1,
      exhausted: toNumber(reply[1]),
      used: reply.slice(2).map(toNumber),
    };
  }

  async admit(admission: Admission): Promise<AdmissionResult> {
    const { takes, slot, budget } = admission;
    const checks = budget?.checks ?? [];
    if (!budget && !slot) {
      const take = await this.take(takes);
      return {
        admitted: take.admitted,
        refusedBy: take.admitted ? undefined : 'rate',
        take,
        budget: undefined,
        slot: undefined,
      };
    }
    // The lease keys name the team's hash slot even with no budget to reserve.
    const leaseKey = budget?.lease.key ?? `${slot!.key}:leases`;
    const keys = [
      leaseKey,
      leaseAmountsKey(leaseKey),
      ...checks.map((c) => c.key),
      ...takes.map((t) => t.bucket.key),
      ...(slot ? [slot.key] : []),
    ];
    const argv: ScriptArg[] = [
      checks.length,
      takes.length,
      slot ? 1 : 0,
      budget?.lease.id ?? '',
      budget?.lease.ms ?? 0,
      Math.ceil(budget?.ttlMs ?? 0),
      slot?.id ?? '',
      slot?.limit ?? 0,
      slot?.leaseMs ?? 0,
      ...checks.flatMap((c) => [c.spentField, c.reservedField, integer(c.limit), integer(c.amount)]),
      ...takes.flatMap((t) => [t.bucket.capacity, t.bucket.refillPerSecond, t.cost]),
    ];
    const reply = asArray(
      await this.scripts[ADMIT](keys.length, ...keys, ...argv),
      5 + checks.length + 2 * takes.length,
    );
    const status = toNumber(reply[0]);
    const limiting = toNumber(reply[3]);
    const admitted = status === 1;
    const used = reply.slice(5, 5 + checks.length).map(toNumber);
    const exhausted = toNumber(reply[1]);
    return {
      admitted,
      refusedBy: admitted ? undefined : status === 0 ? 'budget' : status === 2 ? 'rate' : 'concurrency',
      take: {
        admitted: limiting === -1,
        retryAfterMs: toNumber(reply[2]),
        limiting,
        buckets: snapshots(reply.slice(5 + checks.length), takes.length),
      },
      budget: budget ? { admitted: exhausted === -1, exhausted, used } : undefined,
      slot: slot ? { acquired: admitted, inFlight: toNumber(reply[4]) } : undefined,
    };
  }

  async settle(
    leaseKey: string,
    leaseIds: readonly string[],
    increments: CounterIncrement[],
    ttlMs: number,
    also?: SettleAlso,
  ): Promise<number[]> {
    if (also?.adjust?.length || also?.release || also?.cache)
      return this.finish(leaseKey, leaseIds, increments, ttlMs, also);
    const keys = [leaseKey, leaseAmountsKey(leaseKey), ...increments.map((i) => i.key)];
    const argv = increments.flatMap((i) => [i.field, integer(i.by)]);
    const reply = asArray(
      await this.scripts[SETTLE](
        keys.length,
        ...keys,
        leaseIds.length,
        ...leaseIds,
        Math.ceil(ttlMs),
        ...argv,
      ),
      increments.length,
    );
    return reply.map(toNumber);
  }

  /** settle() with a finished request's other work (SettleAlso): one script, one round trip. */
  private async finish(
    leaseKey: string,
    leaseIds: readonly string[],
    increments: CounterIncrement[],
    ttlMs: number,
    also: SettleAlso,
  ): Promise<number[]> {
    const adjust = also.adjust ?? [];
    const { release } = also;
    let cache = also.cache && also.cache.ttlMs > 0 ? also.cache : undefined;
    if (cache && this.client.isCluster) {
      // Another slot: a command of its own, sent in the same write (connect.ts).
      this.cacheSet(cache.key, cache.value, cache.ttlMs).catch(() => {});
      cache = undefined;
    }
    const args: ScriptArg[] = [leaseKey, leaseAmountsKey(leaseKey)];
    for (const i of increments) args.push(i.key);
    for (const t of adjust) args.push(t.bucket.key);
    if (release) args.push(release.key);
    if (cache) args.push(cache.key);
    const numKeys = args.length;
    args.push(
      leaseIds.length,
      ...leaseIds,
      Math.ceil(ttlMs),
      increments.length,
      adjust.length,
      release?.id ?? '',
    );
    args.push(cache ? Math.ceil(cache.ttlMs) : 0, cache ? cache.value : '');
    for (const i of increments) args.push(i.field, integer(i.by));
    for (const t of adjust) args.push(t.bucket.capacity, t.bucket.refillPerSecond, t.cost);
    const reply = asArray(await this.scripts[FINISH](numKeys, ...args), increments.length);
    return reply.map(toNumber);
  }

  async readCounters(keys: string[]): Promise<Record<string, number>[]> {
    if (keys.length === 0) return [];
    // A pipeline goes to one node, and ioredis refuses a Cluster pipeline whose keys live on
    // several: there, one pipeline per hash slot, all sent at once (keys of many teams are on
    // many nodes). A standalone server answers them all in one pipeline, one round trip.
    const groups = this.client.isCluster ? bySlot(keys) : [keys.map((_, i) => i)];
    const out: Record<string, number>[] = new Array<Record<string, number>>(keys.length);
    await Promise.all(
      groups.map(async (indexes) => {
        const replies = await this.client.pipeline(indexes.map((i) => ['hgetall', keys[i]!])).exec();
        (replies ?? []).forEach(([err, value], j) => {
          if (err) throw err;
          const counters: Record<string, number> = {};
          for (const [field, v] of Object.entries(value as Record<string, string>))
            counters[field] = toNumber(v);
          out[indexes[j]!] = counters;
        });
      }),
    );
    return out;
  }

  async cacheGet(key: string): Promise<Buffer | undefined> {
    return (await this.client.getBuffer(key)) ?? undefined;
  }

  async cacheSet(key: string, value: Buffer, ttlMs: number): Promise<void> {
    // As MemoryStore: a non-positive TTL stores nothing (and PX 0 is an error in Redis).
    if (ttlMs <= 0) return;
    await this.client.set(key, value, 'PX', Math.ceil(ttlMs));
  }

  async close(): Promise<void> {
    if (this.client.status === 'end') return;
    try {
      // QUIT lets replies in flight arrive; it fails at once when the connection is down.
      await this.client.quit();
    } catch {
      this.client.disconnect();
    }
  }
}

/** The hash beside a lease set: reservation id -> what it reserved. Same hash tag as the set. */
export function leaseAmountsKey(leaseKey: string): string {
  return `${leaseKey}:amounts`;
}

/**
 * The indexes of `keys`, grouped so that each group's keys share a Cluster hash slot: Redis
 * hashes the first non-empty `{tag}` of a key (else the whole key), so equal tags mean one slot.
 */
function bySlot(keys: readonly string[]): number[][] {
  const groups = new Map<string, number[]>();
  keys.forEach((key, i) => {
    const open = key.indexOf('{');
    const close = open === -1 ? -1 : key.indexOf('}', open + 1);
    const hashed = close > open + 1 ? key.slice(open + 1, close) : key;
    const group = groups.get(hashed);
    if (group) group.push(i);
    else groups.set(hashed, [i]);
  });
  return [...groups.values()];
}

/** Counters are integers: a fraction would make HINCRBY fail (and sums drift). */
function integer(n: number): string {
  if (!Number.isSafeInteger(n)) throw new Error(`A store counter must be a safe integer, got ${n}`);
  return String(n);
}

/** KEYS then ARGV (capacity, refill per second, cost per bucket), as the scripts read them. */
function bucketArgs(takes: Take[]): ScriptArg[] {
  const keys = takes.map((t) => t.bucket.key);
  const argv = takes.flatMap((t) => [t.bucket.capacity, t.bucket.refillPerSecond, t.cost]);
  return [...keys, ...argv];
}

function snapshots(flat: unknown[], count: number): BucketSnapshot[] {
  const out: BucketSnapshot[] = [];
  for (let i = 0; i < count; i++) {
    out.push({ remaining: toNumber(flat[2 * i]), resetMs: toNumber(flat[2 * i + 1]) });
  }
  return out;
}

function asArray(reply: unknown, length: number): unknown[] {
  if (!Array.isArray(reply) || reply.length !== length) {
    throw new Error(`Unexpected reply from a tollgate Lua script: ${JSON.stringify(reply)?.slice(0, 200)}`);
  }
  return reply;
}

/** Script numbers arrive as integers or as %.17g strings; Lua spells infinity `inf`. */
function toNumber(v: unknown): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'string') {
    if (v === 'inf') return Infinity;
    if (v === '-inf') return -Infinity;
    const n = Number(v);
    // Adding 0 turns Lua's `-0` into 0, which strict equality treats as different.
    if (!Number.isNaN(n)) return n + 0;
  }
  throw new Error(`Unexpected number in a tollgate Lua script reply: ${String(v).slice(0, 100)}`);
}
