// The budget stage's behaviour on a Store: reservations against team and key budgets, the
// insufficient_quota refusal, and at most one request past a budget under concurrency.
// budget.test.ts runs it on MemoryStore and test/stores/redis-cluster.test.ts on a RedisStore
// over a Redis Cluster (the reserve script's lease set and spend hashes share one hash slot).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import type { BudgetConfig, TeamConfig } from '../../../src/config/schema.js';
import { GatewayError } from '../../../src/errors.js';
import { createBudgetStage } from '../../../src/pipeline/stages/budget.js';
import type { Outcome, PipelineContext } from '../../../src/pipeline/types.js';
import { createKeys } from '../../../src/stores/keys.js';
import type { Store } from '../../../src/stores/store.js';
import { makePipelineContext } from '../../helpers/pipeline-context.js';

const NOW = Date.parse('2026-11-25T13:00:00Z');
const ctx = (keyId = 'k1'): PipelineContext => makePipelineContext({ keyId });

const budget = (b: Partial<BudgetConfig>): BudgetConfig => ({
  period: 'month',
  usd: undefined,
  tokens: undefined,
  thresholds: [50, 80, 100],
  ...b,
});

function team(budgets: BudgetConfig[], keyBudgets: BudgetConfig[] = []): TeamConfig {
  return {
    name: 'search',
    keys: [
      { id: 'k1', sha256: 'a'.repeat(64), budgets: keyBudgets },
      { id: 'k2', sha256: 'b'.repeat(64), budgets: [] },
    ],
    models: ['*'],
    tier: undefined,
    limits: undefined,
    cache: { enabled: undefined, ttlSeconds: undefined },
    budgets,
  };
}

const ok: Outcome = { kind: 'json', status: 200, headers: {}, body: {}, usage: undefined };

function setupOn(store: Store, t: TeamConfig, estimate = { micros: 300_000, tokens: 500 }) {
  // A prefix of its own: the store may be shared by every test.
  const keys = createKeys(`tg:test:${randomBytes(6).toString('hex')}:`);
  const stage = createBudgetStage(
    { store, keys, estimate: () => estimate, now: () => NOW },
    { teams: [t], leaseMs: 60_000, retentionMs: 86_400_000 },
  );
  const run = (c = ctx()) => stage(c, async () => ok);
  return { store, stage, run, keys };
}

/**
 * Registers the suite. `storeFor` gives the store of one test, given the stage's clock (a fresh
 * store, or one shared by all: every test uses keys under a prefix of its own).
 */
export function runBudgetStageSuite(storeName: string, storeFor: (now: () => number) => Store): void {
  const setup = (t: TeamConfig, estimate?: { micros: number; tokens: number }) =>
    setupOn(
      storeFor(() => NOW),
      t,
      estimate,
    );

  describe(`budget stage on ${storeName}`, () => {
    it('passes teams without budgets straight through, without a store call', async () => {
      const { run } = setup(team([]));
      const c = ctx();
      assert.equal(await run(c), ok);
      assert.equal(c.budgetLeaseId, undefined);
    });

    it("reserves the estimate against the team's month and leaves the lease for accounting", async () => {
      const { run, store, keys } = setup(team([budget({ usd: 1 })]));
      const c = ctx();
      await run(c);
      assert.equal(c.budgetLeaseId, c.holderId);
      const [month] = await store.readCounters([keys.teamSpend('search', 'm:2026-11')]);
      assert.deepEqual(month, { 'cost:r': 300_000 });
    });

    it('refuses with insufficient_quota and x-should-retry: false once spent + reserved reaches the limit', async () => {
      const { run, store, keys } = setup(team([budget({ usd: 1 })]));
      await store.settle(
        keys.teamBudgetLeases('search'),
        [],
        [{ key: keys.teamSpend('search', 'm:2026-11'), field: 'cost', by: 1_000_000 }],
        60_000,
      );
      const c = ctx();
      await assert.rejects(run(c), (err: unknown) => {
        assert.ok(err instanceof GatewayError);
        assert.equal(err.status, 429);
        assert.equal(err.code, 'insufficient_quota');
        assert.equal(err.type, 'insufficient_quota');
        assert.equal(err.headers['x-should-retry'], 'false');
        assert.match(err.message, /monthly budget of \$1\.00/);
        assert.match(err.message, /2026-12-01T00:00:00.000Z/);
        return true;
      });
      assert.equal(c.logFields.budget_exhausted, 'team:month:usd');
    });

    it("checks a key's own budget only for that key, and token budgets by tokens", async () => {
      const { run } = setup(team([], [budget({ period: 'day', tokens: 1000 })]));
      await run(ctx('k1'));
      await run(ctx('k1')); // 500 + 500 reserved: the day's 1000 tokens are spoken for
      await assert.rejects(
        run(ctx('k1')),
        /Key 'k1' of team 'search' has used its daily budget of 1000 tokens/,
      );
      await run(ctx('k2'));
    });

    it('admits at most one request past the budget when many arrive at once', async () => {
      const { run } = setup(team([budget({ usd: 1 })]));
      const results = await Promise.allSettled(Array.from({ length: 20 }, () => run()));
      // 0, 0.3, 0.6, 0.9 are below $1: four admitted, the fourth may end at $1.20.
      assert.equal(results.filter((r) => r.status === 'fulfilled').length, 4);
    });
  });
}
