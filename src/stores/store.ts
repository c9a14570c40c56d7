// The Store: the few atomic operations on shared state that the pipeline needs, and nothing
// else. MemoryStore (one process, no set-up) and RedisStore (many replicas) implement it and
// pass one contract suite (test/stores/store.contract.ts). Keys come from keys.ts only.

/** A token bucket: holds up to `capacity` tokens and refills continuously at `refillPerSecond`. */
export interface Bucket {
  key: string;
  capacity: number;
  refillPerSecond: number;
}

/** Pay `cost` tokens from `bucket` (a negative cost refunds). */
export interface Take {
  bucket: Bucket;
  cost: number;
}

export interface BucketSnapshot {
  /** Tokens left after the operation (below zero after an overage was charged). */
  remaining: number;
  /** Milliseconds until the bucket is full again (0 when full). */
  resetMs: number;
}

export interface TakeResult {
  /** True when every bucket could pay and all were charged; false when none was charged. */
  admitted: boolean;
  /** One per take, in order: after the charge when admitted, as found when refused. */
  buckets: BucketSnapshot[];
  /** When refused: milliseconds until every bucket can pay its cost; 0 when admitted. */
  retryAfterMs: number;
  /** When refused: the index of the take that must wait longest; -1 when admitted. */
  limiting: number;
}

export interface SlotResult {
  acquired: boolean;
  /** Holders after the call (including this one when acquired). */
  inFlight: number;
}

export interface Store {
  readonly kind: 'memory' | 'redis';
  /**
   * All-or-nothing: charges every bucket or none, atomically. In Redis every key of one call
   * must share a hash tag (keys.ts builds them so). A take whose cost exceeds its bucket's
   * capacity can never succeed; callers check that first.
   */
  take(takes: Take[]): Promise<TakeResult>;
  /**
   * Reconciles reservations: adds `cost` to each bucket (negative refunds, capped at capacity;
   * positive charges an overage, and may drive the bucket below zero). Never refuses.
   */
  adjust(takes: Take[]): Promise<BucketSnapshot[]>;
  /** Concurrency slot: holds `id` in `key` unless `limit` holders exist. A lease expires after leaseMs. */
  acquire(key: string, id: string, limit: number, leaseMs: number): Promise<SlotResult>;
  release(key: string, id: string): Promise<void>;
  cacheGet(key: string): Promise<Buffer | undefined>;
  cacheSet(key: string, value: Buffer, ttlMs: number): Promise<void>;
  close(): Promise<void>;
}

/** The store cannot answer now (Redis down or slow). Stages decide what that means for them. */
export class StoreUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreUnavailableError';
  }
}
