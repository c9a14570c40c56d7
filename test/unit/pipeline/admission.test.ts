// Admission in one store call: the limits stage, given the budget planner, asks the store once
// per request (admit) for its rate buckets, concurrency slot and budget reservation, and reports
// what refused: a spent budget (insufficient_quota), a rate limit, or the concurrency cap. A
// refusal charges nothing anywhere.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { BudgetConfig, TeamConfig, TeamLimitsConfig } from '../../../src/config/schema.js';
import { GatewayError } from '../../../src/errors.js';
import { SpendWriter } from '../../../src/accounting/spend-writer.js';
import { periodNames } from '../../../src/accounting/periods.js';
import { compose } from '../../../src/pipeline/index.js';
import { createAccountingStage } from '../../../src/pipeline/stages/accounting.js';
import { createBudgetPlanner } from '../../../src/pipeline/stages/budget.js';
import { createCacheStage } from '../../../src/pipeline/stages/cache.js';
import { createLimits, createLimitsStage } from '../../../src/pipeline/stages/limits.js';
import type { Outcome, PipelineContext } from '../../../src/pipeline/types.js';
import { createKeys } from '../../../src/stores/keys.js';
import { countingStore } from '../../helpers/counting-store.js';
import { createLogSink } from '../../helpers/log-sink.js';
import { makePipelineContext } from '../../helpers/pipeline-context.js';
const NO_AHEAD = { tickets: 0, maxAgeMs: 2_000, headroom: 0.5 };

const DAY_MS = 86_400_000;

/** Retries `check` until it passes (work that happens after the response), failing after 2 s. */
async function eventually(check: () => unknown): Promise<void> {
  const deadline = Date.now() + 2_000;
  for (;;) {
    try {
      await check();
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 5));
    }
  }
}

function setup(budget: Partial<BudgetConfig>, limits: Partial<TeamLimitsConfig> | null) {
  const { store, calls } = countingStore();
  const keys = createKeys(`tg:test:${Math.random()}:`);
  const team = {
    name: 'search',
    keys: [{ id: 'k1', sha256: 'x', budgets: [] }],
    budgets: [{ period: 'day', usd: undefined, tokens: undefined, thresholds: [], ...budget }],
    limits: limits && {
      rpm: 100,
      tpm: 100_000,
      concurrency: undefined,
      maxWaitMs: 0,
      perKey: { rpm: 100, tpm: undefined },
      models: {},
      ...limits,
    },
  } as unknown as TeamConfig;
  const planner = createBudgetPlanner(
    { keys, estimate: () => ({ micros: 1_000, tokens: 50 }) },
    { teams: [team], leaseMs: 60_000, retentionMs: DAY_MS },
  );
  const stage = createLimitsStage(
    { store, keys, log: createLogSink().log, budget: planner },
    {
      teams: [team],
      limits: { bytesPerToken: 3, expectedCompletionTokens: 100, admitAhead: NO_AHEAD },
      slotLeaseMs: 60_000,
    },
  );
  return { stage, store, calls, keys };
}

const ok: Outcome = { kind: 'json', status: 200, headers: {}, body: {}, usage: undefined };

/** Expects a 429 GatewayError with `code`, then runs `more` on it. */
async function refused429(p: Promise<unknown>, code: string, more: (e: GatewayError) => void): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof GatewayError);
    assert.equal(e.status, 429);
    assert.equal(e.code, code);
    more(e);
    return true;
  });
}

/** A first request admitted and held in flight until release() (its slot and reservation kept). */
async function holdOne(stage: ReturnType<typeof setup>['stage']) {
  let release!: () => void;
  const ctx = makePipelineContext();
  const held = stage(ctx, () => new Promise<Outcome>((r) => (release = () => r(ok))));
  await new Promise((r) => setImmediate(r));
  return { release, held, ctx };
}

/**
 * Cache and limits stages for one team with a USD budget, RPM/TPM and a concurrency cap of 1,
 * over a counting MemoryStore: what a miss with every stage on goes through.
 */
function cacheAndLimits() {
  const { store, calls } = countingStore();
  const keys = createKeys(`tg:test:${Math.random()}:`);
  const log = createLogSink().log;
  const team = {
    name: 'search',
    keys: [{ id: 'k1', sha256: 'x', budgets: [] }],
    budgets: [{ period: 'day', usd: 10, tokens: undefined, thresholds: [] }],
    limits: { rpm: 100, tpm: 100_000, concurrency: 1, maxWaitMs: 0, perKey: undefined, models: {} },
  } as unknown as TeamConfig;
  const limits = createLimits(
    {
      store,
      keys,
      log,
      budget: createBudgetPlanner(
        { keys, estimate: () => ({ micros: 1_000, tokens: 50 }) },
        { teams: [team], leaseMs: 60_000, retentionMs: DAY_MS },
      ),
    },
    {
      teams: [team],
      limits: { bytesPerToken: 3, expectedCompletionTokens: 100, admitAhead: NO_AHEAD },
      slotLeaseMs: 60_000,
    },
  );
  const cache = createCacheStage(
    { store, keys, log, admission: limits.admitter },
    {
      ttlSecondsFor: () => 60,
      maxEntryBytes: 1 << 20,
      cacheSampled: false,
      scopeFor: (t) => t,
      maxTtlSeconds: 3600,
    },
  );
  return { store, calls, keys, log, limits, cache };
}

describe('admission in one store call (limits stage with the budgets)', () => {
  it('asks the store once per request: buckets, slot and budget in one admit', async () => {
    const { stage, calls } = setup({ usd: 10, tokens: 1_000_000 }, { concurrency: 5 });
    const ctx = makePipelineContext();
    let reached = 0;
    await stage(ctx, async () => {
      reached++;
      // Before the upstream call: one admit and nothing else.
      assert.deepEqual([...calls.entries()], [['admit', 1]]);
      return ok;
    });
    assert.equal(reached, 1);
    assert.equal(ctx.budgetLeaseId, ctx.holderId, 'the reservation is recorded for accounting to settle');
    for (const op of ['take', 'reserve', 'acquire']) assert.equal(calls.get(op), undefined, op);
  });

  it('answers a spent budget with insufficient_quota and the rate headers, charging nothing', async () => {
    const { stage, store, keys } = setup({ usd: 0.001 }, { concurrency: 1 });
    // The first request reserves the whole budget (1,000 µ$ = $0.001) and holds the only slot.
    const { release, held } = await holdOne(stage);
    const second = makePipelineContext();
    await refused429(
      stage(second, async () => ok),
      'insufficient_quota',
      (e) => assert.ok(e.headers['x-ratelimit-limit-requests'], 'rate headers on a budget refusal'),
    );
    assert.equal(second.logFields.budget_exhausted, 'team:day:usd');
    assert.equal(second.budgetLeaseId, undefined);
    // Nothing of the refused request was charged: one request taken from the RPM bucket.
    const rpm = await store.take([
      {
        bucket: { key: keys.teamBucket('search', 'rpm'), capacity: 100, refillPerSecond: 100 / 60 },
        cost: 0,
      },
    ]);
    assert.equal(Math.round(rpm.buckets[0]!.remaining), 99);
    release();
    await held;
  });

  it('holds slot and reservation under an id of its own: a client reusing its x-request-id gets no second slot', async () => {
    // Bug: both were held under the request id, which a client may set itself. Two requests in
    // flight with one id shared the only slot, and the second's reservation overwrote the first's.
    const { stage, store, keys } = setup({ usd: 10 }, { concurrency: 1 });
    const { release, held, ctx: first } = await holdOne(stage);
    const second = makePipelineContext({ reqId: first.reqId });
    await refused429(
      stage(second, async () => ok),
      'rate_limit_exceeded',
      (e) => assert.match(e.message, /Concurrency limit reached/),
    );
    assert.notEqual(first.holderId, undefined);
    assert.notEqual(first.holderId, first.reqId);
    release();
    await held;
    await new Promise((r) => setImmediate(r)); // the slot is freed at the end of the turn
    // A third with the same id once the first is over: admitted, its own reservation.
    const third = makePipelineContext({ reqId: first.reqId });
    await stage(third, async () => ok);
    assert.notEqual(third.holderId, first.holderId);
    const [spend] = await store.readCounters([
      keys.teamSpend('search', `d:${new Date().toISOString().slice(0, 10)}`),
    ]);
    assert.equal(spend!['cost:r'], 2_000, 'two reservations stand (nothing here settles them), not one');
  });

  it('answers the concurrency cap with a 429, reserving no budget', async () => {
    const { stage, store, keys } = setup({ usd: 10 }, { concurrency: 1 });
    const { release, held, ctx: first } = await holdOne(stage);
    const second = makePipelineContext();
    await refused429(
      stage(second, async () => ok),
      'rate_limit_exceeded',
      (e) => assert.match(e.message, /Concurrency limit reached/),
    );
    assert.equal(second.logFields.limited_by, 'concurrency');
    const [spend] = await store.readCounters([
      keys.teamSpend('search', `d:${new Date().toISOString().slice(0, 10)}`),
    ]);
    assert.equal(spend!['cost:r'], 1_000, 'only the first request reserved its estimated cost');
    release();
    await held;
    // The slot is free again once the first request is over. It holds a budget reservation, so
    // its release waits for the accounting stage's settle call (not in this pipeline) until the
    // end of the turn, and then goes on its own.
    assert.ok(first.settleAlso?.release, 'the release is left for the settle call');
    await new Promise((r) => setImmediate(r));
    assert.equal(first.settleAlso?.release, undefined, 'then it went on its own');
    await stage(makePipelineContext(), async () => ok);
  });

  it('admits a team that has budgets and no limits with one admit too', async () => {
    const { stage, calls } = setup({ tokens: 1_000 }, null);
    const ctx = makePipelineContext();
    await stage(ctx, async () => ok);
    assert.equal(calls.get('admit'), 1);
  });

  it('gives back and stores in one settle call after the response: spend, reservation, refund, slot, cache entry', async () => {
    const { store, calls, keys, log, limits, cache } = cacheAndLimits();
    const spend = new SpendWriter({ store, keys, log }, { retentionMs: DAY_MS, flushMs: 0 });
    const accounting = createAccountingStage(
      {
        keys,
        spend,
        pricing: { costMicros: () => 400, modelCostMicros: () => 400 },
        tokens: { countChat: async () => 0, countText: async () => 0 },
      },
      { hourly: false },
    );
    const completion = {
      id: 'c',
      object: 'chat.completion',
      choices: [{ index: 0, message: { role: 'assistant', content: 'hi' }, finish_reason: 'stop' }],
      usage: { prompt_tokens: 5, completion_tokens: 1, total_tokens: 6 },
    };
    let upstream = 0;
    const next = compose([accounting, cache, limits.stage], async (ctx) => {
      upstream++;
      ctx.deployment = { id: 'openai/m', provider: 'openai' } as unknown as PipelineContext['deployment'];
      return {
        kind: 'json',
        status: 200,
        headers: {},
        body: Buffer.from(JSON.stringify(completion)),
        parsed: completion,
        usage: completion.usage,
      };
    });
    const request = (content: string) =>
      makePipelineContext({ body: { model: 'm', temperature: 0, messages: [{ role: 'user', content }] } });
    await next(request('q'));
    // The spend is added at the end of the turn, after the answer is written.
    await new Promise((resolve) => setImmediate(resolve));
    await spend.flush();
    assert.equal(calls.get('admit'), 1);
    for (const op of ['release', 'adjust', 'cacheSet'])
      assert.equal(calls.get(op), undefined, `no ${op} call of its own`);
    // Its own settle (reservation, budget counter, refund, slot, entry), then the team's batch.
    assert.equal(calls.get('settle'), 2);
    const [day] = await store.readCounters([keys.teamSpend('search', periodNames(Date.now()).day)]);
    assert.equal(day!.cost, 400);
    assert.equal(day!['cost:r'], 0, 'the reservation is released');
    const tpm = await store.adjust([
      {
        bucket: { key: keys.teamBucket('search', 'tpm'), capacity: 100_000, refillPerSecond: 100_000 / 60 },
        cost: 0,
      },
    ]);
    assert.ok(
      tpm[0]!.remaining > 100_000 - 10,
      `the estimate is refunded down to the 6 tokens used: ${tpm[0]!.remaining}`,
    );
    // The entry is stored: the same request is a hit.
    const again = request('q');
    await next(again);
    assert.equal(again.logFields.cache, 'HIT');
    assert.equal(upstream, 1);
    // The only slot is free again at once.
    await next(request('another'));
    assert.equal(upstream, 2);
  });

  describe('started by the cache stage with its read', () => {
    /** cache -> limits -> an upstream that answers a complete, cacheable completion. */
    function composed() {
      const { store, calls, keys, limits, cache } = cacheAndLimits();
      let upstream = 0;
      const completion = {
        id: 'c',
        object: 'chat.completion',
        choices: [{ index: 0, message: { role: 'assistant', content: 'hi' }, finish_reason: 'stop' }],
        usage: { prompt_tokens: 5, completion_tokens: 1, total_tokens: 6 },
      };
      const run = (
        ctx = makePipelineContext({
          body: { model: 'm', temperature: 0, messages: [{ role: 'user', content: 'q' }] },
        }),
      ) =>
        cache(ctx, (c) =>
          limits.stage(c, async () => {
            upstream++;
            const body = Buffer.from(JSON.stringify(completion));
            return {
              kind: 'json',
              status: 200,
              headers: {},
              body,
              parsed: completion,
              usage: completion.usage,
            };
          }),
        );
      const rpmLeft = async () =>
        (
          await store.take([
            {
              bucket: { key: keys.teamBucket('search', 'rpm'), capacity: 100, refillPerSecond: 100 / 60 },
              cost: 0,
            },
          ])
        ).buckets[0]!.remaining;
      const reserved = async () =>
        (
          await store.readCounters([keys.teamSpend('search', `d:${new Date().toISOString().slice(0, 10)}`)])
        )[0]!['cost:r'] ?? 0;
      return { run, calls, upstream: () => upstream, rpmLeft, reserved, store, keys };
    }

    it('a miss: the admission goes out with the read, once, and the request is charged once', async () => {
      const x = composed();
      const ctx = makePipelineContext({
        body: { model: 'm', temperature: 0, messages: [{ role: 'user', content: 'q' }] },
      });
      const pending = x.run(ctx);
      // Both store calls were made in the same turn, before either answered.
      assert.deepEqual([...x.calls.keys()].sort(), ['admit', 'cacheGet']);
      await pending;
      assert.equal(x.calls.get('admit'), 1);
      assert.equal(x.upstream(), 1);
      assert.equal(Math.round(await x.rpmLeft()), 99);
      assert.equal(ctx.budgetLeaseId, ctx.holderId);
    });

    it('a hit: whatever the early admission took is given back (limits do not apply to hits)', async () => {
      const x = composed();
      await x.run();
      // The entry is written after the response, the miss's slot freed with it: on a loaded
      // machine later than a fixed sleep.
      await eventually(() => assert.equal(x.calls.get('cacheSet'), 1));
      const ctx = makePipelineContext({
        body: { model: 'm', temperature: 0, messages: [{ role: 'user', content: 'q' }] },
      });
      const hit = await x.run(ctx);
      assert.equal(hit.headers['x-tollgate-cache'], 'HIT');
      assert.equal(x.upstream(), 1);
      assert.equal(x.calls.get('admit'), 2, 'the hit was admitted early too');
      // Only the miss is charged: its RPM, and its slot is free again (concurrency 1).
      await eventually(async () => assert.equal(Math.round(await x.rpmLeft()), 99));
      const slot = await x.store.acquire(x.keys.teamConcurrency('search'), 'probe', 1, 1_000);
      assert.equal(slot.acquired, true, 'the hit gave its slot back');
      // The miss's reservation stands (accounting settles it; not in this test), the hit's is gone.
      assert.equal(await x.reserved(), 1_000);
      assert.equal(ctx.budgetLeaseId, undefined);
    });
  });
});
