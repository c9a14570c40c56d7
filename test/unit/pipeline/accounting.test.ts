import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Alert, Alerter } from '../../../src/accounting/webhook.js';
import type { BudgetConfig, TeamConfig } from '../../../src/config/schema.js';
import { SpendWriter } from '../../../src/accounting/spend-writer.js';
import { createThresholdCheck } from '../../../src/accounting/thresholds.js';
import { createAccountingStage, type RequestCost } from '../../../src/pipeline/stages/accounting.js';
import type { Chunk, Deployment, Outcome, PipelineContext, Usage } from '../../../src/pipeline/types.js';
import { createKeys } from '../../../src/stores/keys.js';
import { MemoryStore } from '../../../src/stores/memory-store.js';
import { createLogSink } from '../../helpers/log-sink.js';
import { makePipelineContext } from '../../helpers/pipeline-context.js';

const keys = createKeys('tg:');
const NOW = Date.parse('2026-11-25T13:00:00Z');
const DAY = keys.teamSpend('search', 'd:2026-11-25');
const MONTH = keys.teamSpend('search', 'm:2026-11');
const dep: Deployment = { id: 'fake/gpt-4o', provider: 'fake', model: 'gpt-4o' };
const ctx = (over: Partial<PipelineContext> = {}): PipelineContext =>
  makePipelineContext({
    model: 'gpt-4o',
    body: { model: 'gpt-4o', messages: [{ role: 'user', content: 'hello there' }] },
    deployment: dep,
    attempts: 1,
    ...over,
  });

const usage = (prompt: number, completion: number): Usage => ({
  prompt_tokens: prompt,
  completion_tokens: completion,
  total_tokens: prompt + completion,
});

function team(budgets: BudgetConfig[] = []): TeamConfig {
  return {
    name: 'search',
    keys: [{ id: 'k1', sha256: 'a'.repeat(64), budgets: [] }],
    models: ['*'],
    tier: undefined,
    limits: undefined,
    cache: { enabled: undefined, ttlSeconds: undefined },
    budgets,
  };
}

function setup(opts: { budgets?: BudgetConfig[]; price?: number | null } = {}) {
  const store = new MemoryStore({ now: () => NOW });
  const alerts: Alert[] = [];
  const costs: RequestCost[] = [];
  const alerter: Alerter = { send: (a) => alerts.push(a), drain: async () => {} };
  // $1 per 1,000 tokens of any kind: 1,000 micro-dollars a token.
  const perToken = opts.price === undefined ? 1_000 : opts.price;
  // Written at the end of each turn (flushMs 0), with the threshold check the pipeline wires in.
  const spend = new SpendWriter(
    { store, keys, log: createLogSink().log },
    {
      retentionMs: 86_400_000,
      flushMs: 0,
      onSettled: createThresholdCheck([team(opts.budgets)], keys, alerter, () => NOW),
    },
  );
  const stage = createAccountingStage(
    {
      keys,
      spend,
      pricing: {
        costMicros: (_d, u) => (perToken === null ? null : perToken * u.total_tokens),
        modelCostMicros: (_m, u) => (perToken === null ? null : perToken * u.total_tokens),
      },
      tokens: {
        countChat: async () => 11,
        countText: async (_m, text) => text.split(' ').filter(Boolean).length,
      },
      onCost: (c) => costs.push(c),
      now: () => NOW,
    },
    { hourly: false },
  );
  return { store, stage, alerts, costs };
}

/**
 * After the answer: the end of the turn (spend added), the spend writer's flush (the turn after),
 * then a little time for what the writes call back. Turns first, not a timer alone: under a busy
 * loop a 5 ms timer can come due before the flush's turn.
 */
async function settled(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
  await new Promise((resolve) => setTimeout(resolve, 5));
}

async function* chunks(list: string[], fail?: Error): AsyncGenerator<Chunk> {
  for (const c of list) yield { data: c };
  if (fail) throw fail;
}
const delta = (content: string, finish: string | null = null) =>
  JSON.stringify({ choices: [{ index: 0, delta: { content }, finish_reason: finish }] });

describe('accounting stage', () => {
  it('bills a JSON answer from its usage and adds it to the counters', async () => {
    const { stage, store, costs } = setup();
    const c = ctx();
    const parsed = { choices: [{ finish_reason: 'stop' }] };
    await stage(c, async () => ({
      kind: 'json',
      status: 200,
      headers: {},
      body: {},
      parsed,
      usage: usage(100, 20),
    }));
    await settled();
    assert.equal(c.logFields.cost_usd, 0.12);
    assert.equal(c.logFields.finish_reason, 'stop');
    assert.equal(c.logFields.provider, 'fake');
    assert.equal(c.logFields.estimated, undefined);
    const [day, month] = await store.readCounters([DAY, MONTH]);
    assert.equal(day!.cost, 120_000);
    assert.equal(day!['tokens|k|k1'], 120);
    assert.equal(month!.requests, 1);
    assert.equal(costs[0]!.costMicros, 120_000);
  });

  it('fills the log fields before answering; metrics and spend wait for the end of the turn', async () => {
    const { stage, store, costs } = setup();
    const c = ctx();
    await stage(c, async () => ({ kind: 'json', status: 200, headers: {}, body: {}, usage: usage(100, 20) }));
    // The answer is back (the route writes it now): its line's fields are there, nothing else yet.
    assert.equal(c.logFields.cost_usd, 0.12);
    assert.equal(costs.length, 0, "the metrics are not on the answer's path");
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(costs.length, 1);
    assert.equal(costs[0]!.costMicros, 120_000);
    await settled();
    const [day] = await store.readCounters([DAY]);
    assert.equal(day!.cost, 120_000);
  });

  it('charges nothing for a cache hit and records what it saved', async () => {
    const { stage, store } = setup();
    const c = ctx({ deployment: undefined });
    c.logFields.cache = 'HIT';
    await stage(c, async () => ({ kind: 'json', status: 200, headers: {}, body: {}, usage: usage(100, 20) }));
    await settled();
    assert.equal(c.logFields.cost_usd, 0);
    assert.equal(c.logFields.saved_usd, 0.12);
    const [day] = await store.readCounters([DAY]);
    assert.equal(day!.cost, undefined);
    assert.equal(day!.saved, 120_000);
    assert.equal(day!.tokens, undefined, 'a hit used no tokens');
  });

  it('logs cost null (never a guess) when the price is unknown', async () => {
    const { stage, costs } = setup({ price: null });
    const c = ctx();
    await stage(c, async () => ({ kind: 'json', status: 200, headers: {}, body: {}, usage: usage(100, 20) }));
    assert.equal(c.logFields.cost_usd, null);
    await settled();
    assert.equal(costs[0]!.costMicros, null);
  });

  it('bills a stream from its usage chunk', async () => {
    const { stage } = setup();
    const c = ctx({ stream: true });
    const out = await stage(c, async () => ({
      kind: 'stream',
      status: 200,
      headers: {},
      chunks: chunks([delta('a b'), delta('', 'stop')]),
      usage: Promise.resolve(usage(50, 2)),
    }));
    assert.equal(out.kind, 'stream');
    if (out.kind !== 'stream') return;
    for await (const _ of out.chunks);
    assert.deepEqual(await out.usage, usage(50, 2));
    assert.equal(c.logFields.cost_usd, 0.052);
    assert.equal(c.logFields.finish_reason, 'stop');
  });

  it('bills an interrupted stream its counted prompt plus what was delivered, marked estimated', async () => {
    const { stage, store } = setup();
    const c = ctx({ stream: true });
    const out: Outcome = await stage(c, async () => ({
      kind: 'stream',
      status: 200,
      headers: {},
      chunks: chunks([delta('one two '), delta('three')], new Error('upstream reset')),
      usage: Promise.resolve(undefined),
    }));
    if (out.kind !== 'stream') throw new Error('expected a stream');
    await assert.rejects(async () => {
      for await (const _ of out.chunks);
    }, /upstream reset/);
    // countChat says 11 for the prompt; the fake counter counts 3 delivered words.
    assert.deepEqual(await out.usage, usage(11, 3));
    assert.equal(c.logFields.estimated, true);
    await settled();
    const [day] = await store.readCounters([DAY]);
    assert.equal(day!.cost, 14_000);
  });

  it('counts prompt and answer when the upstream reports no usage, and says so', async () => {
    const { stage } = setup();
    const c = ctx();
    const parsed = {
      choices: [{ message: { role: 'assistant', content: 'four words of answer' }, finish_reason: 'stop' }],
    };
    const out = await stage(c, async () => ({
      kind: 'json',
      status: 200,
      headers: {},
      body: {},
      parsed,
      usage: undefined,
    }));
    // countChat says 11; the fake counter counts 4 words of answer.
    assert.deepEqual(out.kind === 'json' ? out.usage : undefined, usage(11, 4));
    assert.equal(c.logFields.estimated, true);
    assert.equal(c.logFields.cost_usd, 0.015);
  });

  it('sends each budget threshold alert once, from the written batch that crossed it', async () => {
    const budgets: BudgetConfig[] = [
      { period: 'month', usd: 1, tokens: undefined, thresholds: [50, 80, 100] },
    ];
    const { stage, alerts } = setup({ budgets });
    // 30 requests of $0.10 each: $3 against a $1 budget (no budget stage here). Half arrive
    // together (one written batch), half one by one (a batch each).
    const one = () =>
      stage(ctx(), async () => ({
        kind: 'json',
        status: 200,
        headers: {},
        body: {},
        usage: usage(90, 10),
      }));
    for (let i = 0; i < 5; i++) {
      await one();
      await settled();
    }
    await Promise.all(Array.from({ length: 15 }, one));
    await settled();
    for (let i = 0; i < 10; i++) {
      await one();
      await settled();
    }
    await settled();
    assert.deepEqual(
      alerts.map((a) => (a.type === 'budget.threshold' ? a.threshold_percent : -1)).sort((a, b) => a - b),
      [50, 80, 100],
    );
    const first = alerts.find((a) => a.type === 'budget.threshold' && a.threshold_percent === 50);
    assert.deepEqual(first, {
      type: 'budget.threshold',
      team: 'search',
      period: '2026-11',
      metric: 'usd',
      threshold_percent: 50,
      limit: 1,
      used: 0.5,
    });
  });

  it('releases the budget reservation when the request fails', async () => {
    const { stage, store } = setup();
    await store.reserve(
      { key: keys.teamBudgetLeases('search'), id: 'held', ms: 60_000 },
      [{ key: MONTH, spentField: 'cost', reservedField: 'cost:r', limit: 10, amount: 5 }],
      60_000,
    );
    const c = ctx({ reqId: 'held' });
    c.budgetLeaseId = 'held';
    await assert.rejects(
      stage(c, async () => Promise.reject(new Error('boom'))),
      /boom/,
    );
    await settled();
    const [month] = await store.readCounters([MONTH]);
    assert.equal(month!['cost:r'], 0);
    assert.equal(month!.requests, 1);
  });

  it('takes the feature from the header, else from metadata, and ignores an unsafe one', async () => {
    const { stage } = setup();
    const ok = async (): Promise<Outcome> => ({
      kind: 'json',
      status: 200,
      headers: {},
      body: {},
      usage: undefined,
    });
    const a = ctx({ headers: { 'x-tollgate-feature': 'search-summary' } });
    await stage(a, ok);
    assert.equal(a.logFields.feature, 'search-summary');
    const b = ctx({ body: { model: 'gpt-4o', messages: [], metadata: { feature: 'chat' } } });
    await stage(b, ok);
    assert.equal(b.logFields.feature, 'chat');
    const bad = ctx({ headers: { 'x-tollgate-feature': 'a|b\r\n' } });
    await stage(bad, ok);
    assert.equal(bad.logFields.feature, undefined);
  });
});
