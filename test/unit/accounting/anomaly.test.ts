import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { startAnomalyWatch } from '../../../src/accounting/anomaly.js';
import { hourOf } from '../../../src/accounting/periods.js';
import type { Alert, Alerter } from '../../../src/accounting/webhook.js';
import { createKeys } from '../../../src/stores/keys.js';
import { MemoryStore } from '../../../src/stores/memory-store.js';
import { createLogSink } from '../../helpers/log-sink.js';

const keys = createKeys('tg:');
const HOUR = 3_600_000;
// 13:30 UTC: half of the previous hour is still inside the last 60 minutes.
const NOW = Date.parse('2026-11-25T13:30:00Z');
const config = { multiple: 3, trailingHours: 24, minHourlyUsd: 1, checkIntervalSeconds: 3600 };

function setup() {
  const store = new MemoryStore({ now: () => NOW });
  const alerts: Alert[] = [];
  const alerter: Alerter = { send: (a) => alerts.push(a), drain: async () => {} };
  const deps = { store, keys, log: createLogSink().log, alerter, teams: () => ['t'], now: () => NOW };
  const spend = (hoursAgo: number, usd: number) =>
    store.settle(
      keys.teamBudgetLeases('t'),
      [],
      [{ key: keys.teamSpend('t', hourOf(NOW - hoursAgo * HOUR)), field: 'cost', by: usd * 1_000_000 }],
      30 * 86_400_000,
    );
  return { store, alerts, deps, spend };
}

describe('spend anomaly check', () => {
  it('alerts once per team and hour when the last 60 minutes exceed the multiple of the trailing average', async () => {
    const { alerts, deps, spend } = setup();
    // $2 an hour for the previous 24 hours, then $9 so far this hour.
    for (let h = 1; h <= 24; h++) await spend(h, 2);
    await spend(0, 9);
    const a = startAnomalyWatch(deps, config, 30 * 86_400_000);
    const b = startAnomalyWatch(deps, config, 30 * 86_400_000); // a second replica
    await a.check();
    await b.check();
    await a.check();
    a.stop();
    b.stop();
    assert.equal(alerts.length, 1);
    // The last 60 minutes: $9 this hour + half of the previous hour's $2.
    assert.deepEqual(alerts[0], {
      type: 'spend.anomaly',
      team: 't',
      hour: '2026-11-25T13',
      last_hour_usd: 10,
      trailing_hourly_avg_usd: 2,
      multiple: 5,
    });
  });

  it('stays quiet below the multiple, below the minimum, and without a baseline', async () => {
    for (const [trailing, now] of [
      [2, 5], // 6 < 3 x 2
      [0.1, 0.9], // above 3x, but under $1
      [0, 50], // no spend before: no baseline
    ] as const) {
      const { alerts, deps, spend } = setup();
      if (trailing > 0) for (let h = 1; h <= 24; h++) await spend(h, trailing);
      await spend(0, now);
      const w = startAnomalyWatch(deps, config, 30 * 86_400_000);
      await w.check();
      w.stop();
      assert.deepEqual(alerts, [], `trailing ${trailing}, now ${now}`);
    }
  });
});
