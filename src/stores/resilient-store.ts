// ResilientStore: the RedisStore as the pipeline sees it, so that Redis trouble is a config
// choice and never a crash or a hang. Every call is bounded: while the client is not 'ready'
// Redis is not even tried, and otherwise ioredis's commandTimeout (with a timer of ours as a
// backstop) caps the wait. A failure marks the store degraded, and then, by policy:
//   open:   take/adjust/acquire/release run on a local MemoryStore (per-process limits);
//   closed: take/adjust/acquire throw errors.storeUnavailable() (503); release does nothing.
// Cache calls throw StoreUnavailableError under both, so the cache stage bypasses. Slots held
// in Redis whose release is lost expire with their lease. Recovery needs nobody: the client's
// 'ready' event switches back to Redis, and when a failure left the connection up (a timeout),
// one call per recheck interval probes Redis. Local buckets are then simply abandoned.
import { errors } from '../errors.js';
import { MemoryStore } from './memory-store.js';
import { commandTimeoutBackstopMs } from './connect.js';
import type { RedisStore } from './redis-store.js';
import {
  StoreUnavailableError,
  type Admission,
  type AdmissionResult,
  type BucketSnapshot,
  type BudgetCheck,
  type CounterIncrement,
  type Lease,
  type ReserveResult,
  type SettleAlso,
  type SlotResult,
  type Store,
  type Take,
  type TakeResult,
} from './store.js';

export type StoreState = 'ok' | 'degraded';
export type StoreStateListener = (state: StoreState, cause?: unknown) => void;

export interface ResilientStoreOptions {
  /** What requests get while Redis is away: local limits ('open') or a 503 ('closed'). */
  policy: 'open' | 'closed';
  /** The fallback for 'open' (a fresh MemoryStore when omitted). close() closes it. */
  local?: MemoryStore;
  /**
   * Deadline of each call (redis.commandTimeoutMs). The client's own commandTimeout must be
   * longer (createRedisClient makes it a backstop): it fires in the same event-loop phase as
   * this deadline, before the grace that reads a reply already received.
   */
  timeoutMs: number;
  /** While degraded with the connection up, how often one call probes Redis. */
  recheckMs?: number;
  /** Milliseconds clock; tests pass a fake one. */
  now?: () => number;
  /** Bound on the counter increments buffered during an outage. */
  maxPendingIncrements?: number;
}

interface PendingSettle {
  leaseKey: string;
  increments: CounterIncrement[];
  ttlMs: number;
}

export const DEFAULT_RECHECK_MS = 1_000;

/** Counter increments kept while Redis is away, at most; beyond that they are dropped and counted. */
export const DEFAULT_MAX_PENDING_INCREMENTS = 100_000;

/** Failed calls in a row (connection up) that mark Redis unavailable for everyone. */
export const FAILURES_TO_DEGRADE = 3;

export class ResilientStore implements Store {
  readonly kind = 'redis' as const;
  private readonly redis: RedisStore;
  private readonly local: MemoryStore;
  private readonly policy: 'open' | 'closed';
  private readonly timeoutMs: number;
  private readonly recheckMs: number;
  private readonly now: () => number;
  private readonly listeners = new Set<StoreStateListener>();
  private isDegraded = false;
  private consecutiveFailures = 0;
  /** When the last reply arrived (performance.now()): a connection still answering is waited on. */
  private lastReplyAt = 0;
  private readonly lastReply = (): number => this.lastReplyAt;
  /** Counts degradations: a call that began before the latest one cannot vouch for recovery. */
  private epoch = 0;
  private recheckAt = 0;
  private lastClientError: unknown;
  private closing = false;
  /** Spend that could not reach Redis: written when it is back (flushPending), never lost silently. */
  private readonly pending: PendingSettle[] = [];
  private pendingIncrements = 0;
  private readonly maxPendingIncrements: number;
  private flushing = false;
  /** Increments dropped because the buffer was full (a metric reads it). */
  droppedIncrements = 0;
  private readonly onReady = (): void => this.markOk();
  private readonly onClose = (): void =>
    this.markDegraded(this.lastClientError ?? new StoreUnavailableError('The connection to Redis closed'));
  // Also keeps ioredis from printing "Unhandled error event" on every reconnect attempt.
  private readonly onError = (err: unknown): void => {
    this.lastClientError = err;
  };

  constructor(redis: RedisStore, options: ResilientStoreOptions) {
    this.redis = redis;
    this.policy = options.policy;
    this.local = options.local ?? new MemoryStore();
    this.timeoutMs = options.timeoutMs;
    this.recheckMs = options.recheckMs ?? DEFAULT_RECHECK_MS;
    this.now = options.now ?? Date.now;
    this.maxPendingIncrements = options.maxPendingIncrements ?? DEFAULT_MAX_PENDING_INCREMENTS;
    redis.client.on('ready', this.onReady);
    redis.client.on('close', this.onClose);
    redis.client.on('error', this.onError);
  }

  /** True while calls are served without Redis (local limits, or 503s, and no cache). */
  get degraded(): boolean {
    return this.isDegraded;
  }

  /**
   * Calls `listener` on each transition (never twice in a row with the same state), with what
   * caused a degradation. Returns a function that removes the listener.
   */
  onStateChange(listener: StoreStateListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  take(takes: Take[]): Promise<TakeResult> {
    return this.call(
      () => this.redis.take(takes),
      (cause) =>
        this.policy === 'open' ? this.local.take(takes) : Promise.reject(errors.storeUnavailable(cause)),
    );
  }

  adjust(takes: Take[]): Promise<BucketSnapshot[]> {
    return this.call(
      () => this.redis.adjust(takes),
      (cause) =>
        this.policy === 'open' ? this.local.adjust(takes) : Promise.reject(errors.storeUnavailable(cause)),
    );
  }

  acquire(key: string, id: string, limit: number, leaseMs: number): Promise<SlotResult> {
    return this.call(
      () => this.redis.acquire(key, id, limit, leaseMs),
      (cause) =>
        this.policy === 'open'
          ? this.local.acquire(key, id, limit, leaseMs)
          : Promise.reject(errors.storeUnavailable(cause)),
    );
  }

  async release(key: string, id: string): Promise<void> {
    // The slot may have been taken locally during an outage that has ended since: free it
    // there too (a no-op otherwise), so a later outage does not find it held.
    if (this.policy === 'open') await this.local.release(key, id);
    // Never throws: a release lost with Redis frees itself when its lease expires.
    await this.call(
      () => this.redis.release(key, id),
      async () => undefined,
    );
  }

  reserve(lease: Lease, checks: BudgetCheck[], ttlMs: number): Promise<ReserveResult> {
    return this.call(
      () => this.redis.reserve(lease, checks, ttlMs),
      // Open: budgets are checked against this process's own spend since the outage began.
      (cause) =>
        this.policy === 'open'
          ? this.local.reserve(lease, checks, ttlMs)
          : Promise.reject(errors.storeUnavailable(cause)),
    );
  }

  admit(admission: Admission): Promise<AdmissionResult> {
    return this.call(
      () => this.redis.admit(admission),
      // Open: local limits and budgets, as take/acquire/reserve above.
      (cause) =>
        this.policy === 'open' ? this.local.admit(admission) : Promise.reject(errors.storeUnavailable(cause)),
    );
  }

  /**
   * Spend is never dropped for an outage: increments that cannot reach Redis are kept (up to
   * maxPendingIncrements, then counted in droppedIncrements) and written when Redis is back.
   * Such a call returns [] (the totals are unknown); its reservation expires with its lease.
   */
  async settle(
    leaseKey: string,
    leaseIds: readonly string[],
    increments: CounterIncrement[],
    ttlMs: number,
    also?: SettleAlso,
  ): Promise<number[]> {
    if (this.policy === 'open') {
      // What may have been taken locally during an outage is given back there too (see release).
      if (leaseIds.length > 0) await this.local.settle(leaseKey, leaseIds, [], ttlMs);
      if (also?.release) await this.local.release(also.release.key, also.release.id);
    }
    return this.call(
      () => this.redis.settle(leaseKey, leaseIds, increments, ttlMs, also),
      async () => {
        this.buffer({ leaseKey, increments, ttlMs });
        // As adjust() without Redis: the reconciliation goes to the local buckets under 'open'
        // and is lost under 'closed' (the buckets refill anyway); a lost release frees its slot
        // when its lease expires; a cache entry is not stored (as cacheSet()).
        if (this.policy === 'open' && also?.adjust?.length) await this.local.adjust(also.adjust);
        return [];
      },
    );
  }

  readCounters(keys: string[]): Promise<Record<string, number>[]> {
    return this.call(
      () => this.redis.readCounters(keys),
      (cause) => Promise.reject(unavailable(cause)),
    );
  }

  /** Increments waiting for Redis. */
  get pendingCount(): number {
    return this.pendingIncrements;
  }

  cacheGet(key: string): Promise<Buffer | undefined> {
    return this.call(
      () => this.redis.cacheGet(key),
      (cause) => Promise.reject(unavailable(cause)),
    );
  }

  cacheSet(key: string, value: Buffer, ttlMs: number): Promise<void> {
    return this.call(
      () => this.redis.cacheSet(key, value, ttlMs),
      (cause) => Promise.reject(unavailable(cause)),
    );
  }

  async close(): Promise<void> {
    this.closing = true;
    this.redis.client.off('ready', this.onReady);
    this.redis.client.off('close', this.onClose);
    await Promise.all([this.redis.close(), this.local.close()]);
    // After the quit: a late reconnect error must not reach an 'error' event nobody listens to.
    this.redis.client.off('error', this.onError);
  }

  /** Runs `viaRedis` when Redis is usable, `fallback` otherwise or when it fails. */
  private async call<T>(viaRedis: () => Promise<T>, fallback: (cause: unknown) => Promise<T>): Promise<T> {
    const blocked = this.blockedBy();
    if (blocked !== undefined) return fallback(blocked);
    const epoch = this.epoch;
    const startedAt = performance.now();
    let result: T;
    try {
      result = await withDeadline(viaRedis(), this.timeoutMs, this.lastReply);
    } catch (err) {
      // One slow or failed call with the connection up fails that call alone; only a run of
      // them means Redis is in trouble and flips the whole store. A call that timed out while
      // other replies kept arriving met a queue, not a dead server: Redis answers in order, so
      // the connection is moving, and flipping everyone to the fallback would turn a few slow
      // calls into a second of 503s (under 'closed') or of per-process limits (under 'open').
      const congested = err instanceof DeadlineError && this.lastReplyAt > startedAt;
      if (!congested) this.consecutiveFailures += 1;
      if (this.consecutiveFailures >= FAILURES_TO_DEGRADE || (this.isDegraded && !congested)) {
        this.markDegraded(err);
      }
      return fallback(err);
    }
    this.lastReplyAt = performance.now();
    this.consecutiveFailures = 0;
    if (epoch === this.epoch) this.markOk();
    if (this.pending.length > 0 && !this.flushing) void this.flushPending();
    return result;
  }

  /** Why Redis must not be tried now, or undefined when it may be. */
  private blockedBy(): unknown {
    if (this.closing) return new StoreUnavailableError('The store is closed');
    const status = this.redis.client.status;
    if (status !== 'ready') {
      const cause = new StoreUnavailableError(`Redis is not ready (connection ${status})`, {
        cause: this.lastClientError,
      });
      this.markDegraded(cause);
      return cause;
    }
    if (!this.isDegraded) return undefined;
    // Degraded with the connection up (a timeout, a failing command): let one call probe.
    const now = this.now();
    if (now < this.recheckAt) return new StoreUnavailableError('Redis failed recently; rechecking soon');
    this.recheckAt = now + this.recheckMs;
    return undefined;
  }

  private markDegraded(cause: unknown): void {
    this.recheckAt = this.now() + this.recheckMs;
    if (this.isDegraded || this.closing) return;
    this.isDegraded = true;
    this.epoch++;
    this.emit('degraded', cause);
  }

  private markOk(): void {
    if (!this.isDegraded || this.closing) return;
    this.isDegraded = false;
    this.lastClientError = undefined;
    this.emit('ok');
    void this.flushPending();
  }

  private buffer(p: PendingSettle): void {
    if (this.pendingIncrements + p.increments.length > this.maxPendingIncrements) {
      this.droppedIncrements += p.increments.length;
      return;
    }
    this.pending.push(p);
    this.pendingIncrements += p.increments.length;
  }

  /** Writes buffered spend, oldest first; stops (keeping the rest) at the first failure. */
  private async flushPending(): Promise<void> {
    if (this.flushing) return;
    this.flushing = true;
    try {
      while (this.pending.length > 0 && !this.isDegraded && !this.closing) {
        const p = this.pending[0]!;
        try {
          await withDeadline(
            this.redis.settle(p.leaseKey, [], p.increments, p.ttlMs),
            this.timeoutMs,
            this.lastReply,
          );
        } catch {
          return;
        }
        this.pending.shift();
        this.pendingIncrements -= p.increments.length;
      }
    } finally {
      this.flushing = false;
    }
  }

  private emit(state: StoreState, cause?: unknown): void {
    for (const listener of this.listeners) {
      try {
        listener(state, cause);
      } catch {
        // A listener's bug must not turn a store call into a failure.
      }
    }
  }
}

function unavailable(cause: unknown): StoreUnavailableError {
  return cause instanceof StoreUnavailableError
    ? cause
    : new StoreUnavailableError('Redis is unavailable', { cause });
}

/**
 * A deadline timer late by more than half its wait (and at least 10 ms) means the event loop
 * was blocked for most of it: the call had no fair chance.
 */
const lateTimerMs = (ms: number): number => Math.max(10, ms / 2);

/** A call that passed its deadline (as opposed to one Redis answered with an error). */
class DeadlineError extends StoreUnavailableError {}

/**
 * Rejects with a DeadlineError when `promise` has not settled `ms` after the call or after the
 * connection's last reply, whichever is later, and at most commandTimeoutBackstopMs(ms) after
 * the call. A deadline measures whether Redis answers, and a busy gateway cannot tell a slow
 * Redis from its own backlog, so:
 * - while replies keep arriving (lastReply within `ms`), the call waits: Redis answers in order,
 *   so its turn is coming. At saturation a gateway's own queueing (its writes leave at the end of
 *   a turn, its reads wait for the next) passed 100 ms and failed calls Redis answered at once:
 *   1,501 requests got 503 at saturation under the `closed` policy;
 * - a timer that fires late (the loop was blocked for most of the wait) is re-armed once;
 * - when the timer fires, one poll phase runs before the verdict: a reply that arrived in time
 *   may still be unread in the socket (the timers phase comes before the I/O phase). The verdict
 *   then asks again: if that poll phase read replies to earlier calls, the call waits on. Under a
 *   burst of 2,000 requests (test/integration/burst.test.ts) the turn between the timer and the
 *   verdict lasted up to 1.7 s while replies to earlier calls were read, and judging on the silence
 *   seen at the timer failed calls whose turn was coming: cache BYPASSes, and three in a row
 *   switched the whole store to its fallback.
 * A Redis that stops answering still fails each call after `ms` of silence.
 */
export function withDeadline<T>(promise: Promise<T>, ms: number, lastReply: () => number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    let rearmedLate = false;
    const startedAt = performance.now();
    const capAt = startedAt + commandTimeoutBackstopMs(ms);
    let dueAt = startedAt + ms;
    const verdict = (): void => {
      if (settled) return;
      const now = performance.now();
      const quietFor = now - Math.max(lastReply(), startedAt);
      if (quietFor < ms && now < capAt) return arm(Math.min(ms - quietFor, capAt - now));
      settled = true;
      reject(new DeadlineError(`Redis did not answer within ${ms} ms`));
    };
    const arm = (wait: number): void => {
      dueAt = performance.now() + wait;
      timer = setTimeout(onTimer, wait);
    };
    const onTimer = (): void => {
      const now = performance.now();
      const late = now - dueAt;
      if (!rearmedLate && late > lateTimerMs(ms)) {
        rearmedLate = true;
        return arm(Math.min(late, ms));
      }
      const quietFor = now - Math.max(lastReply(), startedAt);
      if (quietFor < ms && now < capAt) return arm(Math.min(ms - quietFor, capAt - now));
      setImmediate(verdict);
    };
    let timer = setTimeout(onTimer, ms);
    // The late outcome, if any, is dropped: the caller has moved on.
    promise.then(
      (value) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(value);
      },
      (err: unknown) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        reject(err instanceof Error ? err : new StoreUnavailableError(String(err)));
      },
    );
  });
}
