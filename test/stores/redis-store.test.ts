// RedisStore on a real Redis: the shared Store contract (the Lua scripts are the thing under
// test), plus what only Redis shows: how buckets and slot sets are stored and expire, that
// each operation is one round trip, and that scripts survive a server that forgot them.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Cluster, Redis } from 'ioredis';
import { commandTimeoutBackstopMs, createRedisClient, reconnectDelayMs } from '../../src/stores/connect.js';
import { createKeys, type Keys } from '../../src/stores/keys.js';
import { BUCKET_TTL_MARGIN_MS } from '../../src/stores/lua/bucket.js';
import { RedisStore } from '../../src/stores/redis-store.js';
import {
  deleteKeysWithPrefix,
  randomKeyPrefix,
  redisUrl,
  runStoreContract,
  waitUntilReady,
} from './store.contract.js';

async function connectStoreAt(url: string): Promise<RedisStore> {
  // Generous timeouts: this file tests behaviour, resilient-store.test.ts tests outages.
  const client = createRedisClient({ url, commandTimeoutMs: 2_000, connectTimeoutMs: 2_000 });
  await waitUntilReady(client);
  return new RedisStore(client);
}

const connectStore = () => connectStoreAt(redisUrl());

/**
 * The commands clients send that name any of `marks` (MONITOR also lists each command a script
 * runs, from source "lua": those are left out). Resolves once MONITOR is on.
 */
async function watchCommands(admin: Redis, marks: string[]): Promise<{ stop: () => Promise<string[]> }> {
  const monitor = await admin.monitor();
  const seen: string[] = [];
  monitor.on('monitor', (_time: string, args: string[], source: string) => {
    if (source !== 'lua' && marks.some((m) => args.some((a) => a.includes(m))))
      seen.push(args[0]!.toLowerCase());
  });
  await sleep(20);
  return {
    stop: async () => {
      await sleep(50);
      monitor.disconnect();
      return seen;
    },
  };
}

const contractPrefix = randomKeyPrefix();
runStoreContract('RedisStore', async () => {
  const store = await connectStore();
  return {
    store,
    keys: createKeys(contractPrefix),
    cleanup: async () => {
      await deleteKeysWithPrefix(store.client as Redis, contractPrefix);
      await store.close();
    },
  };
});

describe('RedisStore on Redis', () => {
  const prefix = randomKeyPrefix();
  const keys: Keys = createKeys(prefix);
  let store: RedisStore;
  let admin: Redis;
  let n = 0;
  const bucket = (capacity: number, refillPerSecond: number) => ({
    key: keys.teamBucket(`redis-${++n}`, 'tpm'),
    capacity,
    refillPerSecond,
  });

  before(async () => {
    store = await connectStore();
    admin = new Redis(redisUrl());
  });
  after(async () => {
    await deleteKeysWithPrefix(admin, prefix);
    await store.close();
    await admin.quit();
  });

  it('stores a bucket as {tokens, at_ms} in Redis time, expiring once it would be full again', async () => {
    const b = bucket(10, 2);
    await store.take([{ bucket: b, cost: 4 }]);
    const [seconds, micros] = await admin.time();
    const serverMs = Number(seconds) * 1000 + Number(micros) / 1000;
    const state = await admin.hgetall(b.key);
    assert.deepEqual(Object.keys(state).sort(), ['at_ms', 'tokens']);
    assert.equal(Number(state.tokens), 6);
    assert.ok(Math.abs(serverMs - Number(state.at_ms)) < 1_000, `at_ms ${state.at_ms} vs TIME ${serverMs}`);
    // Full again in 4 tokens / 2 per second = 2 s; the key outlives that by the margin.
    const ttlMs = await admin.pttl(b.key);
    assert.ok(ttlMs > 2_000 && ttlMs <= 2_000 + BUCKET_TTL_MARGIN_MS, `pttl ${ttlMs}`);
  });

  it('deletes a bucket that is full again, since absent means full', async () => {
    const b = bucket(10, 1);
    await store.take([{ bucket: b, cost: 3 }]);
    assert.equal(await admin.exists(b.key), 1);
    await store.adjust([{ bucket: b, cost: -3 }]);
    assert.equal(await admin.exists(b.key), 0);
    // A refused take writes nothing at all.
    const short = bucket(1, 1);
    await store.take([{ bucket: short, cost: 1 }]);
    const before = await admin.hgetall(short.key);
    assert.equal((await store.take([{ bucket: short, cost: 1 }])).admitted, false);
    assert.deepEqual(await admin.hgetall(short.key), before);
  });

  it('keeps a bucket that never refills without an expiry', async () => {
    const b = bucket(10, 0);
    await store.take([{ bucket: b, cost: 1 }]);
    assert.equal(await admin.pttl(b.key), -1);
    const r = await store.take([{ bucket: b, cost: 10 }]);
    assert.equal(r.admitted, false);
    assert.equal(r.retryAfterMs, Infinity);
  });

  it('expires a slot set with its longest lease', async () => {
    const key = keys.teamConcurrency(`redis-${++n}`);
    await store.acquire(key, 'a', 5, 500);
    await store.acquire(key, 'b', 5, 2_000);
    await store.acquire(key, 'c', 5, 100);
    const ttlMs = await admin.pttl(key);
    assert.ok(ttlMs > 1_500 && ttlMs <= 2_000, `pttl ${ttlMs}`);
    await store.release(key, 'a');
    await store.release(key, 'b');
    await store.release(key, 'c');
    assert.equal(await admin.exists(key), 0);
  });

  it('keeps working after the server forgets its scripts (SCRIPT FLUSH, a restart)', async () => {
    const b = bucket(10, 1);
    assert.equal((await store.take([{ bucket: b, cost: 1 }])).admitted, true);
    await admin.script('FLUSH');
    assert.equal((await store.take([{ bucket: b, cost: 1 }])).admitted, true);
    assert.equal((await store.adjust([{ bucket: b, cost: 1 }])).length, 1);
    assert.equal((await store.acquire(keys.teamConcurrency(`redis-${++n}`), 'x', 1, 1_000)).acquired, true);
  });

  it('makes one round trip per operation', async () => {
    const team = `redis-${++n}`;
    const takes = ['rpm', 'tpm', 'model:m:tpm'].map((name) => ({
      bucket: { key: keys.teamBucket(team, name), capacity: 10, refillPerSecond: 1 },
      cost: 1,
    }));
    const slot = keys.teamConcurrency(team);
    const entry = keys.cacheEntry('scope', `${team}-digest`);
    // Warm up: the first script call on a connection may be an EVAL, then EVALSHA.
    await store.take(takes);
    await store.adjust(takes);
    await store.acquire(slot, 'warm', 2, 1_000);

    const watch = await watchCommands(admin, [team]);
    await store.take(takes);
    await store.adjust(takes);
    await store.acquire(slot, 'id', 2, 1_000);
    await store.release(slot, 'id');
    await store.cacheSet(entry, Buffer.from('v'), 1_000);
    await store.cacheGet(entry);
    assert.deepEqual(await watch.stop(), ['evalsha', 'evalsha', 'evalsha', 'zrem', 'set', 'get']);
  });

  it("joins a team's settles of one turn into one script call, each team its own", async () => {
    const teams = [`redis-${++n}`, `redis-${++n}`];
    const settle = (team: string, i: number) =>
      store.settle(
        keys.teamBudgetLeases(team),
        [`l${i}`],
        [{ key: keys.teamSpend(team, 'd:x'), field: 'usd', by: i }],
        60_000,
        {
          release: { key: keys.teamConcurrency(team), id: `s${i}` },
        },
      );
    await settle(teams[0]!, 0); // warm-up: the first call of a script may be an EVAL
    const watch = await watchCommands(admin, teams);
    const totals = await Promise.all([...Array.from({ length: 10 }, (_, i) => settle(teams[i % 2]!, i + 1))]);
    // Later turns: calls of their own.
    await settle(teams[0]!, 20);
    await settle(teams[0]!, 30);
    assert.deepEqual(await watch.stop(), ['evalsha', 'evalsha', 'evalsha', 'evalsha']);
    // Team 0 got 0 + 1 + 3 + 5 + 7 + 9, team 1 2 + 4 + 6 + 8 + 10, in one step each.
    assert.deepEqual(
      totals.map((t) => t[0]),
      [25, 30, 25, 30, 25, 30, 25, 30, 25, 30],
    );
  });

  it("joins a team's admissions of one turn into one script call, each team its own", async () => {
    const teams = [`redis-${++n}`, `redis-${++n}`];
    const admit = (team: string, id: string) =>
      store.admit({
        takes: [
          { bucket: { key: keys.teamBucket(team, 'rpm'), capacity: 100, refillPerSecond: 1 }, cost: 1 },
        ],
        slot: { key: keys.teamConcurrency(team), id, limit: 100, leaseMs: 60_000 },
      });
    // Warm-up: the first call of each script (one admission alone, several together) may be an EVAL.
    await admit(teams[0]!, 'w1');
    await Promise.all([admit(teams[0]!, 'w2'), admit(teams[0]!, 'w3')]);
    const watch = await watchCommands(admin, teams);
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => admit(teams[i % 2]!, `a${i}`)));
    await admit(teams[0]!, 'alone');
    assert.deepEqual(await watch.stop(), ['evalsha', 'evalsha', 'evalsha']);
    assert.ok(results.every((r) => r.admitted));
    // In call order within each team: team 0 had 3 slots held before.
    assert.deepEqual(
      results.map((r) => r.slot?.inFlight),
      [4, 1, 5, 2, 6, 3, 7, 4, 8, 5],
    );
  });

  it("reads a turn's cache entries in one MGET, each caller its own entry", async () => {
    const team = `redis-${++n}`;
    const entry = (i: number) => keys.cacheEntry('scope', `${team}-${i}`);
    for (const i of [1, 3, 4]) await store.cacheSet(entry(i), Buffer.from([i, 0, 255]), 60_000);
    const watch = await watchCommands(admin, [team]);
    const values = await Promise.all([0, 1, 2, 3, 4].map((i) => store.cacheGet(entry(i))));
    assert.deepEqual(await watch.stop(), ['mget']);
    assert.deepEqual(values, [
      undefined,
      Buffer.from([1, 0, 255]),
      undefined,
      Buffer.from([3, 0, 255]),
      Buffer.from([4, 0, 255]),
    ]);
  });

  it('joined admissions give the answers and leave the buckets that one-by-one admissions do', async () => {
    // ADMIT_MANY keeps each bucket's state in the script between admissions and writes it once.
    const run = async (team: string, joined: boolean) => {
      const admission = (i: number) => ({
        takes: [
          { bucket: { key: keys.teamBucket(team, 'rpm'), capacity: 5, refillPerSecond: 0 }, cost: 1 },
          {
            bucket: { key: keys.teamBucket(team, 'tpm'), capacity: 1_000, refillPerSecond: 0 },
            cost: 150 + i,
          },
        ],
        slot: { key: keys.teamConcurrency(team), id: `s${i}`, limit: 4, leaseMs: 60_000 },
      });
      const results = joined
        ? await Promise.all(Array.from({ length: 8 }, (_, i) => store.admit(admission(i))))
        : await Array.from({ length: 8 }, (_, i) => i).reduce<Promise<unknown[]>>(
            async (acc, i) => [...(await acc), await store.admit(admission(i))],
            Promise.resolve([]),
          );
      const buckets = await Promise.all(
        ['rpm', 'tpm'].map((b) => admin.hget(keys.teamBucket(team, b), 'tokens')),
      );
      return { results, buckets };
    };
    const one = await run(`redis-${++n}`, false);
    const joined = await run(`redis-${++n}`, true);
    assert.deepEqual(joined, one);
    assert.deepEqual(one.buckets, ['1', '394']); // 4 admitted (the slots): 1000 - 150 - 151 - 152 - 153
  });

  it('splits a burst: at most 64 calls per script and 256 keys per MGET, every answer in order', async () => {
    const team = `redis-${++n}`;
    const admit = (id: string) =>
      store.admit({
        takes: [
          { bucket: { key: keys.teamBucket(team, 'rpm'), capacity: 1_000, refillPerSecond: 1 }, cost: 1 },
        ],
        slot: { key: keys.teamConcurrency(team), id, limit: 1_000, leaseMs: 60_000 },
      });
    const settle = (i: number) =>
      store.settle(
        keys.teamBudgetLeases(team),
        [],
        [{ key: keys.teamSpend(team, 'd:x'), field: 'usd', by: i }],
        60_000,
        {
          release: { key: keys.teamConcurrency(team), id: `b${i}` },
        },
      );
    await admit('warm');
    await Promise.all([admit('warm2'), admit('warm3')]);
    await settle(0);
    await Promise.all([settle(0), settle(0)]);
    const watch = await watchCommands(admin, [team]);
    const admitted = await Promise.all(Array.from({ length: 150 }, (_, i) => admit(`b${i}`)));
    const totals = await Promise.all(Array.from({ length: 150 }, (_, i) => settle(i)));
    const reads = await Promise.all(
      Array.from({ length: 300 }, (_, i) => store.cacheGet(keys.cacheEntry('scope', `${team}-${i}`))),
    );
    assert.deepEqual(await watch.stop(), [
      ...['evalsha', 'evalsha', 'evalsha'], // 64 + 64 + 22 admissions
      ...['evalsha', 'evalsha', 'evalsha'], // and settles
      ...['mget', 'mget'], // 256 + 44 reads
    ]);
    assert.deepEqual(
      admitted.map((r) => r.slot?.inFlight),
      Array.from({ length: 150 }, (_, i) => i + 4),
    );
    assert.equal(totals.at(-1)![0], (149 * 150) / 2);
    assert.ok(reads.every((r) => r === undefined));
    assert.equal(await admin.zcard(keys.teamConcurrency(team)), 3, 'the warm-up slots only');
  });

  it('passes strings with commas, newlines and any byte through the packed script arguments', async () => {
    const team = `redis-${++n}`;
    const odd = 'usd:model:a,b\n\u0000ü,';
    const day = keys.teamSpend(team, 'd:x');
    const slot = keys.teamConcurrency(team);
    const id = 'req,1\n';
    const admitted = await store.admit({
      takes: [
        {
          bucket: { key: keys.teamBucket(team, 'tpm'), capacity: 1_000, refillPerSecond: 1_000 / 60 },
          cost: 10,
        },
      ],
      slot: { key: slot, id, limit: 1, leaseMs: 60_000 },
      budget: {
        lease: { key: keys.teamBudgetLeases(team), id, ms: 60_000 },
        checks: [{ key: day, spentField: odd, reservedField: `${odd}:reserved`, limit: 100, amount: 7 }],
        ttlMs: 60_000,
      },
    });
    assert.equal(admitted.admitted, true);
    assert.deepEqual(await admin.zrange(slot, '0', '-1'), [id]);
    const value = Buffer.from([0, 44, 10, 255, 13]);
    const entry = keys.cacheEntry('scope', `${team},x`);
    await store.settle(keys.teamBudgetLeases(team), [id], [{ key: day, field: odd, by: 5 }], 60_000, {
      release: { key: slot, id },
      cache: { key: entry, value, ttlMs: 60_000 },
    });
    assert.deepEqual(await admin.hgetall(day), { [odd]: '5', [`${odd}:reserved`]: '0' });
    assert.deepEqual(await admin.zrange(slot, '0', '-1'), []);
    assert.deepEqual(await store.cacheGet(entry), value);
  });
});

describe('createRedisClient', () => {
  /** A client that must not reach anything: options only, disconnected at once. */
  const inert = <T extends Redis | Cluster>(client: T): T => {
    client.on('error', () => {});
    client.disconnect();
    return client;
  };
  const timeouts = { commandTimeoutMs: 150, connectTimeoutMs: 700 };

  it('fails fast while disconnected, never resends, times out commands, and keeps reconnecting', () => {
    const client = inert(createRedisClient({ url: 'redis://127.0.0.1:1', ...timeouts }));
    assert.ok(client instanceof Redis);
    assert.equal(client.options.enableOfflineQueue, false);
    assert.equal(client.options.maxRetriesPerRequest, 0);
    assert.equal(client.options.commandTimeout, commandTimeoutBackstopMs(150));
    assert.equal(client.options.connectTimeout, 700);
    assert.deepEqual(
      [1, 5, 20, 1_000].map((n) => client.options.retryStrategy!(n)),
      [100, 500, 2_000, 2_000],
    );
    assert.equal(reconnectDelayMs(3), 300);
  });

  it('reads password, database and TLS from the URL', () => {
    const plain = inert(createRedisClient({ url: 'redis://:s%40cret@127.0.0.1:1/4', ...timeouts }));
    assert.ok(plain instanceof Redis);
    assert.equal(plain.options.password, 's@cret');
    assert.equal(plain.options.db, 4);
    assert.equal(plain.options.tls, undefined);
    const tls = inert(createRedisClient({ url: 'rediss://user:pw@127.0.0.1:1', ...timeouts }));
    assert.ok(tls instanceof Redis);
    assert.equal(tls.options.username, 'user');
    assert.ok(tls.options.tls);
  });

  it('connects to the database the URL names', async () => {
    const url = new URL(redisUrl());
    url.pathname = '/3';
    const store = await connectStoreAt(url.toString());
    const onDb3 = new Redis(url.toString());
    const key = createKeys(randomKeyPrefix()).teamBucket('db', 'rpm');
    try {
      await store.take([{ bucket: { key, capacity: 5, refillPerSecond: 1 }, cost: 1 }]);
      assert.equal(await onDb3.exists(key), 1);
    } finally {
      await onDb3.del(key);
      await onDb3.quit();
      await store.close();
    }
  });

  it('builds a Cluster client with the same fail-fast settings and the URL credentials', () => {
    const client = inert(
      createRedisClient({
        url: 'rediss://:pw@ignored:1/2',
        cluster: { nodes: [{ host: '127.0.0.1', port: 1 }] },
        ...timeouts,
      }),
    );
    assert.ok(client instanceof Cluster);
    assert.equal(client.options.enableOfflineQueue, false);
    assert.equal(client.options.clusterRetryStrategy!(50), 2_000);
    assert.equal(client.options.redisOptions?.commandTimeout, commandTimeoutBackstopMs(150));
    assert.equal(client.options.redisOptions?.maxRetriesPerRequest, 0);
    assert.equal(client.options.redisOptions?.password, 'pw');
    assert.ok(client.options.redisOptions?.tls);
    // A cluster has database 0 only.
    assert.equal(client.options.redisOptions?.db, undefined);
  });

  it('builds a Sentinel client: Sentinels, master group, and one password for both by default', () => {
    const client = inert(
      createRedisClient({
        sentinel: { name: 'mymaster', sentinels: [{ host: '127.0.0.1', port: 1 }], password: 'spw' },
        ...timeouts,
      }),
    );
    assert.ok(client instanceof Redis);
    assert.equal(client.options.name, 'mymaster');
    assert.equal(client.options.sentinelPassword, 'spw');
    assert.equal(client.options.password, 'spw');
    assert.equal(client.options.enableOfflineQueue, false);
  });

  it('refuses sentinel and cluster together', () => {
    assert.throws(
      () =>
        createRedisClient({
          sentinel: { name: 'm', sentinels: [{ host: 'h', port: 1 }] },
          cluster: { nodes: [{ host: 'h', port: 1 }] },
          ...timeouts,
        }),
      /either sentinel or cluster/,
    );
  });
});
