// The Store contract: one suite that every store must pass, so MemoryStore and RedisStore
// (its Lua) behave alike. Timing runs on a ContractClock: the real one sleeps and allows for
// the milliseconds that pass between calls (slackMs); a fake one advances time exactly, so the
// same assertions become exact. Refill rates are high and sleeps short to keep a run < 2 s.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import type { Keys } from '../../src/stores/keys.js';
import type { RedisClient } from '../../src/stores/redis-store.js';
import type { Bucket, Store } from '../../src/stores/store.js';

export interface ContractClock {
  /** Lets `ms` of the store's time pass. */
  sleep: (ms: number) => Promise<void>;
  /** How much store time may pass between two calls beyond what sleep() asked for (ms). */
  slackMs: number;
}

export interface ContractSubject {
  store: Store;
  keys: Keys;
  cleanup(): Promise<void>;
}

/** The real clock: stores read Date.now() or Redis TIME, so waiting is sleeping. */
export const realClock: ContractClock = { sleep: (ms) => sleep(ms), slackMs: 100 };

/** A clock tests advance by hand; pass `now` to the store (MemoryStore's `now` option). */
export function createFakeClock(startMs = 1_000_000): ContractClock & { now: () => number } {
  let t = startMs;
  return {
    now: () => t,
    sleep: async (ms) => {
      t += ms;
    },
    slackMs: 0,
  };
}

/** A key prefix of its own for one test file, so parallel files and reruns never collide. */
export function randomKeyPrefix(): string {
  return `tg:test:${randomBytes(6).toString('hex')}:`;
}

/** The Redis the tests run against (scripts/run-tests.mjs sets REDIS_URL). */
export function redisUrl(): string {
  return process.env.REDIS_URL || 'redis://127.0.0.1:6379';
}

/** Resolves once the client can take commands (they fail fast before: no offline queue). */
export async function waitUntilReady(client: RedisClient, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (client.status !== 'ready') {
    if (Date.now() > deadline)
      throw new Error(`Redis client not ready after ${timeoutMs} ms (${client.status})`);
    await sleep(10);
  }
}

/** Deletes every key under `prefix` (SCAN, never KEYS: the server may be shared). */
export async function deleteKeysWithPrefix(client: Redis, prefix: string): Promise<number> {
  let cursor = '0';
  let deleted = 0;
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) deleted += await client.del(...keys);
  } while (cursor !== '0');
  return deleted;
}

export function runStoreContract(
  name: string,
  makeStore: () => Promise<ContractSubject>,
  clock: ContractClock = realClock,
): void {
  describe(`Store contract: ${name}`, () => {
    let subject: ContractSubject;
    let store: Store;
    let n = 0;
    /**
     * A bucket no other test touches. All of one team's, as in the gateway: the buckets of one
     * take must share a hash tag, or Redis Cluster refuses the script (CROSSSLOT).
     */
    const bucket = (capacity: number, refillPerSecond: number): Bucket => ({
      key: subject.keys.teamBucket('buckets', `tpm-${++n}`),
      capacity,
      refillPerSecond,
    });
    /** Tokens a bucket may have regained through real time passing between calls. */
    const drift = (b: Bucket): number => (b.refillPerSecond * clock.slackMs) / 1000;
    /** `actual` is `expected`, or up to `above` more (time only ever adds tokens). */
    const near = (actual: number, expected: number, above: number, what: string): void => {
      assert.ok(
        actual >= expected - 1e-9 && actual <= expected + above + 1e-9,
        `${what}: ${actual} not in [${expected}, ${expected + above}]`,
      );
    };
    /**
     * A wait of `expected` ms, or up to slackMs less (time has already passed). Waits are
     * rounded up to whole ms, and float error can push an exact 1950 to 1951: one more is fine.
     */
    const nearWait = (actual: number, expected: number, what: string): void => {
      assert.ok(Number.isInteger(actual), `${what}: ${actual} is a whole number of ms`);
      assert.ok(
        actual <= expected + 1 && actual >= expected - clock.slackMs,
        `${what}: ${actual} not in [${expected - clock.slackMs}, ${expected + 1}]`,
      );
    };
    /** The bucket's level, read without changing it: adjusting by 0 never refuses. */
    const peek = async (b: Bucket) => (await store.adjust([{ bucket: b, cost: 0 }]))[0]!;

    before(async () => {
      subject = await makeStore();
      store = subject.store;
    });
    after(async () => {
      await subject.cleanup();
    });

    describe('token buckets', () => {
      it('finds a bucket never used full', async () => {
        const b = bucket(10, 1);
        assert.deepEqual(await peek(b), { remaining: 10, resetMs: 0 });
        const r = await store.take([{ bucket: bucket(10, 1), cost: 10 }]);
        assert.equal(r.admitted, true);
        assert.equal(r.retryAfterMs, 0);
        assert.equal(r.limiting, -1);
        near(r.buckets[0]!.remaining, 0, 0, 'remaining');
      });

      it('keeps fractional tokens exact', async () => {
        const b = bucket(10, 0.001);
        const r = await store.take([{ bucket: b, cost: 2.5 }]);
        assert.equal(r.buckets[0]!.remaining, 7.5);
        const [adjusted] = await store.adjust([{ bucket: b, cost: 0.25 }]);
        near(adjusted!.remaining, 7.25, drift(b), 'after a fractional adjust');
      });

      it('admits up to capacity, then refuses with the wait for the missing tokens', async () => {
        const b = bucket(5, 1);
        for (let i = 1; i <= 5; i++) {
          const r = await store.take([{ bucket: b, cost: 1 }]);
          assert.equal(r.admitted, true, `take ${i}`);
          near(r.buckets[0]!.remaining, 5 - i, drift(b), `remaining after take ${i}`);
        }
        const refused = await store.take([{ bucket: b, cost: 1 }]);
        assert.equal(refused.admitted, false);
        assert.equal(refused.limiting, 0);
        // One token at one per second: 1000 ms, less what has refilled since the last take.
        nearWait(refused.retryAfterMs, 1000, 'retryAfterMs');
        near(refused.buckets[0]!.remaining, 0, drift(b), 'remaining as found');
        const bigger = await store.take([{ bucket: b, cost: 3 }]);
        assert.equal(bigger.admitted, false);
        nearWait(bigger.retryAfterMs, 3000, 'retryAfterMs for 3 tokens');
      });

      it('charges every bucket of an admitted take', async () => {
        const a = bucket(10, 1);
        const b = bucket(20, 1);
        const r = await store.take([
          { bucket: a, cost: 4 },
          { bucket: b, cost: 5 },
        ]);
        assert.equal(r.admitted, true);
        assert.equal(r.buckets.length, 2);
        near(r.buckets[0]!.remaining, 6, 0, 'a');
        near(r.buckets[1]!.remaining, 15, 0, 'b');
        near((await peek(a)).remaining, 6, drift(a), 'a afterwards');
        near((await peek(b)).remaining, 15, drift(b), 'b afterwards');
      });

      it('charges no bucket when one of them is short (all or nothing)', async () => {
        const a = bucket(10, 1);
        const b = bucket(10, 1);
        const c = bucket(2, 1);
        assert.equal((await store.take([{ bucket: c, cost: 2 }])).admitted, true);
        const r = await store.take([
          { bucket: a, cost: 5 },
          { bucket: b, cost: 5 },
          { bucket: c, cost: 1 },
        ]);
        assert.equal(r.admitted, false);
        assert.equal(r.limiting, 2);
        // Snapshots are the levels as found: the full buckets were not charged.
        assert.deepEqual(
          r.buckets.slice(0, 2).map((s) => s.remaining),
          [10, 10],
        );
        assert.deepEqual(await peek(a), { remaining: 10, resetMs: 0 });
        assert.deepEqual(await peek(b), { remaining: 10, resetMs: 0 });
        near((await peek(c)).remaining, 0, drift(c), 'c');
      });

      it('names as limiting the bucket that must wait longest, not the one lacking most tokens', async () => {
        const fast = bucket(10, 100);
        const slow = bucket(10, 1);
        await store.take([
          { bucket: fast, cost: 10 },
          { bucket: slow, cost: 10 },
        ]);
        // fast lacks ~8 tokens (~80 ms at 100/s); slow lacks ~1 token (~1000 ms at 1/s).
        const r = await store.take([
          { bucket: fast, cost: 8 },
          { bucket: slow, cost: 1 },
        ]);
        assert.equal(r.admitted, false);
        assert.equal(r.limiting, 1);
        nearWait(r.retryAfterMs, 1000, 'retryAfterMs');
        const swapped = await store.take([
          { bucket: slow, cost: 1 },
          { bucket: fast, cost: 8 },
        ]);
        assert.equal(swapped.limiting, 0);
      });

      it('refills continuously, up to capacity', async () => {
        const b = bucket(10, 20);
        await store.take([{ bucket: b, cost: 10 }]);
        await clock.sleep(100);
        // 100 ms at 20/s: 2 tokens (more on a real clock, which also counts the calls).
        const r = await store.take([{ bucket: b, cost: 2 }]);
        assert.equal(r.admitted, true);
        near(r.buckets[0]!.remaining, 0, drift(b), 'remaining');

        const quick = bucket(10, 1000);
        await store.take([{ bucket: quick, cost: 10 }]);
        await clock.sleep(30);
        // 30 ms at 1000/s would be 30 tokens: the bucket stops at its capacity.
        assert.deepEqual(await peek(quick), { remaining: 10, resetMs: 0 });
      });

      it('reports resetMs: the time until the bucket is full again', async () => {
        const b = bucket(10, 2);
        const r = await store.take([{ bucket: b, cost: 4 }]);
        // 4 tokens at 2/s.
        assert.equal(r.buckets[0]!.resetMs, 2000);
        await clock.sleep(50);
        const later = await peek(b);
        nearWait(later.resetMs, 1950, 'resetMs after 50 ms');
        const refused = await store.take([{ bucket: b, cost: 8 }]);
        assert.equal(refused.admitted, false);
        // A refused take reports the buckets as found.
        nearWait(refused.buckets[0]!.resetMs, 1950, 'resetMs when refused');
      });

      it('adjust refunds up to capacity and never refuses', async () => {
        const b = bucket(10, 1);
        await store.take([{ bucket: b, cost: 4 }]);
        const [refund] = await store.adjust([{ bucket: b, cost: -2 }]);
        near(refund!.remaining, 8, drift(b), 'after refund');
        const [capped] = await store.adjust([{ bucket: b, cost: -10 }]);
        assert.deepEqual(capped, { remaining: 10, resetMs: 0 });
        // A bucket never used starts full: an adjust charges it from capacity.
        const fresh = bucket(10, 1);
        const [charged] = await store.adjust([{ bucket: fresh, cost: 3 }]);
        assert.deepEqual(charged, { remaining: 7, resetMs: 3000 });
        const both = await store.adjust([
          { bucket: b, cost: 0 },
          { bucket: fresh, cost: -1 },
        ]);
        assert.equal(both.length, 2);
        assert.deepEqual(both[0], { remaining: 10, resetMs: 0 });
        near(both[1]!.remaining, 8, drift(fresh), 'fresh after refund');
      });

      it('adjust charges an overage below zero, and later takes wait for it', async () => {
        const b = bucket(10, 1);
        await store.take([{ bucket: b, cost: 10 }]);
        const [over] = await store.adjust([{ bucket: b, cost: 5 }]);
        near(over!.remaining, -5, drift(b), 'after overage');
        nearWait(over!.resetMs, 15_000, 'resetMs below zero');
        const r = await store.take([{ bucket: b, cost: 1 }]);
        assert.equal(r.admitted, false);
        // From -5 to +1: six tokens at one per second.
        nearWait(r.retryAfterMs, 6000, 'retryAfterMs after overage');
        near(r.buckets[0]!.remaining, -5, drift(b), 'remaining as found');
      });

      it('admits exactly capacity among many concurrent takes', async () => {
        const b = bucket(50, 0.001);
        const results = await Promise.all(
          Array.from({ length: 200 }, () => store.take([{ bucket: b, cost: 1 }])),
        );
        assert.equal(results.filter((r) => r.admitted).length, 50);
        const remaining = results.filter((r) => r.admitted).map((r) => r.buckets[0]!.remaining);
        // Each admitted take saw a different level: no two paid from the same token.
        assert.equal(new Set(remaining.map((x) => Math.round(x))).size, 50);
      });
    });

    describe('concurrency slots', () => {
      const slotKey = () => subject.keys.teamConcurrency(`slots-${++n}`);

      it('holds up to the limit, then refuses; a release frees a slot', async () => {
        const key = slotKey();
        assert.deepEqual(await store.acquire(key, 'a', 2, 60_000), { acquired: true, inFlight: 1 });
        assert.deepEqual(await store.acquire(key, 'b', 2, 60_000), { acquired: true, inFlight: 2 });
        assert.deepEqual(await store.acquire(key, 'c', 2, 60_000), { acquired: false, inFlight: 2 });
        // A holder asking again keeps its one slot.
        assert.deepEqual(await store.acquire(key, 'a', 2, 60_000), { acquired: true, inFlight: 2 });
        await store.release(key, 'b');
        assert.deepEqual(await store.acquire(key, 'c', 2, 60_000), { acquired: true, inFlight: 2 });
        await store.release(key, 'nobody');
        await store.release(slotKey(), 'nobody');
        await store.release(key, 'a');
        await store.release(key, 'c');
        assert.deepEqual(await store.acquire(key, 'd', 1, 60_000), { acquired: true, inFlight: 1 });
      });

      it('lets a lease expire, so a holder that never releases stops counting', async () => {
        const key = slotKey();
        assert.equal((await store.acquire(key, 'lost-1', 2, 50)).acquired, true);
        assert.equal((await store.acquire(key, 'lost-2', 2, 50)).acquired, true);
        assert.equal((await store.acquire(key, 'x', 2, 50)).acquired, false);
        await clock.sleep(50 + clock.slackMs + 20);
        assert.deepEqual(await store.acquire(key, 'x', 2, 60_000), { acquired: true, inFlight: 1 });
      });

      it('admits exactly the limit among many concurrent acquires', async () => {
        const key = slotKey();
        const results = await Promise.all(
          Array.from({ length: 50 }, (_, i) => store.acquire(key, `r${i}`, 7, 60_000)),
        );
        assert.equal(results.filter((r) => r.acquired).length, 7);
      });
    });

    describe('cache', () => {
      const cacheKey = () => subject.keys.cacheEntry('team-cache', `digest-${++n}`);

      it('misses an absent key', async () => {
        assert.equal(await store.cacheGet(cacheKey()), undefined);
      });

      it('returns exactly the bytes stored, including bytes that are not UTF-8', async () => {
        const key = cacheKey();
        const value = Buffer.concat([
          Buffer.from([0xff, 0xfe, 0x00, 0xc3, 0x28, 0xa0, 0xa1, 0xe2, 0x28, 0xa1, 0xf0, 0x28, 0x8c, 0xbc]),
          Buffer.from(Array.from({ length: 256 }, (_, i) => i)),
          Buffer.from('{"choices":[{"message":{"content":"héllo ✓"}}]}'),
        ]);
        await store.cacheSet(key, value, 60_000);
        const got = await store.cacheGet(key);
        assert.ok(Buffer.isBuffer(got));
        assert.ok(got.equals(value));
        const empty = cacheKey();
        await store.cacheSet(empty, Buffer.alloc(0), 60_000);
        assert.deepEqual(await store.cacheGet(empty), Buffer.alloc(0));
      });

      it('overwrites an entry', async () => {
        const key = cacheKey();
        await store.cacheSet(key, Buffer.from('one'), 60_000);
        await store.cacheSet(key, Buffer.from('two'), 60_000);
        assert.equal((await store.cacheGet(key))?.toString(), 'two');
      });

      it('forgets an entry when its TTL has passed', async () => {
        const key = cacheKey();
        const kept = cacheKey();
        await store.cacheSet(key, Buffer.from('short'), 40);
        await store.cacheSet(kept, Buffer.from('long'), 60_000);
        assert.equal((await store.cacheGet(key))?.toString(), 'short');
        await clock.sleep(40 + clock.slackMs + 20);
        assert.equal(await store.cacheGet(key), undefined);
        assert.equal((await store.cacheGet(kept))?.toString(), 'long');
      });

      it('stores nothing for a TTL of zero', async () => {
        const key = cacheKey();
        await store.cacheSet(key, Buffer.from('x'), 0);
        assert.equal(await store.cacheGet(key), undefined);
      });
    });

    describe('counters and budgets', () => {
      let t = 0;
      const team = () => `spend-${++t}`;
      const HOUR = 3_600_000;
      const lease = (tm: string, id: string, ms = 60_000) => ({
        key: subject.keys.teamBudgetLeases(tm),
        id,
        ms,
      });
      const check = (key: string, limit: number, amount: number) => ({
        key,
        spentField: 'usd',
        reservedField: 'usd:reserved',
        limit,
        amount,
      });

      it('adds integers to hash fields and returns the totals', async () => {
        const tm = team();
        const day = subject.keys.teamSpend(tm, 'd:2026-11-25');
        const month = subject.keys.teamSpend(tm, 'm:2026-11');
        const leases = subject.keys.teamBudgetLeases(tm);
        const first = await store.settle(
          leases,
          [],
          [
            { key: day, field: 'usd', by: 1_250 },
            { key: day, field: 'tokens', by: 40 },
            { key: month, field: 'usd', by: 1_250 },
          ],
          HOUR,
        );
        assert.deepEqual(first, [1_250, 40, 1_250]);
        const second = await store.settle(leases, [], [{ key: day, field: 'usd', by: 3 }], HOUR);
        assert.deepEqual(second, [1_253]);
        assert.deepEqual(await store.readCounters([day, month, subject.keys.teamSpend(tm, 'd:1999-01-01')]), [
          { usd: 1_253, tokens: 40 },
          { usd: 1_250 },
          {},
        ]);
      });

      it('reads the counters of many teams in one call, in the order asked', async () => {
        // On a Redis Cluster these hashes live on several nodes: the admin API, spend reports
        // and the key-records refresh read every team's at once.
        const teams = Array.from({ length: 20 }, () => team());
        const day = (tm: string) => subject.keys.teamSpend(tm, 'd:x');
        const month = (tm: string) => subject.keys.teamSpend(tm, 'm:x');
        await Promise.all(
          teams.map((tm, i) =>
            store.settle(
              subject.keys.teamBudgetLeases(tm),
              [],
              [
                { key: day(tm), field: 'usd', by: i + 1 },
                { key: month(tm), field: 'usd', by: 100 + i },
              ],
              HOUR,
            ),
          ),
        );
        const keys = [...teams.map(day), subject.keys.teamSpend(team(), 'd:x'), ...teams.map(month)];
        assert.deepEqual(await store.readCounters(keys), [
          ...teams.map((_, i) => ({ usd: i + 1 })),
          {},
          ...teams.map((_, i) => ({ usd: 100 + i })),
        ]);
      });

      it('sums concurrent increments exactly', async () => {
        const tm = team();
        const day = subject.keys.teamSpend(tm, 'd:x');
        const leases = subject.keys.teamBudgetLeases(tm);
        await Promise.all(
          Array.from({ length: 200 }, (_, i) =>
            store.settle(leases, [], [{ key: day, field: 'usd', by: 1_000_003 + i }], HOUR),
          ),
        );
        const expected = Array.from({ length: 200 }, (_, i) => 1_000_003 + i).reduce((a, b) => a + b, 0);
        assert.equal((await store.readCounters([day]))[0]!.usd, expected);
      });

      it('refuses a fraction (a counter only ever holds integers)', async () => {
        const tm = team();
        await assert.rejects(
          store.settle(
            subject.keys.teamBudgetLeases(tm),
            [],
            [{ key: subject.keys.teamSpend(tm, 'd:x'), field: 'usd', by: 1.5 }],
            HOUR,
          ),
        );
      });

      it('admits while spent + reserved is below the limit, and reserves', async () => {
        const tm = team();
        const day = subject.keys.teamSpend(tm, 'd:x');
        const a = await store.reserve(lease(tm, 'a'), [check(day, 100, 60)], HOUR);
        assert.deepEqual(a, { admitted: true, exhausted: -1, used: [0] });
        const b = await store.reserve(lease(tm, 'b'), [check(day, 100, 60)], HOUR);
        assert.deepEqual(b, { admitted: true, exhausted: -1, used: [60] });
        // 120 reserved: the budget is used up until a reservation settles.
        const c = await store.reserve(lease(tm, 'c'), [check(day, 100, 1)], HOUR);
        assert.deepEqual(c, { admitted: false, exhausted: 0, used: [120] });
        assert.deepEqual(await store.readCounters([day]), [{ 'usd:reserved': 120 }]);
        // a actually cost 10: its reservation goes, its spend stays.
        await store.settle(lease(tm, 'a').key, ['a'], [{ key: day, field: 'usd', by: 10 }], HOUR);
        assert.deepEqual(await store.readCounters([day]), [{ usd: 10, 'usd:reserved': 60 }]);
        const d = await store.reserve(lease(tm, 'd'), [check(day, 100, 20)], HOUR);
        assert.deepEqual(d, { admitted: true, exhausted: -1, used: [70] });
      });

      it('checks every budget and reserves in none when one is used up', async () => {
        const tm = team();
        const day = subject.keys.teamSpend(tm, 'd:x');
        const month = subject.keys.teamSpend(tm, 'm:x');
        await store.settle(
          subject.keys.teamBudgetLeases(tm),
          [],
          [{ key: month, field: 'usd', by: 500 }],
          HOUR,
        );
        const r = await store.reserve(lease(tm, 'a'), [check(day, 100, 5), check(month, 500, 5)], HOUR);
        assert.deepEqual(r, { admitted: false, exhausted: 1, used: [0, 500] });
        assert.deepEqual(await store.readCounters([day]), [{}]);
      });

      it('lets at most one request past the limit when many reserve at once', async () => {
        const tm = team();
        const day = subject.keys.teamSpend(tm, 'd:x');
        const results = await Promise.all(
          Array.from({ length: 50 }, (_, i) =>
            store.reserve(lease(tm, `r${i}`), [check(day, 100, 30)], HOUR),
          ),
        );
        // 0, 30, 60, 90 are below 100: four admitted, and the fourth may overshoot by its own amount.
        assert.equal(results.filter((r) => r.admitted).length, 4);
      });

      it('settle also reconciles tokens, frees the slot and stores the cache entry of the request, in the same call', async () => {
        const tm = team();
        const day = subject.keys.teamSpend(tm, 'd:x');
        const tpm: Bucket = { key: subject.keys.teamBucket(tm, 'tpm'), capacity: 1000, refillPerSecond: 0 };
        const slotKey = subject.keys.teamConcurrency(tm);
        const admitted = await store.admit({
          takes: [{ bucket: tpm, cost: 300 }],
          slot: { key: slotKey, id: 'req-1', limit: 1, leaseMs: 60_000 },
          budget: { lease: lease(tm, 'req-1'), checks: [check(day, 100, 40)], ttlMs: HOUR },
        });
        assert.equal(admitted.admitted, true);
        const totals = await store.settle(
          lease(tm, 'req-1').key,
          ['req-1'],
          [{ key: day, field: 'usd', by: 12 }],
          HOUR,
          {
            adjust: [{ bucket: tpm, cost: -200 }],
            release: { key: slotKey, id: 'req-1' },
            cache: {
              key: subject.keys.cacheEntry('t', `finish-${tm}`),
              value: Buffer.from('answer'),
              ttlMs: 60_000,
            },
          },
        );
        assert.deepEqual(totals, [12]);
        assert.equal(
          (await store.cacheGet(subject.keys.cacheEntry('t', `finish-${tm}`)))?.toString(),
          'answer',
        );
        assert.deepEqual(await store.readCounters([day]), [{ usd: 12, 'usd:reserved': 0 }]);
        // 300 taken, 200 given back: 900 left; and the slot is free for another request.
        assert.equal((await store.adjust([{ bucket: tpm, cost: 0 }]))[0]!.remaining, 900);
        const next = await store.admit({
          takes: [],
          slot: { key: slotKey, id: 'req-2', limit: 1, leaseMs: 60_000 },
          budget: undefined,
        });
        assert.equal(next.admitted, true);
      });

      it('admissions made in one turn are decided in order, each as if alone', async () => {
        // RedisStore joins a team's admissions of one turn into one script (on a Cluster too).
        const tm = team();
        const day = subject.keys.teamSpend(tm, 'd:x');
        const rpm: Bucket = { key: subject.keys.teamBucket(tm, 'rpm'), capacity: 3, refillPerSecond: 0 };
        const admit = (id: string, slots?: number) =>
          store.admit({
            takes: [{ bucket: rpm, cost: 1 }],
            slot:
              slots === undefined
                ? undefined
                : { key: subject.keys.teamConcurrency(tm), id, limit: slots, leaseMs: 60_000 },
            budget: { lease: lease(tm, id), checks: [check(day, 250, 100)], ttlMs: HOUR },
          });
        const results = await Promise.all([
          admit('a', 2),
          admit('b', 2),
          admit('c', 2),
          admit('d'),
          admit('e'),
          admit('f'),
        ]);
        assert.deepEqual(
          results.map((r) => r.refusedBy ?? 'admitted'),
          ['admitted', 'admitted', 'concurrency', 'admitted', 'budget', 'budget'],
        );
        assert.deepEqual(
          results.map((r) => r.budget?.used[0]),
          [0, 100, 200, 200, 300, 300],
        );
        assert.deepEqual(await store.readCounters([day]), [{ 'usd:reserved': 300 }]);
        // Three admitted, three tokens taken: the bucket is empty.
        assert.equal((await store.take([{ bucket: rpm, cost: 1 }])).admitted, false);
      });

      it('settles of many requests finished in one turn: each applied, as if one after another', async () => {
        // RedisStore joins a team's settles of one turn into one script; nothing may be lost.
        const tm = team();
        const other = team();
        const day = subject.keys.teamSpend(tm, 'd:x');
        const perKey = subject.keys.teamSpend(tm, 'd:key');
        const tpm: Bucket = { key: subject.keys.teamBucket(tm, 'tpm'), capacity: 10_000, refillPerSecond: 0 };
        const slotKey = subject.keys.teamConcurrency(tm);
        const ids = Array.from({ length: 12 }, (_, i) => `req-${i}`);
        for (const id of ids) {
          const admitted = await store.admit({
            takes: [{ bucket: tpm, cost: 500 }],
            slot: { key: slotKey, id, limit: ids.length, leaseMs: 60_000 },
            budget: { lease: lease(tm, id), checks: [check(day, 1_000_000, 100)], ttlMs: HOUR },
          });
          assert.equal(admitted.admitted, true);
        }
        const settled = await Promise.all([
          ...ids.map((id, i) =>
            store.settle(
              lease(tm, id).key,
              [id],
              [
                { key: day, field: 'usd', by: 10 + i },
                { key: perKey, field: `usd:k${i % 3}`, by: 1 },
              ],
              HOUR,
              {
                adjust: [{ bucket: tpm, cost: -100 - i }],
                release: { key: slotKey, id },
                cache: {
                  key: subject.keys.cacheEntry('t', `joint-${tm}-${i}`),
                  value: Buffer.from(`answer ${i}`),
                  ttlMs: 60_000,
                },
              },
            ),
          ),
          // Another team's settle and a plain one (no reservation, nothing else) in the same turn.
          store.settle(
            subject.keys.teamBudgetLeases(other),
            [],
            [{ key: subject.keys.teamSpend(other, 'd:x'), field: 'usd', by: 5 }],
            HOUR,
          ),
          store.settle(subject.keys.teamBudgetLeases(tm), [], [{ key: day, field: 'tokens', by: 7 }], HOUR),
        ]);
        const spent = ids.reduce((sum, _, i) => sum + 10 + i, 0);
        assert.deepEqual(await store.readCounters([day, perKey, subject.keys.teamSpend(other, 'd:x')]), [
          { usd: spent, 'usd:reserved': 0, tokens: 7 },
          { 'usd:k0': 4, 'usd:k1': 4, 'usd:k2': 4 },
          { usd: 5 },
        ]);
        // Each call's totals are its counters' values after the (joint) step, never below its own.
        for (const [i, totals] of settled.slice(0, ids.length).entries()) {
          assert.equal(totals.length, 2);
          assert.ok(totals[0]! >= 10 + i && totals[0]! <= spent, `call ${i}: ${totals[0]}`);
          assert.ok(totals[1]! >= 1 && totals[1]! <= 4);
        }
        assert.deepEqual(settled[ids.length], [5]);
        // 12 x 500 taken, 12 x 100 + (0 + ... + 11) given back.
        const back = ids.reduce((sum, _, i) => sum + 100 + i, 0);
        assert.equal((await store.adjust([{ bucket: tpm, cost: 0 }]))[0]!.remaining, 10_000 - 6_000 + back);
        for (const [i] of ids.entries())
          assert.equal(
            (await store.cacheGet(subject.keys.cacheEntry('t', `joint-${tm}-${i}`)))?.toString(),
            `answer ${i}`,
          );
        // Every slot is free again: a full set of new holders fits.
        for (const id of ids) {
          const next = await store.admit({
            takes: [],
            slot: { key: slotKey, id: `${id}-again`, limit: ids.length, leaseMs: 60_000 },
            budget: undefined,
          });
          assert.equal(next.admitted, true, id);
        }
      });

      it('settling a reservation twice releases it once', async () => {
        const tm = team();
        const day = subject.keys.teamSpend(tm, 'd:x');
        await store.reserve(lease(tm, 'a'), [check(day, 100, 40)], HOUR);
        await store.reserve(lease(tm, 'b'), [check(day, 100, 40)], HOUR);
        await store.settle(lease(tm, 'a').key, ['a'], [], HOUR);
        await store.settle(lease(tm, 'a').key, ['a'], [], HOUR);
        assert.deepEqual(await store.readCounters([day]), [{ 'usd:reserved': 40 }]);
      });

      it('returns a reservation whose lease ran out (a replica died before settling)', async () => {
        const tm = team();
        const day = subject.keys.teamSpend(tm, 'd:x');
        await store.reserve(lease(tm, 'lost', 50), [check(day, 100, 90)], HOUR);
        assert.equal((await store.reserve(lease(tm, 'x'), [check(day, 100, 20)], HOUR)).admitted, true);
        assert.equal((await store.reserve(lease(tm, 'y'), [check(day, 100, 20)], HOUR)).admitted, false);
        await clock.sleep(50 + clock.slackMs + 20);
        const z = await store.reserve(lease(tm, 'z'), [check(day, 100, 20)], HOUR);
        assert.deepEqual(z, { admitted: true, exhausted: -1, used: [20] });
      });

      it('forgets counters when their TTL has passed', async () => {
        const tm = team();
        const day = subject.keys.teamSpend(tm, 'd:x');
        await store.settle(subject.keys.teamBudgetLeases(tm), [], [{ key: day, field: 'usd', by: 7 }], 40);
        assert.deepEqual(await store.readCounters([day]), [{ usd: 7 }]);
        await clock.sleep(40 + clock.slackMs + 20);
        assert.deepEqual(await store.readCounters([day]), [{}]);
      });
    });
  });
}
