// RedisStore: the Store shared by every replica, over one ioredis client (standalone, Sentinel
// or Cluster). Each operation is one round trip: the multi-key ones are Lua scripts (lua/),
// atomic and timed by the Redis server's clock; the rest are single commands. The two a request
// always makes, admit and settle, are joined per team and per turn of the event loop: every
// admission of a team made in one turn goes in one script (ADMIT_MANY, in call order), and
// likewise every settle (FINISH), sent at the end of the turn with the turn's other commands
// (connect.ts), and the turn's cache reads are one MGET (standalone Redis). A script error fails
// every call it carried. It neither retries nor falls back:
// ResilientStore decides what a failure means for the request.
import type { Cluster, Redis } from 'ioredis';
import { ACQUIRE_LUA } from './lua/acquire.js';
import { ADMIT_LUA, ADMIT_MANY_LUA } from './lua/admit.js';
import { ADJUST_LUA } from './lua/adjust.js';
import { RESERVE_LUA, SETTLE_LUA } from './lua/budget.js';
import { atEndOfTurn } from '../end-of-turn.js';
import { FINISH_LUA } from './lua/finish.js';
import { PACKED_ARGV_LUA } from './lua/packed.js';
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

/**
 * Most calls joined in one script: a script runs alone on Redis, so a burst of thousands of
 * requests in one turn must not hold every other replica's commands for its whole length.
 */
const MAX_JOINED = 64;
/** Most keys in one MGET. */
const MAX_JOINED_READS = 256;

interface PendingRead extends Pending<Buffer | undefined> {
  key: string;
}

/** One settle call waiting for the end of its turn. */
interface PendingSettle extends Pending<number[]> {
  leaseIds: readonly string[];
  increments: readonly CounterIncrement[];
  ttlMs: number;
  also: SettleAlso | undefined;
}

// defineCommand sends EVALSHA and, on NOSCRIPT (a restarted or flushed server), resends the
// script body in the same call; the first call on each connection sends EVAL directly.
const TAKE = 'tollgateTake';
const ADJUST = 'tollgateAdjust';
const ACQUIRE = 'tollgateAcquire';
const RESERVE = 'tollgateReserve';
const SETTLE = 'tollgateSettle';
const ADMIT = 'tollgateAdmit';
const FINISH = 'tollgateFinish';
const ADMIT_MANY = 'tollgateAdmitMany';

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
  [ADMIT_MANY](numKeys: number, ...args: ScriptArg[]): Promise<unknown>;
}

export class RedisStore implements Store {
  readonly kind = 'redis' as const;
  /** The client this store owns: close() quits it. ResilientStore watches its status. */
  readonly client: RedisClient;
  private readonly scripts: ScriptCommands;
  /** This turn's admissions, by lease set (one per team): one script per team. */
  private readonly admissions = new PerTurn<PendingAdmission, unknown>(MAX_JOINED, (_, joint) =>
    joint.length === 1 ? this.sendAdmission(joint[0]!).then((r) => [r]) : this.sendJointAdmissions(joint),
  );
  /** This turn's settle calls, by lease set (one per team): one script per team. */
  private readonly settles = new PerTurn<PendingSettle, number[]>(MAX_JOINED, (leaseKey, joint) =>
    this.sendSettle(leaseKey, joint),
  );
  /** This turn's cache reads (standalone Redis): GET for one, else one MGET. */
  private readonly reads = new PerTurn<PendingRead, Buffer | undefined>(
    MAX_JOINED_READS,
    async (_, reads) => {
      const values =
        reads.length === 1
          ? [await this.client.getBuffer(reads[0]!.key)]
          : await this.client.mgetBuffer(...reads.map((r) => r.key));
      return values.map((v) => v ?? undefined);
    },
  );

  constructor(client: RedisClient) {
    this.client = client;
    client.defineCommand(TAKE, { lua: TAKE_LUA });
    client.defineCommand(ADJUST, { lua: ADJUST_LUA });
    client.defineCommand(ACQUIRE, { lua: ACQUIRE_LUA });
    client.defineCommand(RESERVE, { lua: RESERVE_LUA });
    client.defineCommand(SETTLE, { lua: PACKED_ARGV_LUA + SETTLE_LUA });
    client.defineCommand(ADMIT, { lua: PACKED_ARGV_LUA + ADMIT_LUA });
    client.defineCommand(FINISH, { lua: PACKED_ARGV_LUA + FINISH_LUA });
    client.defineCommand(ADMIT_MANY, { lua: PACKED_ARGV_LUA + ADMIT_MANY_LUA });
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
    // Joined with the team's other admissions of this turn (one script runs them in order).
    // The lease keys name the team's hash slot even with no budget to reserve.
    const leaseKey = budget?.lease.key ?? `${slot!.key}:leases`;
    const reply = await new Promise<unknown>((resolve, reject) =>
      this.admissions.add(leaseKey, { admission, leaseKey, resolve, reject }),
    );
    return admissionResult(admission, reply);
  }

  private sendAdmission(a: PendingAdmission): Promise<unknown> {
    const keys = admissionKeys(a);
    return this.scripts[ADMIT](keys.length, ...admissionArgv(a.admission).appendTo(keys));
  }

  /** ADMIT_MANY: the keys once each, every admission's ARGV after the indexes of its keys. */
  private async sendJointAdmissions(joint: readonly PendingAdmission[]): Promise<unknown[]> {
    const keys: ScriptArg[] = [];
    const index = new Map<string, number>();
    const argv = new PackedArgs().num(joint.length);
    for (const a of joint) {
      const mine = admissionKeys(a);
      argv.num(mine.length);
      for (const key of mine) {
        let i = index.get(key);
        if (i === undefined) {
          i = keys.push(key);
          index.set(key, i);
        }
        argv.num(i);
      }
      const own = admissionArgv(a.admission);
      argv.num(own.count).append(own);
    }
    const numKeys = keys.length;
    const replies = await this.scripts[ADMIT_MANY](numKeys, ...argv.appendTo(keys));
    return asArray(replies, joint.length);
  }

  settle(
    leaseKey: string,
    leaseIds: readonly string[],
    increments: CounterIncrement[],
    ttlMs: number,
    also?: SettleAlso,
  ): Promise<number[]> {
    // Joined with the team's other settles of this turn: at saturation a turn finishes several
    // requests of a team, and one call with their summed counters costs less than one call
    // each (ioredis spends per command and per argument, Redis per script run).
    return new Promise((resolve, reject) =>
      this.settles.add(leaseKey, { leaseIds, increments, ttlMs, also, resolve, reject }),
    );
  }

  /**
   * One script for a lease set's settles: the SETTLE script when they are only reservations and
   * counters, else FINISH. Resolves to each call's totals.
   */
  private sendSettle(leaseKey: string, joint: readonly PendingSettle[]): Promise<number[][]> {
    const leaseIds: string[] = [];
    /** Counter hash -> field -> index in `increments`. */
    const index = new Map<string, Map<string, number>>();
    const increments: { key: string; field: string; by: number }[] = [];
    const at: number[][] = [];
    /** Bucket key -> its joint take: the costs summed (the requests finished together). */
    const buckets = new Map<string, Take>();
    /** Slot set -> the ids to release. */
    const slots = new Map<string, string[]>();
    const caches: { key: string; value: Buffer; ttlMs: number }[] = [];
    let ttlMs = 0;
    for (const call of joint) {
      ttlMs = Math.max(ttlMs, call.ttlMs);
      for (const id of call.leaseIds) leaseIds.push(id);
      const mine: number[] = [];
      for (const inc of call.increments) {
        let fields = index.get(inc.key);
        if (!fields) index.set(inc.key, (fields = new Map()));
        let j = fields.get(inc.field);
        if (j === undefined) {
          j = increments.push({ key: inc.key, field: inc.field, by: 0 }) - 1;
          fields.set(inc.field, j);
        }
        increments[j]!.by += inc.by;
        mine.push(j);
      }
      at.push(mine);
      const also = call.also;
      if (!also) continue;
      for (const t of also.adjust ?? []) {
        const b = buckets.get(t.bucket.key);
        if (b) b.cost += t.cost;
        else buckets.set(t.bucket.key, { bucket: t.bucket, cost: t.cost });
      }
      if (also.release) {
        const ids = slots.get(also.release.key);
        if (ids) ids.push(also.release.id);
        else slots.set(also.release.key, [also.release.id]);
      }
      const cache = also.cache;
      if (cache && cache.ttlMs > 0) {
        // On a Cluster an entry's key is in another slot: a command of its own, in the same write.
        if (this.client.isCluster) this.cacheSet(cache.key, cache.value, cache.ttlMs).catch(() => {});
        else caches.push(cache);
      }
    }
    const n = increments.length;
    const args: ScriptArg[] = [leaseKey, leaseAmountsKey(leaseKey)];
    for (const i of increments) args.push(i.key);
    const argv = new PackedArgs().num(leaseIds.length);
    for (const id of leaseIds) argv.str(id);
    argv.num(Math.ceil(ttlMs));
    if (buckets.size === 0 && slots.size === 0 && caches.length === 0) {
      const numKeys = args.length;
      for (const i of increments) argv.str(i.field).num(integer(i.by));
      const sent = this.scripts[SETTLE](numKeys, ...argv.appendTo(args));
      return sent.then((r) => perCall(asArray(r, n).map(toNumber), at));
    }
    for (const key of buckets.keys()) args.push(key);
    for (const key of slots.keys()) args.push(key);
    for (const c of caches) args.push(c.key);
    const numKeys = args.length;
    argv.num(n).num(buckets.size).num(slots.size).num(caches.length);
    for (const i of increments) argv.str(i.field).num(integer(i.by));
    for (const t of buckets.values()) argv.num(t.bucket.capacity).num(t.bucket.refillPerSecond).num(t.cost);
    for (const ids of slots.values()) {
      argv.num(ids.length);
      for (const id of ids) argv.str(id);
    }
    for (const c of caches) argv.num(Math.ceil(c.ttlMs)).str(c.value);
    const sent = this.scripts[FINISH](numKeys, ...argv.appendTo(args));
    return sent.then((r) => perCall(asArray(r, n).map(toNumber), at));
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

  cacheGet(key: string): Promise<Buffer | undefined> {
    // A Cluster spreads entries over every node: a GET each. Standalone, the turn's reads are one MGET.
    if (this.client.isCluster) return this.client.getBuffer(key).then((v) => v ?? undefined);
    return new Promise((resolve, reject) => this.reads.add('', { key, resolve, reject }));
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

/** A call waiting for the joined command that carries it. */
interface Pending<V> {
  resolve: (value: V) => void;
  reject: (err: unknown) => void;
}

/**
 * Calls gathered by group during one turn of the event loop and sent at its end: `send` gets a
 * group's calls in order, at most `max` at a time, and sends one joined command for them.
 */
class PerTurn<P extends Pending<V>, V> {
  private groups = new Map<string, P[]>();

  constructor(
    private readonly max: number,
    private readonly send: (group: string, calls: readonly P[]) => Promise<V[]>,
  ) {}

  add(group: string, call: P): void {
    let calls = this.groups.get(group);
    if (!calls) {
      if (this.groups.size === 0) atEndOfTurn(this.flush);
      this.groups.set(group, (calls = []));
    }
    calls.push(call);
  }

  private readonly flush = (): void => {
    const groups = this.groups;
    this.groups = new Map();
    for (const [group, calls] of groups) {
      for (let from = 0; from < calls.length; from += this.max) {
        const some = calls.slice(from, from + this.max);
        fanOut(some, () => this.send(group, some));
      }
    }
  };
}

/**
 * Sends one joined command for `calls` and gives each call its own answer (`send` resolves to
 * one per call, in order). A failure, thrown or rejected, fails every call it carried.
 */
function fanOut<V>(calls: readonly Pending<V>[], send: () => Promise<V[]>): void {
  let sent: Promise<V[]>;
  try {
    sent = send();
  } catch (err) {
    sent = Promise.reject(err instanceof Error ? err : new Error(String(err)));
  }
  sent.then(
    (answers) => calls.forEach((c, i) => c.resolve(answers[i]!)),
    (err: unknown) => calls.forEach((c) => c.reject(err)),
  );
}

/** Each call's counter values, from the joint reply and where each call's counters are in it. */
function perCall(totals: number[], at: number[][]): number[][] {
  return at.map((indexes) => indexes.map((j) => totals[j]!));
}

/** One admission waiting for the end of its turn. */
interface PendingAdmission extends Pending<unknown> {
  admission: Admission;
  leaseKey: string;
}

/** ADMIT_LUA's KEYS for one admission. */
function admissionKeys({ admission, leaseKey }: PendingAdmission): string[] {
  const keys = [leaseKey, leaseAmountsKey(leaseKey)];
  for (const c of admission.budget?.checks ?? []) keys.push(c.key);
  for (const t of admission.takes) keys.push(t.bucket.key);
  if (admission.slot) keys.push(admission.slot.key);
  return keys;
}

/** ADMIT_LUA's ARGV for one admission. */
function admissionArgv({ takes, slot, budget }: Admission): PackedArgs {
  const checks = budget?.checks ?? [];
  const argv = new PackedArgs()
    .num(checks.length)
    .num(takes.length)
    .num(slot ? 1 : 0)
    .str(budget?.lease.id ?? '')
    .num(budget?.lease.ms ?? 0)
    .num(Math.ceil(budget?.ttlMs ?? 0))
    .str(slot?.id ?? '')
    .num(slot?.limit ?? 0)
    .num(slot?.leaseMs ?? 0);
  for (const c of checks)
    argv.str(c.spentField).str(c.reservedField).num(integer(c.limit)).num(integer(c.amount));
  for (const t of takes) argv.num(t.bucket.capacity).num(t.bucket.refillPerSecond).num(t.cost);
  return argv;
}

/** ADMIT_LUA's reply, read. */
function admissionResult(admission: Admission, raw: unknown): AdmissionResult {
  const { takes, slot, budget } = admission;
  const checks = budget?.checks ?? [];
  const reply = asArray(raw, 5 + checks.length + 2 * takes.length);
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

/**
 * A script's ARGV, packed as lua/packed.ts reads it: the numbers in one argument, a letter per
 * argument saying where each comes from, the strings as arguments of their own.
 */
class PackedArgs {
  private numbers = '';
  private mask = '';
  private readonly strings: ScriptArg[] = [];

  /** A number, or an integer string from integer(). */
  num(value: number | string): this {
    this.numbers = this.numbers === '' ? String(value) : `${this.numbers},${value}`;
    this.mask += 'n';
    return this;
  }

  str(value: string | Buffer): this {
    this.strings.push(value);
    this.mask += 's';
    return this;
  }

  /** How many arguments. */
  get count(): number {
    return this.mask.length;
  }

  /** Another list's arguments, after these. */
  append(other: PackedArgs): this {
    if (other.numbers !== '')
      this.numbers = this.numbers === '' ? other.numbers : `${this.numbers},${other.numbers}`;
    this.mask += other.mask;
    for (const s of other.strings) this.strings.push(s);
    return this;
  }

  /** `args` (the keys) followed by the packed ARGV. */
  appendTo(args: ScriptArg[]): ScriptArg[] {
    // An empty first argument would be read as no numbers at all, which is what it means.
    args.push(this.numbers, this.mask);
    for (const s of this.strings) args.push(s);
    return args;
  }
}
