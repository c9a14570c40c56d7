// MemoryStore: the Store in this process's memory, the default when no Redis is configured and
// the local fallback when Redis is away. Token-bucket arithmetic is the same as the Lua
// scripts' (lua/bucket.ts): buckets refill continuously and an absent bucket is full. The cache
// is bounded by bytes, evicting the least recently used entries.
import { LRUCache } from 'lru-cache';
import type {
  Admission,
  AdmissionResult,
  Bucket,
  BucketSnapshot,
  BudgetCheck,
  CounterIncrement,
  Lease,
  ReserveResult,
  SlotResult,
  Store,
  SettleAlso,
  Take,
  TakeResult,
} from './store.js';

export interface MemoryStoreOptions {
  /** Upper bound on cached bytes (keys + values). */
  cacheMaxBytes?: number;
  /** Milliseconds clock; tests pass a fake one. */
  now?: () => number;
}

interface BucketState {
  tokens: number;
  at: number;
  /** Kept so the sweep can tell when an idle bucket is full again. */
  capacity: number;
  refillPerSecond: number;
}

interface CounterHash {
  fields: Map<string, number>;
  expiresAt: number;
}

/** A reservation: its expiry, and the (hash, field, amount) it added. */
interface Reservation {
  expiresAt: number;
  parts: { key: string; field: string; amount: number }[];
}

export const DEFAULT_MEMORY_CACHE_BYTES = 64 * 1024 * 1024;

export class MemoryStore implements Store {
  readonly kind = 'memory' as const;
  private readonly buckets = new Map<string, BucketState>();
  private readonly slots = new Map<string, Map<string, number>>();
  private readonly counters = new Map<string, CounterHash>();
  private readonly leases = new Map<string, Map<string, Reservation>>();
  /**
   * lru-cache, not a Map re-inserted on read: V8 leaves a deleted Map entry as a hole until the
   * table is rehashed, and both re-inserting a hot key and iterating from the oldest end to evict
   * walk those holes — 30 µs per hit or per evicting write at 36,000 entries (bench/RESULTS.md).
   * lru-cache keeps its order in arrays: O(1) per call. Values are kept as one-byte (latin1)
   * strings, a byte each and lossless: one heap object per entry with nothing inside for the GC
   * to trace, where a Buffer is three (view, ArrayBuffer, backing store) and adds 460 bytes.
   */
  private readonly cache: LRUCache<string, string>;
  private readonly cacheMaxBytes: number;
  private readonly now: () => number;
  private readonly sweeper: NodeJS.Timeout;

  constructor(options: MemoryStoreOptions = {}) {
    this.cacheMaxBytes = options.cacheMaxBytes ?? DEFAULT_MEMORY_CACHE_BYTES;
    this.now = options.now ?? Date.now;
    this.cache = new LRUCache<string, string>({
      maxSize: this.cacheMaxBytes,
      // Our clock, read on every check (no 1 ms memo with its timer): tests drive it by hand.
      perf: { now: () => this.now() },
      ttlResolution: 0,
    });
    // Idle full buckets carry no information: drop them so memory tracks active keys only.
    this.sweeper = setInterval(() => this.sweep(), 60_000);
    this.sweeper.unref();
  }

  async take(takes: Take[]): Promise<TakeResult> {
    const now = this.now();
    const found = this.rateCheck(takes, now);
    return found.result.admitted ? this.charge(takes, found.levels, now) : found.result;
  }

  async admit(admission: Admission): Promise<AdmissionResult> {
    // Synchronous from here to the return: nothing else runs between the checks and the charges.
    const { takes, slot, budget } = admission;
    const now = this.now();
    const budgetFound = budget ? this.budgetCheck(budget.lease.key, budget.checks, now) : undefined;
    const rate = this.rateCheck(takes, now);
    const holders = slot ? this.liveHolders(slot.key, now) : undefined;
    const slotFree = !slot || !holders || holders.has(slot.id) || holders.size < slot.limit;
    const refusedBy =
      budgetFound && !budgetFound.admitted
        ? 'budget'
        : !rate.result.admitted
          ? 'rate'
          : !slotFree
            ? 'concurrency'
            : undefined;
    const slotResult = (acquired: boolean) =>
      slot ? { acquired, inFlight: this.slots.get(slot.key)?.size ?? 0 } : undefined;
    if (refusedBy !== undefined) {
      return { admitted: false, refusedBy, take: rate.result, budget: budgetFound, slot: slotResult(false) };
    }
    const take = this.charge(takes, rate.levels, now);
    if (slot) this.hold(slot, now);
    if (budget) this.reserveParts(budget.lease, budget.checks, budget.ttlMs, now);
    return { admitted: true, refusedBy: undefined, take, budget: budgetFound, slot: slotResult(true) };
  }

  async adjust(takes: Take[]): Promise<BucketSnapshot[]> {
    const now = this.now();
    return takes.map((t) =>
      this.store(t.bucket, Math.min(t.bucket.capacity, this.level(t.bucket, now) - t.cost), now),
    );
  }

  async acquire(key: string, id: string, limit: number, leaseMs: number): Promise<SlotResult> {
    const now = this.now();
    const holders = this.liveHolders(key, now);
    if (holders && !holders.has(id) && holders.size >= limit)
      return { acquired: false, inFlight: holders.size };
    return { acquired: true, inFlight: this.hold({ key, id, leaseMs }, now) };
  }

  async release(key: string, id: string): Promise<void> {
    const holders = this.slots.get(key);
    if (!holders) return;
    holders.delete(id);
    if (holders.size === 0) this.slots.delete(key);
  }

  async reserve(lease: Lease, checks: BudgetCheck[], ttlMs: number): Promise<ReserveResult> {
    const now = this.now();
    const found = this.budgetCheck(lease.key, checks, now);
    if (found.admitted) this.reserveParts(lease, checks, ttlMs, now);
    return found;
  }

  async settle(
    leaseKey: string,
    leaseIds: readonly string[],
    increments: CounterIncrement[],
    ttlMs: number,
    also?: SettleAlso,
  ): Promise<number[]> {
    const now = this.now();
    this.reap(leaseKey, now);
    for (const id of leaseIds) this.releaseReservation(leaseKey, id, now);
    const totals = increments.map((i) => this.increment(i.key, i.field, i.by, ttlMs, now));
    if (also?.adjust?.length) await this.adjust(also.adjust);
    if (also?.release) await this.release(also.release.key, also.release.id);
    if (also?.cache) await this.cacheSet(also.cache.key, also.cache.value, also.cache.ttlMs);
    return totals;
  }

  async readCounters(keys: string[]): Promise<Record<string, number>[]> {
    const now = this.now();
    return keys.map((key) => {
      const h = this.counters.get(key);
      return h && h.expiresAt > now ? Object.fromEntries(h.fields) : {};
    });
  }

  async cacheGet(key: string): Promise<Buffer | undefined> {
    const value = this.cache.get(key);
    return value === undefined ? undefined : Buffer.from(value, 'latin1');
  }

  async cacheSet(key: string, value: Buffer, ttlMs: number): Promise<void> {
    const size = Buffer.byteLength(key) + value.length;
    // An entry larger than the whole bound would evict everything else for nothing. Even when the
    // new value is not kept, the old one is gone: a writer never reads stale data back.
    if (size > this.cacheMaxBytes || ttlMs <= 0) {
      this.cache.delete(key);
      return;
    }
    this.cache.set(key, value.toString('latin1'), { ttl: ttlMs, size });
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
  }

  /** Whether every bucket can pay now (nothing charged), and if not how long until all can. */
  private rateCheck(takes: Take[], now: number): { result: TakeResult; levels: number[] } {
    const levels = takes.map((t) => this.level(t.bucket, now));
    let retryAfterMs = 0;
    let limiting = -1;
    takes.forEach((t, i) => {
      const short = t.cost - levels[i]!;
      if (short > 0) {
        const wait = Math.ceil((short / t.bucket.refillPerSecond) * 1000);
        if (wait > retryAfterMs || limiting === -1) {
          retryAfterMs = wait;
          limiting = i;
        }
      }
    });
    const buckets = takes.map((t, i) => snapshot(t.bucket, levels[i]!));
    return { result: { admitted: limiting === -1, buckets, retryAfterMs, limiting }, levels };
  }

  private charge(takes: Take[], levels: number[], now: number): TakeResult {
    const buckets = takes.map((t, i) =>
      this.store(t.bucket, Math.min(t.bucket.capacity, levels[i]! - t.cost), now),
    );
    return { admitted: true, buckets, retryAfterMs: 0, limiting: -1 };
  }

  /** The slot set without its expired holders (undefined when nobody holds a slot). */
  private liveHolders(key: string, now: number): Map<string, number> | undefined {
    const holders = this.slots.get(key);
    if (!holders) return undefined;
    for (const [holder, expiresAt] of holders) if (expiresAt <= now) holders.delete(holder);
    return holders;
  }

  /** Holds (or renews) a slot; returns the holders after. */
  private hold(slot: { key: string; id: string; leaseMs: number }, now: number): number {
    let holders = this.slots.get(slot.key);
    if (!holders) this.slots.set(slot.key, (holders = new Map()));
    holders.set(slot.id, now + slot.leaseMs);
    return holders.size;
  }

  /** Budgets with room (spent + reserved < limit), after expired reservations are returned. */
  private budgetCheck(leaseKey: string, checks: BudgetCheck[], now: number): ReserveResult {
    this.reap(leaseKey, now);
    const used = checks.map(
      (c) => this.counter(c.key, c.spentField, now) + this.counter(c.key, c.reservedField, now),
    );
    const exhausted = checks.findIndex((c, i) => used[i]! >= c.limit);
    return { admitted: exhausted === -1, exhausted, used };
  }

  private reserveParts(lease: Lease, checks: BudgetCheck[], ttlMs: number, now: number): void {
    const parts: Reservation['parts'] = [];
    for (const c of checks) {
      if (c.amount <= 0) continue;
      this.increment(c.key, c.reservedField, c.amount, ttlMs, now);
      parts.push({ key: c.key, field: c.reservedField, amount: c.amount });
    }
    if (parts.length > 0) {
      let held = this.leases.get(lease.key);
      if (!held) this.leases.set(lease.key, (held = new Map()));
      held.set(lease.id, { expiresAt: now + lease.ms, parts });
    }
  }

  private counter(key: string, field: string, now: number): number {
    const h = this.counters.get(key);
    return h && h.expiresAt > now ? (h.fields.get(field) ?? 0) : 0;
  }

  private increment(key: string, field: string, by: number, ttlMs: number, now: number): number {
    if (!Number.isSafeInteger(by)) throw new Error(`A store counter must be a safe integer, got ${by}`);
    let h = this.counters.get(key);
    if (!h || h.expiresAt <= now) this.counters.set(key, (h = { fields: new Map(), expiresAt: 0 }));
    const value = (h.fields.get(field) ?? 0) + by;
    h.fields.set(field, value);
    h.expiresAt = Math.max(h.expiresAt, now + ttlMs);
    return value;
  }

  /** Returns expired reservations of a lease set to their budgets. */
  private reap(leaseKey: string, now: number): void {
    const held = this.leases.get(leaseKey);
    if (!held) return;
    for (const [id, r] of held) if (r.expiresAt <= now) this.releaseReservation(leaseKey, id, now);
  }

  private releaseReservation(leaseKey: string, id: string, now: number): void {
    const held = this.leases.get(leaseKey);
    const r = held?.get(id);
    if (!held || !r) return;
    held.delete(id);
    if (held.size === 0) this.leases.delete(leaseKey);
    for (const p of r.parts) {
      const h = this.counters.get(p.key);
      if (h && h.expiresAt > now) h.fields.set(p.field, (h.fields.get(p.field) ?? 0) - p.amount);
    }
  }

  /** The bucket's tokens now: what was left plus the refill since, capped at capacity. */
  private level(bucket: Bucket, now: number): number {
    const s = this.buckets.get(bucket.key);
    if (!s) return bucket.capacity;
    return Math.min(bucket.capacity, s.tokens + (Math.max(0, now - s.at) / 1000) * bucket.refillPerSecond);
  }

  private store(bucket: Bucket, tokens: number, now: number): BucketSnapshot {
    this.buckets.set(bucket.key, {
      tokens,
      at: now,
      capacity: bucket.capacity,
      refillPerSecond: bucket.refillPerSecond,
    });
    return snapshot(bucket, tokens);
  }

  private sweep(): void {
    const now = this.now();
    for (const [key, s] of this.buckets) {
      // A bucket that has refilled completely carries no information (absent = full).
      if (s.tokens + ((now - s.at) / 1000) * s.refillPerSecond >= s.capacity) this.buckets.delete(key);
    }
    for (const [key, holders] of this.slots) {
      for (const [id, expiresAt] of holders) if (expiresAt <= now) holders.delete(id);
      if (holders.size === 0) this.slots.delete(key);
    }
    for (const [key, h] of this.counters) if (h.expiresAt <= now) this.counters.delete(key);
    for (const key of this.leases.keys()) this.reap(key, now);
    this.cache.purgeStale();
  }
}

export function snapshot(bucket: Bucket, tokens: number): BucketSnapshot {
  const missing = bucket.capacity - tokens;
  return {
    remaining: tokens,
    resetMs: missing <= 0 ? 0 : Math.ceil((missing / bucket.refillPerSecond) * 1000),
  };
}
