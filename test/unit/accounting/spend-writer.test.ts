import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SpendWriter } from '../../../src/accounting/spend-writer.js';
import { createKeys } from '../../../src/stores/keys.js';
import { MemoryStore } from '../../../src/stores/memory-store.js';
import type { CounterIncrement } from '../../../src/stores/store.js';
import { createLogSink } from '../../helpers/log-sink.js';

const keys = createKeys('tg:');

function setup(flushMs: number) {
  const store = new MemoryStore();
  const calls: { team: string; leaseIds: readonly string[]; increments: CounterIncrement[] }[] = [];
  const settle = store.settle.bind(store);
  store.settle = (leaseKey, leaseIds, increments, ttlMs) => {
    calls.push({ team: leaseKey.includes('{t:a}') ? 'a' : 'b', leaseIds, increments });
    return settle(leaseKey, leaseIds, increments, ttlMs);
  };
  const settled: number[][] = [];
  const writer = new SpendWriter(
    { store, keys, log: createLogSink().log },
    { retentionMs: 60_000, flushMs, onSettled: (_t, _i, totals) => settled.push([...totals]) },
  );
  return { store, writer, calls, settled };
}

const inc = (team: string, field: string, by: number) => [{ key: keys.teamSpend(team, 'd:x'), field, by }];

describe('SpendWriter', () => {
  it('writes one summed call per team per window', async () => {
    const { store, writer, calls, settled } = setup(20);
    for (let i = 0; i < 50; i++) writer.add('a', undefined, inc('a', 'cost', 3));
    writer.add('b', undefined, inc('b', 'cost', 7));
    assert.equal(calls.length, 0, 'nothing before the window ends');
    await new Promise((r) => setTimeout(r, 40));
    await writer.flush();
    assert.equal(calls.length, 2);
    assert.deepEqual(calls.find((c) => c.team === 'a')!.increments, inc('a', 'cost', 150));
    assert.deepEqual(
      settled.sort((x, y) => x[0]! - y[0]!),
      [[7], [150]],
    );
    const [a] = await store.readCounters([keys.teamSpend('a', 'd:x')]);
    assert.equal(a!.cost, 150);
  });

  it('writes a request that holds a budget reservation at once, releasing it in the same call', async () => {
    const { store, writer, calls } = setup(10_000);
    const lease = { key: keys.teamBudgetLeases('a'), id: 'r1', ms: 60_000 };
    const day = keys.teamSpend('a', 'd:x');
    await store.reserve(
      lease,
      [{ key: day, spentField: 'cost', reservedField: 'cost:r', limit: 100, amount: 40 }],
      60_000,
    );
    writer.add('a', 'r1', inc('a', 'cost', 12));
    await writer.flush();
    assert.equal(calls.length, 1);
    assert.deepEqual(calls[0]!.leaseIds, ['r1']);
    assert.deepEqual((await store.readCounters([day]))[0], { cost: 12, 'cost:r': 0 });
  });

  it("writes only the counters a reservation's budgets check with its release; the rest joins the batch", async () => {
    const { store, writer, calls } = setup(20);
    const day = keys.teamSpend('a', 'd:x');
    await store.reserve(
      { key: keys.teamBudgetLeases('a'), id: 'r1', ms: 60_000 },
      [{ key: day, spentField: 'cost', reservedField: 'cost:r', limit: 100, amount: 40 }],
      60_000,
    );
    const increments = [...inc('a', 'cost', 12), ...inc('a', 'cost|model|m', 12), ...inc('a', 'requests', 1)];
    writer.add('a', 'r1', increments, [{ key: day, field: 'cost' }]);
    await new Promise((r) => setImmediate(r));
    // At once: the release with the budget's own counter, nothing else.
    assert.equal(calls.length, 1);
    assert.deepEqual(calls[0]!.leaseIds, ['r1']);
    assert.deepEqual(
      calls[0]!.increments.map((i) => i.field),
      ['cost'],
    );
    assert.deepEqual((await store.readCounters([day]))[0], { cost: 12, 'cost:r': 0 });
    // The breakdown follows in the team's batch.
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(calls.length, 2);
    assert.deepEqual(calls[1]!.leaseIds, []);
    assert.deepEqual((await store.readCounters([day]))[0], {
      cost: 12,
      'cost:r': 0,
      'cost|model|m': 12,
      requests: 1,
    });
  });

  it('writes everything queued on flush, without waiting for the window (shutdown)', async () => {
    const { writer, calls } = setup(60_000);
    writer.add('a', undefined, inc('a', 'tokens', 5));
    await writer.flush();
    assert.equal(calls.length, 1);
  });
});
