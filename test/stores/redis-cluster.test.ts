// RedisStore on a real Redis Cluster: three masters of this file's own
// (test/helpers/redis-cluster.ts), reached through createRedisClient({ cluster }) as the gateway
// reaches them. The Store contract and the limits and budget stage suites run on it unchanged.
// CLUSTER KEYSLOT shows that the keys each script takes together share one slot, so a CROSSSLOT
// error cannot happen (not merely did not happen here), and the teams' keys spread over every
// master, so a store that piled all keys into one slot, or that talked to one node only, fails.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Cluster, Redis } from 'ioredis';
import { periodOf, hourOf } from '../../src/accounting/periods.js';
import { spendIncrements } from '../../src/accounting/spend.js';
import { parseConfig } from '../../src/config/load.js';
import { createRedisClient } from '../../src/stores/connect.js';
import { createStore } from '../../src/stores/create-store.js';
import { createKeys, type Keys } from '../../src/stores/keys.js';
import { leaseAmountsKey, RedisStore } from '../../src/stores/redis-store.js';
import type { Store } from '../../src/stores/store.js';
import { createLogSink } from '../helpers/log-sink.js';
import { startRedisCluster, type StartedRedisCluster } from '../helpers/redis-cluster.js';
import { runBudgetStageSuite } from '../unit/pipeline/budget.suite.js';
import { runLimitsStageSuite } from '../unit/pipeline/limits.suite.js';
import { randomKeyPrefix, runStoreContract, waitUntilReady } from './store.contract.js';

describe('on a Redis Cluster of three masters', () => {
  let cluster: StartedRedisCluster;
  /** One store for the stage suites and the slot checks; the contract connects its own. */
  let shared: RedisStore;

  async function connectStore(): Promise<RedisStore> {
    // Generous timeouts: this file tests behaviour, resilient-store.test.ts tests outages.
    const client = createRedisClient({
      cluster: { nodes: cluster.nodes.slice(0, 1) },
      commandTimeoutMs: 2_000,
      connectTimeoutMs: 2_000,
    });
    await waitUntilReady(client);
    return new RedisStore(client);
  }

  before(async () => {
    cluster = await startRedisCluster();
    shared = await connectStore();
  });
  after(async () => {
    await shared?.close();
    await cluster?.stop();
  });

  runStoreContract('RedisStore on a Redis Cluster', async () => {
    const store = await connectStore();
    // No cleanup of keys: the cluster goes with this file.
    return { store, keys: createKeys(randomKeyPrefix()), cleanup: () => store.close() };
  });
  runLimitsStageSuite('a Redis Cluster', () => shared);
  runBudgetStageSuite('a Redis Cluster', () => shared);

  describe('keys and slots', () => {
    const prefix = randomKeyPrefix();
    const keys: Keys = createKeys(prefix);
    const client = (): Cluster => shared.client as Cluster;
    const slotOf = async (key: string): Promise<number> =>
      Number(await client().call('CLUSTER', 'KEYSLOT', key));
    /** Asserts that `family` (the keys one script call takes) lives in one slot; returns it. */
    async function oneSlot(family: string[], what: string): Promise<number> {
      const slots = new Set(await Promise.all(family.map(slotOf)));
      assert.equal(slots.size, 1, `${what} spans slots ${[...slots].join(', ')}: ${family.join(', ')}`);
      return [...slots][0]!;
    }
    // Team names as config allows them, and deployment ids holding what provider and model names may.
    const teams = ['acme', 'team-with-dashes', 'a.b_c', 'X9'];
    const deployments = ['openai/gpt-4o', 'azure/{east}/gpt-4o', 'anthropic:claude-3-5-sonnet@eu'];
    const NOW = Date.parse('2026-11-25T13:30:00Z');
    const HOUR = 3_600_000;

    it("keeps every key a team's scripts take together in one slot, and runs those scripts", async () => {
      for (const team of teams) {
        // 1. limits (take, adjust): the team's, its keys' and its models' buckets in one call.
        const buckets = ['rpm', 'tpm', 'key:k_123:rpm', 'key:k_123:tpm', 'model:gpt-4o-mini:tpm'].map(
          (name) => ({ key: keys.teamBucket(team, name), capacity: 100, refillPerSecond: 1 }),
        );
        const slot = await oneSlot(
          buckets.map((b) => b.key),
          `${team}: limit buckets`,
        );
        assert.equal((await shared.take(buckets.map((bucket) => ({ bucket, cost: 1 })))).admitted, true);
        await shared.adjust(buckets.map((bucket) => ({ bucket, cost: -1 })));
        // The concurrency set is a script of its own, but sits with the buckets all the same.
        assert.equal(await slotOf(keys.teamConcurrency(team)), slot);
        assert.equal((await shared.acquire(keys.teamConcurrency(team), 'r1', 1, 1_000)).acquired, true);

        // 2. budgets (reserve): the lease set, its amounts and every period's spend hash.
        const leases = keys.teamBudgetLeases(team);
        const periods = (['day', 'week', 'month'] as const).map((p) =>
          keys.teamSpend(team, periodOf(p, NOW)),
        );
        await oneSlot([leases, leaseAmountsKey(leases), ...periods], `${team}: reserve`);
        const checks = periods.map((key) => ({
          key,
          spentField: 'cost',
          reservedField: 'cost:r',
          limit: 1_000_000,
          amount: 10,
        }));
        assert.equal(
          (await shared.reserve({ key: leases, id: 'r1', ms: 60_000 }, checks, HOUR)).admitted,
          true,
        );

        // 3. settle: the spend a request writes (as accounting builds it), a key record, an anomaly mark.
        const spend = spendIncrements(
          keys,
          {
            team,
            keyId: 'k_123',
            model: 'gpt-4o-mini',
            feature: 'search',
            costMicros: 1_234,
            savedMicros: 0,
            promptTokens: 100,
            completionTokens: 20,
            cachedTokens: 10,
            reasoningTokens: 5,
          },
          NOW,
          true,
        );
        assert.equal(new Set(spend.map((i) => i.key)).size, 4, 'day, week, month and hour counters');
        const increments = [
          ...spend,
          { key: keys.teamKeyRecords(team), field: 'k_456', by: 1 },
          { key: keys.teamSpend(team, hourOf(NOW)), field: 'anomaly_alerts', by: 1 },
        ];
        assert.equal(
          await oneSlot(
            [leases, leaseAmountsKey(leases), ...increments.map((i) => i.key)],
            `${team}: settle`,
          ),
          slot,
        );
        const totals = await shared.settle(leases, ['r1'], increments, HOUR);
        assert.equal(totals.length, increments.length);
      }
    });

    it("keeps a deployment's quota buckets in one slot, and runs its take", async () => {
      for (const id of deployments) {
        const buckets = (['rpm', 'tpm'] as const).map((name) => ({
          key: keys.deploymentBucket(id, name),
          capacity: 100,
          refillPerSecond: 1,
        }));
        await oneSlot(
          buckets.map((b) => b.key),
          `${id}: quota buckets`,
        );
        assert.equal((await shared.take(buckets.map((bucket) => ({ bucket, cost: 1 })))).admitted, true);
      }
    });

    it('spreads teams over every master, each team whole on one of them', async () => {
      const many = Array.from({ length: 30 }, (_, i) => `spread-${i}`);
      for (const team of many) {
        const bucket = { key: keys.teamBucket(team, 'rpm'), capacity: 10, refillPerSecond: 1 };
        await shared.take([{ bucket, cost: 1 }]);
        await shared.acquire(keys.teamConcurrency(team), 'r1', 1, 60_000);
        await shared.settle(
          keys.teamBudgetLeases(team),
          [],
          [{ key: keys.teamSpend(team, 'd:x'), field: 'cost', by: 1 }],
          HOUR,
        );
      }
      const masters = client().nodes('master');
      assert.equal(masters.length, 3);
      const held = await Promise.all(masters.map((node) => keysOn(node, `${prefix}*spread-*`)));
      assert.equal(held.flat().length, many.length * 3, 'every key was written');
      // 30 teams over 3 masters: were all on one node, the hash tags would be doing nothing useful.
      assert.ok(
        held.every((k) => k.length > 0),
        `keys per master: ${held.map((k) => k.length).join(', ')}`,
      );
      for (const team of many) {
        const nodes = held.filter((k) => k.some((key) => key.includes(`{t:${team}}`)));
        assert.equal(nodes.length, 1, `${team} is split over ${nodes.length} masters`);
      }
    });

    it('runs the gateway store from config: store.redis.cluster with its startup nodes', async () => {
      const [first] = cluster.nodes;
      const config = parseConfig(
        [
          'store:',
          '  redis:',
          `    cluster: { nodes: [{ host: ${first!.host}, port: ${first!.port} }] }`,
          `    keyPrefix: "${prefix}config:"`,
          '    commandTimeoutMs: 2000',
          '    onUnavailable: closed',
        ].join('\n'),
        'test',
        {},
      );
      const handle = createStore(config.store, createLogSink().log);
      const store: Store = handle.store;
      try {
        assert.equal(await handle.ready(5_000), true);
        assert.equal(store.kind, 'redis');
        const bucket = { key: handle.keys.teamBucket('acme', 'rpm'), capacity: 1, refillPerSecond: 0.01 };
        assert.equal((await store.take([{ bucket, cost: 1 }])).admitted, true);
        assert.equal((await store.take([{ bucket, cost: 1 }])).admitted, false);
        assert.equal(await client().exists(bucket.key), 1);
      } finally {
        await store.close();
      }
    });
  });
});

/** Every key matching `pattern` on one node (SCAN: never KEYS). */
async function keysOn(node: Redis, pattern: string): Promise<string[]> {
  const out: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    out.push(...batch);
  } while (cursor !== '0');
  return out;
}
