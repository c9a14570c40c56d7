// MemoryStore: the Store in this process's memory, the default when no Redis is configured and
// the local fallback when Redis is away. Token-bucket arithmetic is the same as the Lua
// scripts' (lua/bucket.ts): buckets refill continuously and an absent bucket is full. The cache
// is bounded by bytes, evicting the least recently used entries.
import type { Bucket, BucketSnapshot, SlotResult, Store, Take, TakeResult } from './store.js';

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

interface CacheEntry {
  value: Buffer;
  expiresAt: number;
  size: number;
}

export const DEFAULT_MEMORY_CACHE_BYTES = 64 * 1024 * 1024;

export class MemoryStore implements Store {
  readonly kind = 'memory' as const;
  private readonly buckets = new Map<string, BucketState>();
  private readonly slots = new Map<string, Map<string, number>>();
  /** Map iteration order is insertion order: re-inserting on read makes it an LRU. */
  private readonly cache = new Map<string, CacheEntry>();
  private cacheBytes = 0;
  private readonly cacheMaxBytes: number;
  private readonly now: () => number;
  private readonly sweeper: NodeJS.Timeout;

  constructor(options: MemoryStoreOptions = {}) {
    this.cacheMaxBytes = options.cacheMaxBytes ?? DEFAULT_MEMORY_CACHE_BYTES;
    this.now = options.now ?? Date.now;
    // Idle full buckets carry no information: drop them so memory tracks active keys only.
    this.sweeper = setInterval(() => this.sweep(), 60_000);
    this.sweeper.unref();
  }

  async take(takes: Take[]): Promise<TakeResult> {
    const now = this.now();
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
    if (limiting !== -1) {
      return {
        admitted: false,
        buckets: takes.map((t, i) => snapshot(t.bucket, levels[i]!)),
        retryAfterMs,
        limiting,
      };
    }
    const buckets = takes.map((t, i) =>
      this.store(t.bucket, Math.min(t.bucket.capacity, levels[i]! - t.cost), now),
    );
    return { admitted: true, buckets, retryAfterMs: 0, limiting: -1 };
  }

  async adjust(takes: Take[]): Promise<BucketSnapshot[]> {
    const now = this.now();
    return takes.map((t) =>
      this.store(t.bucket, Math.min(t.bucket.capacity, this.level(t.bucket, now) - t.cost), now),
    );
  }

  async acquire(key: string, id: string, limit: number, leaseMs: number): Promise<SlotResult> {
    const now = this.now();
    let holders = this.slots.get(key);
    if (!holders) this.slots.set(key, (holders = new Map()));
    for (const [holder, expiresAt] of holders) if (expiresAt <= now) holders.delete(holder);
    if (!holders.has(id) && holders.size >= limit) return { acquired: false, inFlight: holders.size };
    holders.set(id, now + leaseMs);
    return { acquired: true, inFlight: holders.size };
  }

  async release(key: string, id: string): Promise<void> {
    const holders = this.slots.get(key);
    if (!holders) return;
    holders.delete(id);
    if (holders.size === 0) this.slots.delete(key);
  }

  async cacheGet(key: string): Promise<Buffer | undefined> {
    const entry = this.cache.get(key);
    if (!entry) return undefined;
    this.cache.delete(key);
    if (entry.expiresAt <= this.now()) {
      this.cacheBytes -= entry.size;
      return undefined;
    }
    this.cache.set(key, entry);
    return entry.value;
  }

  async cacheSet(key: string, value: Buffer, ttlMs: number): Promise<void> {
    const size = Buffer.byteLength(key) + value.length;
    const old = this.cache.get(key);
    if (old) {
      this.cache.delete(key);
      this.cacheBytes -= old.size;
    }
    // Even when the new value is not kept, the old one is gone: a writer never reads stale data back.
    if (size > this.cacheMaxBytes || ttlMs <= 0) return;
    this.cache.set(key, { value, expiresAt: this.now() + ttlMs, size });
    this.cacheBytes += size;
    for (const [k, e] of this.cache) {
      if (this.cacheBytes <= this.cacheMaxBytes) break;
      this.cache.delete(k);
      this.cacheBytes -= e.size;
    }
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
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
    for (const [key, e] of this.cache) {
      if (e.expiresAt <= now) {
        this.cache.delete(key);
        this.cacheBytes -= e.size;
      }
    }
  }
}

export function snapshot(bucket: Bucket, tokens: number): BucketSnapshot {
  const missing = bucket.capacity - tokens;
  return {
    remaining: tokens,
    resetMs: missing <= 0 ? 0 : Math.ceil((missing / bucket.refillPerSecond) * 1000),
  };
}
