import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  breakdown,
  microsToUsd,
  reservedField,
  spendIncrements,
  type SpendRecord,
} from '../../../src/accounting/spend.js';
import { createKeys } from '../../../src/stores/keys.js';

const keys = createKeys('tg:');
const record: SpendRecord = {
  team: 'search',
  keyId: 'k1',
  model: 'ft:gpt-4o:acme',
  feature: 'summarise',
  costMicros: 1_234,
  savedMicros: 0,
  promptTokens: 100,
  completionTokens: 20,
  cachedTokens: 40,
  reasoningTokens: 0,
};
const t = Date.parse('2026-11-25T13:30:00Z');

describe('spend counters', () => {
  it('adds to the day per dimension, and to the week and month for budgets, all under the team tag', () => {
    const incs = spendIncrements(keys, record, t, true);
    const day = keys.teamSpend('search', 'd:2026-11-25');
    const get = (key: string, f: string) => incs.find((i) => i.key === key && i.field === f)?.by;
    assert.equal(get(day, 'cost'), 1_234);
    assert.equal(get(day, 'requests'), 1);
    assert.equal(get(day, 'tokens'), 120);
    assert.equal(get(day, 'cached_tokens|k|k1'), 40);
    assert.equal(get(day, 'cost|m|ft:gpt-4o:acme'), 1_234);
    assert.equal(get(day, 'prompt_tokens|f|summarise'), 100);
    assert.equal(get(day, 'reasoning_tokens'), undefined, 'zeros are not written');
    assert.equal(get(keys.teamSpend('search', 'w:2026-W48'), 'cost|k|k1'), 1_234);
    assert.equal(get(keys.teamSpend('search', 'm:2026-11'), 'tokens'), 120);
    assert.equal(get(keys.teamSpend('search', 'h:2026-11-25T13'), 'cost'), 1_234);
    for (const i of incs) assert.match(i.key, /\{t:search\}/);
  });

  it('writes each gateway under its own key prefix, also for the same team in one process', () => {
    // The per-team key memo once ignored the prefix: a second gateway's spend went to the first's keys.
    const other = createKeys('tg:other:');
    spendIncrements(keys, record, t, false);
    const incs = spendIncrements(other, record, t, false);
    assert.ok(incs.length > 0);
    for (const i of incs) assert.ok(i.key.startsWith('tg:other:'), i.key);
  });

  it('writes no hourly counter unless asked', () => {
    assert.ok(spendIncrements(keys, record, t, false).every((i) => !i.key.includes(':h:')));
  });

  it('reads a period hash back per dimension, model names with colons intact, reservations left out', () => {
    const hash: Record<string, number> = {};
    for (const i of spendIncrements(keys, record, t, false)) {
      if (i.key === keys.teamSpend('search', 'd:2026-11-25')) hash[i.field] = (hash[i.field] ?? 0) + i.by;
    }
    hash['cost:r'] = 999;
    const b = breakdown(hash);
    assert.equal(b.total.cost, 1_234);
    assert.equal(b.models['ft:gpt-4o:acme']!.tokens, 120);
    assert.equal(b.keys.k1!.requests, 1);
    assert.equal(b.features.summarise!.completion_tokens, 20);
  });

  it('names reservation fields beside the budget field', () => {
    assert.equal(reservedField('cost'), 'cost:r');
    assert.equal(reservedField('tokens|k|abc'), 'tokens:r|k|abc');
  });

  it('turns micro-dollars into dollars exactly', () => {
    assert.equal(microsToUsd(1), 0.000001);
    assert.equal(microsToUsd(123_456_789), 123.456789);
  });
});
