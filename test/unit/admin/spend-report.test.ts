// Spend reports from the daily counters: the date range rules (400s naming the param), totals
// grouped by UTC day with empty days kept, one-dimension filters, and team budgets with what
// is used, reserved and left in the current period.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { readSpend, resolveRange } from '../../../src/admin/spend-report.js';
import { readTeamStatus } from '../../../src/admin/team-status.js';
import type { TeamConfig } from '../../../src/config/schema.js';
import { GatewayError } from '../../../src/errors.js';
import { MemoryStore } from '../../../src/stores/memory-store.js';
import { recordKeys, recordSpend, spend } from './helpers.js';

const at = (iso: string) => Date.parse(iso);

function rejectsParam(fn: () => unknown, param: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof GatewayError);
    assert.equal(err.status, 400);
    assert.equal(err.param, param);
    return true;
  });
}

describe('spend date range', () => {
  const now = at('2026-11-25T13:00:00Z');

  it('defaults to the 30 days up to today (UTC), inclusive', () => {
    const r = resolveRange(undefined, undefined, now);
    assert.equal(r.from, '2026-10-27');
    assert.equal(r.to, '2026-11-25');
    assert.equal(r.days.length, 30);
    assert.deepEqual(resolveRange('2026-02-27', '2026-03-01', now).days, [
      '2026-02-27',
      '2026-02-28',
      '2026-03-01',
    ]);
  });

  it('refuses malformed and impossible dates, reversed and over-long ranges, naming the param', () => {
    rejectsParam(() => resolveRange('2026-1-01', undefined, now), 'from');
    rejectsParam(() => resolveRange(undefined, '2026-02-30', now), 'to');
    rejectsParam(() => resolveRange(undefined, 'yesterday', now), 'to');
    rejectsParam(() => resolveRange('2026-11-26', '2026-11-25', now), 'from');
    rejectsParam(() => resolveRange('2025-01-01', '2026-01-02', now), 'from');
    assert.equal(resolveRange('2024-01-01', '2024-12-31', now).days.length, 366, 'a leap year fits');
  });
});

describe('spend report', () => {
  const keys = recordKeys();

  async function seeded() {
    const store = new MemoryStore();
    // Day 1: two requests of key k1 (one with a feature), one of k2 on another model.
    await recordSpend(
      store,
      keys,
      spend({
        team: 'search',
        keyId: 'k1',
        costMicros: 1_500,
        promptTokens: 100,
        completionTokens: 10,
        feature: 'faq',
      }),
      at('2026-11-01T00:00:00Z'),
    );
    await recordSpend(
      store,
      keys,
      spend({ team: 'search', keyId: 'k1', costMicros: 2_500, promptTokens: 200, completionTokens: 20 }),
      at('2026-11-01T23:59:59Z'),
    );
    await recordSpend(
      store,
      keys,
      spend({
        team: 'search',
        keyId: 'k2',
        model: 'gpt-4o',
        costMicros: 10_000,
        promptTokens: 50,
        completionTokens: 50,
      }),
      at('2026-11-01T12:00:00Z'),
    );
    // Day 3: a cache hit that saved money; day 2 has nothing.
    await recordSpend(
      store,
      keys,
      spend({ team: 'search', keyId: 'k2', savedMicros: 700, promptTokens: 30, completionTokens: 3 }),
      at('2026-11-03T08:00:00Z'),
    );
    // Another team, same day: only in reports that cover it.
    await recordSpend(
      store,
      keys,
      spend({ team: 'ops', keyId: 'k9', costMicros: 1_000_000, promptTokens: 1, completionTokens: 1 }),
      at('2026-11-01T10:00:00Z'),
    );
    return store;
  }

  const days = ['2026-11-01', '2026-11-02', '2026-11-03'];
  const base = { from: '2026-11-01', to: '2026-11-03', filter: undefined };

  it('totals a team by UTC day, keeps empty days, and breaks the range down by key, model and feature', async () => {
    const store = await seeded();
    const r = await readSpend(store, keys, { ...base, teams: ['search'], team: 'search' }, days);
    assert.deepEqual(
      r.days.map((d) => [d.date, d.requests, d.prompt_tokens, d.completion_tokens, d.cost_usd, d.saved_usd]),
      [
        ['2026-11-01', 3, 350, 80, 0.014, 0],
        ['2026-11-02', 0, 0, 0, 0, 0],
        ['2026-11-03', 1, 30, 3, 0, 0.0007],
      ],
    );
    assert.equal(r.total.requests, 4);
    assert.equal(r.total.cost_usd, 0.014);
    assert.equal(r.total.tokens, 463);
    assert.equal(r.by_key!.k1!.cost_usd, 0.004);
    assert.equal(r.by_key!.k2!.requests, 2);
    assert.equal(r.by_model!['gpt-4o']!.cost_usd, 0.01);
    assert.equal(r.by_model!['gpt-4o-mini']!.requests, 3);
    assert.deepEqual(Object.keys(r.by_feature!), ['faq']);
    assert.equal(r.by_team, undefined);
    assert.equal(r.team, 'search');
  });

  it('filters by one key, and then shows no breakdown by other dimensions', async () => {
    const store = await seeded();
    const r = await readSpend(
      store,
      keys,
      { ...base, teams: ['search'], team: 'search', filter: { dimension: 'key', name: 'k1' } },
      days,
    );
    assert.deepEqual(r.filter, { key: 'k1' });
    assert.deepEqual(
      r.days.map((d) => d.requests),
      [2, 0, 0],
    );
    assert.equal(r.total.cost_usd, 0.004);
    assert.equal(r.by_model, undefined);
  });

  it('sums every team when none is named, with a total per team', async () => {
    const store = await seeded();
    const r = await readSpend(store, keys, { ...base, teams: ['search', 'ops'], team: undefined }, days);
    assert.equal(r.team, null);
    assert.equal(r.days[0]!.requests, 4);
    assert.equal(r.total.cost_usd, 1.014);
    assert.equal(r.by_team!.ops!.cost_usd, 1);
    assert.equal(r.by_team!.search!.requests, 4);
  });
});

describe('team status', () => {
  const keys = recordKeys();
  const team: TeamConfig = {
    name: 'search',
    models: ['*'],
    tier: undefined,
    cache: { enabled: undefined, ttlSeconds: undefined },
    limits: {
      rpm: 60,
      tpm: 100000,
      concurrency: undefined,
      maxWaitMs: 0,
      perKey: { rpm: 10, tpm: undefined },
      models: {},
    },
    budgets: [
      { period: 'month', usd: 10, tokens: undefined, thresholds: [80] },
      { period: 'day', usd: undefined, tokens: 1000, thresholds: [50, 80, 100] },
    ],
    keys: [
      {
        id: 'k1',
        sha256: 'a'.repeat(64),
        budgets: [{ period: 'week', usd: 1, tokens: undefined, thresholds: [] }],
      },
    ],
  };
  const now = at('2026-11-25T13:00:00Z');

  it('shows limits, and each budget with used, reserved and remaining in its current period', async () => {
    const store = new MemoryStore();
    await recordSpend(
      store,
      keys,
      spend({ team: 'search', keyId: 'k1', costMicros: 2_500_000, promptTokens: 300, completionTokens: 100 }),
      now - 3_600_000,
    );
    // A request in flight has reserved $0.5 and 200 tokens of the month and the day.
    await store.reserve(
      { key: keys.teamBudgetLeases('search'), id: 'req-1', ms: 60_000 },
      [
        {
          key: keys.teamSpend('search', 'm:2026-11'),
          spentField: 'cost',
          reservedField: 'cost:r',
          limit: 10_000_000,
          amount: 500_000,
        },
        {
          key: keys.teamSpend('search', 'd:2026-11-25'),
          spentField: 'tokens',
          reservedField: 'tokens:r',
          limit: 1000,
          amount: 200,
        },
      ],
      86_400_000,
    );
    const [status] = await readTeamStatus(
      store,
      keys,
      [
        {
          name: 'search',
          config: team,
          keys: [{ id: 'k1', source: 'config', createdAt: undefined, revokedAt: undefined }],
        },
      ],
      now,
    );
    assert.deepEqual(status!.limits, {
      rpm: 60,
      tpm: 100000,
      concurrency: null,
      max_wait_ms: 0,
      per_key: { rpm: 10, tpm: null },
      models: {},
    });
    assert.deepEqual(status!.keys, { active: 1, revoked: 0 });
    const [month, day, week] = status!.budgets;
    assert.deepEqual(month, {
      scope: 'team',
      key_id: null,
      period: 'month',
      period_id: 'm:2026-11',
      resets_at: '2026-12-01T00:00:00.000Z',
      usd: { limit: 10, used: 2.5, reserved: 0.5, remaining: 7 },
      tokens: null,
      thresholds: [80],
    });
    assert.deepEqual(day!.tokens, { limit: 1000, used: 400, reserved: 200, remaining: 400 });
    assert.equal(day!.resets_at, '2026-11-26T00:00:00.000Z');
    assert.equal(week!.scope, 'key');
    assert.equal(week!.key_id, 'k1');
    assert.equal(week!.period_id, 'w:2026-W48');
    assert.deepEqual(week!.usd, { limit: 1, used: 2.5, reserved: 0, remaining: 0 }, 'overspent: none left');
  });

  it("leaves out a revoked key's budget", async () => {
    const [status] = await readTeamStatus(
      new MemoryStore(),
      keys,
      [
        {
          name: 'search',
          config: team,
          keys: [{ id: 'k1', source: 'config', createdAt: undefined, revokedAt: 1 }],
        },
      ],
      now,
    );
    assert.deepEqual(status!.keys, { active: 0, revoked: 1 });
    assert.ok(status!.budgets.every((b) => b.scope === 'team'));
  });
});
