// MemoryStore: the shared Store contract, once on a fake clock (exact arithmetic) and once on
// the real one (the conditions RedisStore runs under), plus what only MemoryStore has: a cache
// bounded by bytes that evicts the least recently used entries.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createKeys } from '../../src/stores/keys.js';
import { MemoryStore } from '../../src/stores/memory-store.js';
import { createFakeClock, randomKeyPrefix, realClock, runStoreContract } from './store.contract.js';

const fake = createFakeClock();
runStoreContract(
  'MemoryStore (fake clock)',
  async () => {
    const store = new MemoryStore({ now: fake.now });
    return { store, keys: createKeys(randomKeyPrefix()), cleanup: () => store.close() };
  },
  fake,
);

runStoreContract(
  'MemoryStore (real clock)',
  async () => {
    const store = new MemoryStore();
    return { store, keys: createKeys(randomKeyPrefix()), cleanup: () => store.close() };
  },
  realClock,
);

describe('MemoryStore cache bound', () => {
  const bytes = (n: number, fill = 1) => Buffer.alloc(n, fill);

  it('evicts the least recently used entries once keys and values pass the byte bound', async () => {
    // Each entry: a 2-byte key and a 98-byte value, 100 bytes; the bound holds three.
    const store = new MemoryStore({ cacheMaxBytes: 300 });
    await store.cacheSet('k1', bytes(98), 60_000);
    await store.cacheSet('k2', bytes(98), 60_000);
    await store.cacheSet('k3', bytes(98), 60_000);
    // 1. Reading k1 makes it the most recently used: k2 is now the oldest.
    assert.ok(await store.cacheGet('k1'));
    // 2. A fourth entry pushes past 300 bytes: k2 goes, the others stay.
    await store.cacheSet('k4', bytes(98), 60_000);
    assert.equal(await store.cacheGet('k2'), undefined);
    for (const k of ['k1', 'k3', 'k4']) assert.ok(await store.cacheGet(k), k);
    // 3. One large entry evicts as many old ones as it needs.
    await store.cacheSet('k5', bytes(198), 60_000);
    assert.equal(await store.cacheGet('k1'), undefined);
    assert.equal(await store.cacheGet('k3'), undefined);
    assert.ok(await store.cacheGet('k4'));
    assert.ok(await store.cacheGet('k5'));
    await store.close();
  });

  it('never stores an entry larger than the whole bound', async () => {
    const store = new MemoryStore({ cacheMaxBytes: 100 });
    await store.cacheSet('small', bytes(10), 60_000);
    await store.cacheSet('huge', bytes(200), 60_000);
    assert.equal(await store.cacheGet('huge'), undefined);
    // Storing it would have evicted everything else for nothing.
    assert.ok(await store.cacheGet('small'));
    await store.close();
  });

  it('counts an overwritten entry once', async () => {
    const store = new MemoryStore({ cacheMaxBytes: 200 });
    await store.cacheSet('a', bytes(99), 60_000);
    for (let i = 0; i < 5; i++) await store.cacheSet('b', bytes(99, i), 60_000);
    // a (100 bytes) + b (100 bytes) fit exactly: rewriting b must not have evicted a.
    assert.ok(await store.cacheGet('a'));
    assert.deepEqual(await store.cacheGet('b'), bytes(99, 4));
    await store.close();
  });

  it('frees the bytes of an expired entry', async () => {
    const clock = createFakeClock();
    // old: 102 bytes, kept: 103, new: 102. Two fit in the bound, three do not.
    const store = new MemoryStore({ cacheMaxBytes: 220, now: clock.now });
    await store.cacheSet('old', bytes(99), 10);
    await store.cacheSet('kept', bytes(99), 60_000);
    await clock.sleep(20);
    assert.equal(await store.cacheGet('old'), undefined);
    // Were old's 100 bytes still counted, this entry would evict kept.
    await store.cacheSet('new', bytes(99), 60_000);
    assert.ok(await store.cacheGet('kept'));
    assert.ok(await store.cacheGet('new'));
    await store.close();
  });
});

describe('MemoryStore cache cost', () => {
  // Regression: a Map re-inserted on every read (and iterated from its oldest end to evict) walked
  // V8's deleted-entry holes, so a hit or an evicting write cost time proportional to the number
  // of entries: 30 µs each at 36,000. Constant-time operations take about as long on a large cache
  // as on a small one; the old code was 4-5x slower on the large one (24 vs 5.5 µs here).
  async function microsPerOp(entries: number): Promise<number> {
    const value = Buffer.alloc(100);
    const store = new MemoryStore({ cacheMaxBytes: entries * (100 + 8) });
    const key = (i: number) => `k${String(i).padStart(7, '0')}`;
    for (let i = 0; i < entries; i++) await store.cacheSet(key(i), value, 60_000);
    const ops = 20_000;
    const started = process.hrtime.bigint();
    for (let i = 0; i < ops; i++) {
      await store.cacheGet(key(entries - 1)); // one hot key, read again and again
      await store.cacheSet(key(entries + i), value, 60_000); // each write evicts the oldest entry
    }
    const micros = Number(process.hrtime.bigint() - started) / 1000 / ops;
    await store.close();
    return micros;
  }

  it('reads a hot key and evicts in constant time, whatever the number of entries', async () => {
    await microsPerOp(2_000); // warm-up: JIT
    // The best of two runs each: the suite runs files in parallel, and noise only adds time.
    const small = Math.min(await microsPerOp(2_000), await microsPerOp(2_000));
    const large = Math.min(await microsPerOp(40_000), await microsPerOp(40_000));
    assert.ok(
      large < small * 2.5 + 1,
      `${large.toFixed(2)} µs per op at 40,000 entries vs ${small.toFixed(2)} at 2,000`,
    );
  });
});
