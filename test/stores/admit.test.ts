// Store.admit, the one-round-trip admission (budgets, rate buckets, concurrency slot), on both
// stores: all or nothing, refusals named in the order budget, rate, concurrency, and the same
// arithmetic as reserve(), take() and acquire() on their own.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import { createRedisClient } from '../../src/stores/connect.js';
import { createKeys, type Keys } from '../../src/stores/keys.js';
import { MemoryStore } from '../../src/stores/memory-store.js';
import { RedisStore } from '../../src/stores/redis-store.js';
import type { Admission, BudgetCheck, Store } from '../../src/stores/store.js';
import { deleteKeysWithPrefix, randomKeyPrefix, redisUrl, waitUntilReady } from './store.contract.js';

const DAY_MS = 86_400_000;

function admitSuite(
  name: string,
  open: (prefix: string) => Promise<{ store: Store; cleanup: () => Promise<void> }>,
) {
  describe(`${name}.admit`, () => {
    const prefix = randomKeyPrefix();
    const keys: Keys = createKeys(prefix);
    let store: Store;
    let cleanup: () => Promise<void>;
    let n = 0;
    before(async () => {
      const opened = await open(prefix);
      store = opened.store;
      cleanup = () => opened.cleanup();
    });
    after(async () => cleanup());

    /** A fresh team: its buckets, slot set, spend hash and lease set. */
    const team = () => {
      const t = `admit-${++n}`;
      const rpm = { key: keys.teamBucket(t, 'rpm'), capacity: 3, refillPerSecond: 3 / 60 };
      const tpm = { key: keys.teamBucket(t, 'tpm'), capacity: 1_000, refillPerSecond: 1_000 / 60 };
      const spend = keys.teamSpend(t, 'd:2026-11-25');
      const check = (limit: number, amount: number): BudgetCheck => ({
        key: spend,
        spentField: 'usd',
        reservedField: 'usd:reserved',
        limit,
        amount,
      });
      const admission = (
        id: string,
        o: { tokens?: number; slots?: number; budget?: BudgetCheck[] } = {},
      ): Admission => ({
        takes: [
          { bucket: rpm, cost: 1 },
          { bucket: tpm, cost: o.tokens ?? 100 },
        ],
        slot:
          o.slots === undefined
            ? undefined
            : { key: keys.teamConcurrency(t), id, limit: o.slots, leaseMs: 60_000 },
        budget:
          o.budget === undefined
            ? undefined
            : { lease: { key: keys.teamBudgetLeases(t), id, ms: 60_000 }, checks: o.budget, ttlMs: DAY_MS },
      });
      const reserved = async () => (await store.readCounters([spend]))[0]!['usd:reserved'] ?? 0;
      const rpmLeft = async () => (await store.take([{ bucket: rpm, cost: 0 }])).buckets[0]!.remaining;
      return { t, rpm, tpm, spend, check, admission, reserved, rpmLeft };
    };

    it('admits and charges the buckets, holds the slot and reserves the budget, in one call', async () => {
      const x = team();
      const r = await store.admit(x.admission('a', { slots: 2, budget: [x.check(1_000, 250)] }));
      assert.equal(r.admitted, true);
      assert.equal(r.refusedBy, undefined);
      assert.equal(r.take.admitted, true);
      assert.deepEqual(
        r.take.buckets.map((b) => Math.round(b.remaining)),
        [2, 900],
      );
      assert.deepEqual(r.slot, { acquired: true, inFlight: 1 });
      assert.deepEqual(r.budget, { admitted: true, exhausted: -1, used: [0] });
      assert.equal(await x.reserved(), 250);
      // Settling the lease returns the reservation, as for reserve().
      await store.settle(keys.teamBudgetLeases(x.t), ['a'], [], DAY_MS);
      assert.equal(await x.reserved(), 0);
    });

    it('refuses for a spent budget first, and charges nothing', async () => {
      const x = team();
      await store.settle(keys.teamBudgetLeases(x.t), [], [{ key: x.spend, field: 'usd', by: 1_000 }], DAY_MS);
      // The rate limit would refuse too (cost above what is left): the budget is named.
      const r = await store.admit(
        x.admission('b', { tokens: 5_000, slots: 0, budget: [x.check(2_000, 1), x.check(1_000, 1)] }),
      );
      assert.equal(r.admitted, false);
      assert.equal(r.refusedBy, 'budget');
      assert.deepEqual(r.budget, { admitted: false, exhausted: 1, used: [1_000, 1_000] });
      assert.equal(r.take.admitted, false);
      assert.equal(await x.reserved(), 0);
      assert.equal(Math.round(await x.rpmLeft()), 3);
    });

    it('refuses for a rate limit with the wait and the limiting bucket, and charges nothing', async () => {
      const x = team();
      const r = await store.admit(
        x.admission('c', { tokens: 1_500, slots: 5, budget: [x.check(1_000, 10)] }),
      );
      assert.equal(r.admitted, false);
      assert.equal(r.refusedBy, 'rate');
      assert.equal(r.take.limiting, 1);
      // 500 tokens short at 1,000 a minute: 30 s.
      assert.ok(Math.abs(r.take.retryAfterMs - 30_000) <= 100, `retryAfterMs ${r.take.retryAfterMs}`);
      assert.equal(r.slot?.acquired, false);
      assert.equal(await x.reserved(), 0);
      assert.equal(Math.round(await x.rpmLeft()), 3);
      // The slot was not taken: a request that fits gets it.
      const ok = await store.admit(x.admission('d', { slots: 1 }));
      assert.deepEqual(ok.slot, { acquired: true, inFlight: 1 });
    });

    it('refuses when every slot is held, charges nothing, and lets a holder renew its slot', async () => {
      const x = team();
      assert.equal(
        (await store.admit(x.admission('e', { slots: 1, budget: [x.check(1_000, 7)] }))).admitted,
        true,
      );
      const r = await store.admit(x.admission('f', { slots: 1, budget: [x.check(1_000, 7)] }));
      assert.equal(r.admitted, false);
      assert.equal(r.refusedBy, 'concurrency');
      assert.equal(r.take.admitted, true, 'the buckets could have paid');
      assert.deepEqual(r.slot, { acquired: false, inFlight: 1 });
      assert.equal(await x.reserved(), 7, 'only the first request reserved');
      assert.equal(Math.round(await x.rpmLeft()), 2, 'only the first request was charged');
      const again = await store.admit(x.admission('e', { slots: 1 }));
      assert.deepEqual(again.slot, { acquired: true, inFlight: 1 });
      await store.release(keys.teamConcurrency(x.t), 'e');
      assert.equal((await store.admit(x.admission('f', { slots: 1 }))).admitted, true);
    });

    it('admissions of one turn are decided in order, each as if alone (RedisStore sends them in one script)', async () => {
      const x = team();
      const y = team();
      // rpm 3, slots 2, a budget of 250 at 100 each; y is another team, unaffected.
      const results = await Promise.all([
        store.admit(x.admission('p1', { slots: 2, budget: [x.check(250, 100)] })),
        store.admit(x.admission('p2', { slots: 2, budget: [x.check(250, 100)] })),
        store.admit(x.admission('p3', { slots: 2, budget: [x.check(250, 100)] })),
        store.admit(y.admission('q1', { slots: 1, budget: [y.check(1_000, 10)] })),
        store.admit(x.admission('p4', { budget: [x.check(250, 100)] })),
        store.admit(x.admission('p5', { budget: [x.check(250, 100)] })),
        store.admit(x.admission('p6', { budget: [x.check(1_000, 1)] })),
      ]);
      assert.deepEqual(
        results.map((r) => r.refusedBy ?? 'admitted'),
        ['admitted', 'admitted', 'concurrency', 'admitted', 'admitted', 'budget', 'rate'],
      );
      assert.deepEqual(results[1].budget?.used, [100]);
      assert.deepEqual(results[2].slot, { acquired: false, inFlight: 2 });
      assert.deepEqual(results[4].budget?.used, [200]);
      assert.deepEqual(results[5].budget, { admitted: false, exhausted: 0, used: [300] });
      assert.equal(results[6].take.limiting, 0);
      assert.equal(await x.reserved(), 300);
      assert.equal(await y.reserved(), 10);
      assert.equal(Math.round(await x.rpmLeft()), 0);
    });

    it('works with only buckets, only a budget, or only a slot', async () => {
      const x = team();
      const onlyTakes = await store.admit(x.admission('g'));
      assert.equal(onlyTakes.admitted, true);
      assert.equal(onlyTakes.slot, undefined);
      assert.equal(onlyTakes.budget, undefined);
      const onlyBudget = await store.admit({
        takes: [],
        budget: {
          lease: { key: keys.teamBudgetLeases(x.t), id: 'h', ms: 60_000 },
          checks: [x.check(100, 40)],
          ttlMs: DAY_MS,
        },
      });
      assert.equal(onlyBudget.admitted, true);
      assert.deepEqual(onlyBudget.take.buckets, []);
      assert.equal(await x.reserved(), 40);
      const onlySlot = await store.admit({
        takes: [],
        slot: { key: keys.teamConcurrency(x.t), id: 'i', limit: 1, leaseMs: 60_000 },
      });
      assert.deepEqual(onlySlot.slot, { acquired: true, inFlight: 1 });
    });

    it('returns expired reservations to the budget before checking it', async () => {
      const x = team();
      const short = (id: string, amount: number): Admission => ({
        takes: [],
        budget: {
          lease: { key: keys.teamBudgetLeases(x.t), id, ms: 50 },
          checks: [x.check(100, amount)],
          ttlMs: DAY_MS,
        },
      });
      assert.equal((await store.admit(short('j', 100))).admitted, true);
      assert.equal((await store.admit(short('k', 1))).refusedBy, 'budget');
      await new Promise((r) => setTimeout(r, 120));
      assert.equal((await store.admit(short('k', 1))).admitted, true);
      assert.equal(await x.reserved(), 1);
    });

    it('reserve() too returns the newest reservation once its lease expired (the lease set outlives it)', async () => {
      const x = team();
      const lease = (id: string) => ({ key: keys.teamBudgetLeases(x.t), id, ms: 50 });
      assert.equal((await store.reserve(lease('l'), [x.check(100, 100)], DAY_MS)).admitted, true);
      await new Promise((r) => setTimeout(r, 120));
      // The holder crashed: nothing settled it. The next request finds the budget free again.
      assert.equal((await store.reserve(lease('m'), [x.check(100, 1)], DAY_MS)).admitted, true);
      assert.equal(await x.reserved(), 1);
    });
  });
}

admitSuite('MemoryStore', async () => {
  const store = new MemoryStore();
  return { store, cleanup: () => store.close() };
});

admitSuite('RedisStore', async (prefix) => {
  const client = createRedisClient({ url: redisUrl(), commandTimeoutMs: 2_000, connectTimeoutMs: 2_000 });
  await waitUntilReady(client);
  const store = new RedisStore(client);
  return {
    store,
    cleanup: async () => {
      await deleteKeysWithPrefix(client as Redis, prefix);
      await store.close();
    },
  };
});
