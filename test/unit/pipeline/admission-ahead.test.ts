// Admission ahead (pipeline/limits/ahead.ts through the limits stage): a request of a shape seen
// before is admitted with a ticket made after the last one settled, with no store call on its
// path, and the buckets, slots and reservations end where admitting each request on its own
// would have left them once the tickets are given back.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { BudgetConfig, TeamConfig, TeamLimitsConfig } from '../../../src/config/schema.js';
import { createBudgetPlanner } from '../../../src/pipeline/stages/budget.js';
import { createLimits } from '../../../src/pipeline/stages/limits.js';
import type { Outcome, PipelineContext } from '../../../src/pipeline/types.js';
import { createKeys, type Keys } from '../../../src/stores/keys.js';
import { MemoryStore } from '../../../src/stores/memory-store.js';
import type { Store } from '../../../src/stores/store.js';
import { countingStore } from '../../helpers/counting-store.js';
import { createLogSink } from '../../helpers/log-sink.js';
import { makePipelineContext } from '../../helpers/pipeline-context.js';

const DAY_MS = 86_400_000;

interface Setup {
  limits: ReturnType<typeof createLimits>;
  store: Store;
  keys: Keys;
  calls: Map<string, number>;
  clock: { t: number };
  up: { value: boolean };
}

/** The limits stage over a counting MemoryStore on a clock the test moves. */
function setup(
  limits: Partial<TeamLimitsConfig> | null,
  ahead: { tickets?: number; maxAgeMs?: number; headroom?: number } = {},
  budget: Partial<BudgetConfig> | undefined = { usd: 10 },
): Setup {
  const clock = { t: 1_700_000_000_000 };
  const inner = new MemoryStore({ now: () => clock.t });
  const { store, calls } = countingStore(inner);
  const keys = createKeys(`tg:test:${Math.random()}:`);
  const team = {
    name: 'search',
    keys: [{ id: 'k1', sha256: 'x', budgets: [] }],
    budgets: budget ? [{ period: 'day', usd: undefined, tokens: undefined, thresholds: [], ...budget }] : [],
    limits: limits && {
      rpm: 100,
      tpm: 100_000,
      concurrency: 10,
      maxWaitMs: 0,
      perKey: undefined,
      models: {},
      ...limits,
    },
  } as unknown as TeamConfig;
  const up = { value: true };
  const created = createLimits(
    {
      store,
      keys,
      log: createLogSink().log,
      storeUp: () => up.value,
      budget: createBudgetPlanner(
        { keys, estimate: () => ({ micros: 1_000, tokens: 50 }), now: () => clock.t },
        { teams: [team], leaseMs: 60_000, retentionMs: DAY_MS },
      ),
    },
    {
      teams: [team],
      limits: {
        bytesPerToken: 3,
        expectedCompletionTokens: 100,
        admitAhead: { tickets: 4, maxAgeMs: 2_000, headroom: 0.5 },
      },
      slotLeaseMs: 60_000,
      ahead: { tickets: 4, maxAgeMs: 2_000, headroom: 0.5, ...ahead },
    },
  );
  return { limits: created, store, keys, calls, clock, up };
}

/** An answer that used `tokens` tokens. */
function answer(tokens: number): Outcome {
  return {
    kind: 'json',
    status: 200,
    headers: {},
    body: {},
    usage: { prompt_tokens: tokens, completion_tokens: 0, total_tokens: tokens },
  };
}

/** Lets the store's promises (the refill's admission) settle. */
async function turns(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
}

/** A bucket's level now (a zero adjust reads it). */
async function level(s: Setup, dim: 'rpm' | 'tpm', capacity: number): Promise<number> {
  const [snap] = await s.store.adjust([
    { bucket: { key: s.keys.teamBucket('search', dim), capacity, refillPerSecond: capacity / 60 }, cost: 0 },
  ]);
  return snap!.remaining;
}

async function inFlight(s: Setup): Promise<number> {
  // A probe takes a slot, counts the holders with it, and leaves.
  const key = s.keys.teamConcurrency('search');
  const r = await s.store.acquire(key, 'probe', 1_000, 60_000);
  await s.store.release(key, 'probe');
  return r.inFlight - 1;
}

/** Runs one request through the stage; `during` sees the context and the store's admit count on its way out. */
async function request(
  s: Setup,
  used: number,
  over: Partial<PipelineContext> = {},
  during?: (ctx: PipelineContext, admits: number) => void,
): Promise<PipelineContext> {
  const ctx = makePipelineContext(over);
  await s.limits.stage(ctx, async (c) => {
    during?.(c, s.calls.get('admit') ?? 0);
    return answer(used);
  });
  await turns();
  return ctx;
}

describe('admission ahead', () => {
  it('admits the next request of a shape with a ticket: no store call on its path', async () => {
    const s = setup({});
    await request(s, 40);
    // The first was admitted on its own; its settle made one ticket.
    assert.equal(s.calls.get('admit'), 2);
    let admitsOnPath = -1;
    const ctx = await request(s, 40, {}, (_, admits) => (admitsOnPath = admits));
    assert.equal(admitsOnPath, 2, 'the second request made no admit call');
    assert.equal(ctx.logFields.admitted_ahead, true);
    // It holds the ticket's slot and reservation under its own id now.
    assert.ok(ctx.holderId);
    assert.equal(ctx.budgetLeaseId, ctx.holderId);
    await s.limits.close();
  });

  it('leaves the buckets and slots where admitting each request on its own would', async () => {
    const s = setup({ rpm: 100, tpm: 100_000 });
    for (let i = 0; i < 5; i++) await request(s, 40);
    // Five requests, one ticket outstanding (one request and its estimated tokens held).
    assert.equal(await level(s, 'rpm', 100), 100 - 6);
    assert.equal(await inFlight(s), 1, 'the ticket holds a slot');
    await s.limits.close();
    await turns();
    // Given back: exactly the five requests, each charged its real 40 tokens.
    assert.equal(await level(s, 'rpm', 100), 95);
    assert.equal(await level(s, 'tpm', 100_000), 100_000 - 5 * 40);
    assert.equal(await inFlight(s), 0);
  });

  it('does not use a ticket too small for the request: it is admitted on its own', async () => {
    const s = setup({});
    await request(s, 40);
    let admitsOnPath = -1;
    const big = { model: 'm', messages: [{ role: 'user', content: 'hi' }], max_tokens: 5_000 };
    const ctx = await request(s, 40, { body: big, rawBody: Buffer.from(JSON.stringify(big)) }, (_, n) => {
      admitsOnPath = n;
    });
    assert.equal(admitsOnPath, 3, 'its own admission was made on its path');
    assert.equal(ctx.logFields.admitted_ahead, undefined);
    await s.limits.close();
  });

  it('keeps no ticket while a limit is within the headroom', async () => {
    // RPM 3: after one request 2 are left; a ticket would leave 1, under half of 3.
    const s = setup({ rpm: 3 });
    await request(s, 10);
    assert.equal(await level(s, 'rpm', 3), 2, 'the declined ticket was given back');
    const ctx = await request(s, 10);
    assert.equal(ctx.logFields.admitted_ahead, undefined);
    // And nothing is held beyond the two requests: the third gets in, the fourth is refused.
    await request(s, 10);
    await assert.rejects(request(s, 10), /Rate limit reached/);
    await s.limits.close();
  });

  it('gives back a ticket nobody used within maxAgeMs', async () => {
    const s = setup({}, { maxAgeMs: 50 });
    await request(s, 40);
    assert.equal(await level(s, 'rpm', 100), 98);
    s.clock.t += 100; // the refill of 100 s^-1 / 60 over 0.1 s is under one request
    await new Promise((r) => setTimeout(r, 120));
    await turns();
    assert.ok(Math.floor(await level(s, 'rpm', 100)) === 99, 'the ticket went back');
    assert.equal(await inFlight(s), 0);
    const ctx = await request(s, 40);
    assert.equal(ctx.logFields.admitted_ahead, undefined, 'an expired ticket is not used');
    await s.limits.close();
  });

  it('while the store is away, neither uses nor makes tickets', async () => {
    const s = setup({});
    await request(s, 40);
    s.up.value = false;
    const admitsBefore = s.calls.get('admit');
    let admitsOnPath = -1;
    const ctx = await request(s, 40, {}, (_, n) => (admitsOnPath = n));
    assert.equal(admitsOnPath, admitsBefore! + 1, 'admitted by the store, as its policy says');
    assert.equal(ctx.logFields.admitted_ahead, undefined);
    assert.equal(s.calls.get('admit'), admitsBefore! + 1, 'no refill while the store is away');
    await s.limits.close();
  });

  it('puts a ticket back when the request ends before the limits stage (a cache hit)', async () => {
    const s = setup({});
    await request(s, 40);
    const hit = makePipelineContext();
    s.limits.admitter.start(hit);
    assert.equal(hit.admission?.ticket !== undefined, true, 'the read-ahead admission took the ticket');
    s.limits.admitter.cancel(hit);
    let admitsOnPath = -1;
    const ctx = await request(s, 40, {}, (_, n) => (admitsOnPath = n));
    assert.equal(admitsOnPath, 2, 'the next request used the ticket the hit put back');
    assert.equal(ctx.logFields.admitted_ahead, true);
    await s.limits.close();
    await turns();
    assert.equal(await level(s, 'rpm', 100), 98);
  });

  it('keeps one ticket for one request at a time, and more after a burst found none', async () => {
    const s = setup({ concurrency: 100 }, { tickets: 4 });
    for (let i = 0; i < 4; i++) await request(s, 40);
    assert.equal(await inFlight(s), 1, 'one at a time: one ticket kept');
    // Four at once: one finds the ticket, three find none, so the pool grows to four.
    const held: (() => void)[] = [];
    const burst = Array.from({ length: 4 }, () =>
      s.limits.stage(
        makePipelineContext(),
        () => new Promise<Outcome>((r) => held.push(() => r(answer(40)))),
      ),
    );
    await turns();
    for (const release of held) release();
    await Promise.all(burst);
    await turns();
    assert.equal(await inFlight(s), 4, 'four tickets kept for the next burst');
    await s.limits.close();
    await turns();
    assert.equal(await inFlight(s), 0);
    assert.equal(await level(s, 'rpm', 100), 100 - 8);
  });

  it('never uses a ticket made for another budget period; gives it back at the next refill', async () => {
    const s = setup({});
    await request(s, 40);
    assert.equal(await inFlight(s), 1, 'a ticket for today');
    s.clock.t += DAY_MS; // tomorrow: the daily budget's counters are other keys
    let admitsOnPath = -1;
    const ctx = await request(s, 40, {}, (_, n) => (admitsOnPath = n));
    assert.equal(admitsOnPath, 3, "admitted on its own: yesterday's ticket does not fit");
    assert.equal(ctx.logFields.admitted_ahead, undefined);
    assert.equal(await inFlight(s), 1, "yesterday's ticket went back, today's was made");
    await s.limits.close();
  });

  it('admits ahead for a team with budgets and no rate limits', async () => {
    const s = setup(null);
    await request(s, 40);
    let admitsOnPath = -1;
    const ctx = await request(s, 40, {}, (_, n) => (admitsOnPath = n));
    assert.equal(admitsOnPath, 2, 'the second request made no admit call');
    assert.equal(ctx.logFields.admitted_ahead, true);
    assert.equal(ctx.budgetLeaseId, ctx.holderId);
    await s.limits.close();
  });

  it('is off with tickets: 0', async () => {
    const s = setup({}, { tickets: 0 });
    await request(s, 40);
    await request(s, 40);
    assert.equal(s.calls.get('admit'), 2);
    await s.limits.close();
  });
});
