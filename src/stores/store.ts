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

/** Adds `by` (an integer) to the integer `field` of the hash at `key`. */
export interface CounterIncrement {
  key: string;
  field: string;
  by: number;
}

/**
 * A budget the request must fit in: the hash at `key` holds what was spent (`spentField`) and
 * what requests in flight have reserved (`reservedField`). The request is admitted while
 * spent + reserved < limit, and then reserves `amount` until it settles.
 */
export interface BudgetCheck {
  key: string;
  spentField: string;
  reservedField: string;
  limit: number;
  /** An integer (micro-dollars or tokens); 0 checks without reserving. */
  amount: number;
}

/**
 * What a finished request gives back (and stores) besides its budget reservation, in its settle
 * call: one Redis round trip after the response instead of four (settle, adjust, release, set).
 */
export interface SettleAlso {
  /** Added to the buckets as adjust() does (a negative cost refunds). */
  adjust?: Take[] | undefined;
  /** The concurrency slot to free, as release() does. */
  release?: { key: string; id: string } | undefined;
  /** A cache entry to store, as cacheSet() does (best effort: a failure is not reported). */
  cache?: { key: string; value: Buffer; ttlMs: number } | undefined;
}

/** Where a request's reservation is recorded, so a lost settle (a crashed replica) expires. */
export interface Lease {
  /** Sorted set of reservation ids by expiry; its companion hash `${key}:amounts` holds what each reserved. */
  key: string;
  id: string;
  ms: number;
}

export interface ReserveResult {
  admitted: boolean;
  /** The first check whose budget is used up; -1 when admitted. */
  exhausted: number;
  /** Per check, spent + reserved as found (before this request's reservation). */
  used: number[];
}

/** A concurrency slot to hold: `id` in the set `key`, unless `limit` holders exist. */
export interface SlotRequest {
  key: string;
  id: string;
  limit: number;
  leaseMs: number;
}

/** Budgets to reserve against (see reserve()). */
export interface BudgetRequest {
  lease: Lease;
  checks: BudgetCheck[];
  ttlMs: number;
}

/** Everything a request must get before it goes on, taken in one atomic step. */
export interface Admission {
  takes: Take[];
  slot?: SlotRequest | undefined;
  budget?: BudgetRequest | undefined;
}

export interface AdmissionResult {
  admitted: boolean;
  /** What said no first, in this order; undefined when admitted. */
  refusedBy: 'budget' | 'rate' | 'concurrency' | undefined;
  /**
   * The rate buckets: after the charge when admitted, as found otherwise (`admitted` says
   * whether they could pay, whatever refused).
   */
  take: TakeResult;
  /** When a budget was asked for. */
  budget: ReserveResult | undefined;
  /** When a slot was asked for (acquired only when admitted). */
  slot: SlotResult | undefined;
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
  /**
   * Budgets: admits when every check has spent + reserved < limit, and then reserves each
   * check's amount under `lease` (all or nothing, atomically). Reservations whose lease ran out
   * are returned to their budgets first. Every key of one call shares a hash tag.
   */
  reserve(lease: Lease, checks: BudgetCheck[], ttlMs: number): Promise<ReserveResult>;
  /**
   * Admission in one atomic step (one round trip on Redis): the budgets as reserve(), the
   * buckets as take(), the slot as acquire(); all are charged or none. Checked in the order
   * budget, rate, concurrency, and the first that refuses is named. Every key shares one hash tag.
   * A store may decide a team's admissions made in one turn of the event loop in one step, in
   * the order they were made (RedisStore does: one script for them all).
   */
  admit(admission: Admission): Promise<AdmissionResult>;
  /**
   * Atomically: releases the reservations `leaseIds` hold in the lease set `leaseKey` (those that
   * still do) and adds every increment. Returns each counter's value after its increment.
   * Counter hashes live at least `ttlMs` after their last change. `also`: a finished request's
   * token reconciliation and slot release, done in the same call (the same team's keys), as
   * adjust() and release() would. A store may join the settle calls on one lease set made in
   * the same turn of the event loop into one atomic step (RedisStore does): each call then gets
   * its counters' values after the joint step.
   */
  settle(
    leaseKey: string,
    leaseIds: readonly string[],
    increments: CounterIncrement[],
    ttlMs: number,
    also?: SettleAlso,
  ): Promise<number[]>;
  /** The integer fields of each hash (an absent hash is {}). */
  readCounters(keys: string[]): Promise<Record<string, number>[]>;
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
