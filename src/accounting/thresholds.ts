// Budget threshold alerts: after each batch of spend is written, a budget's counter that this
// batch carried across one of its thresholds (50/80/100% by default) sends that alert. Counters
// only grow and each batch is one atomic step, so exactly one batch crosses a given threshold in
// a period, on whichever replica wrote it: the alert goes out once.
import type { TeamConfig, BudgetConfig } from '../config/schema.js';
import type { Keys } from '../stores/keys.js';
import type { CounterIncrement } from '../stores/store.js';
import { periodOf } from './periods.js';
import { budgetMeasures, microsToUsd } from './spend.js';
import type { Alerter } from './webhook.js';

interface Watched {
  budget: BudgetConfig;
  keyId: string | undefined;
}

export type ThresholdCheck = (
  team: string,
  increments: readonly CounterIncrement[],
  totals: readonly number[],
) => void;

export function createThresholdCheck(
  teams: readonly TeamConfig[],
  keys: Keys,
  alerter: Alerter,
  now: () => number = Date.now,
): ThresholdCheck {
  const watched = new Map<string, Watched[]>();
  for (const t of teams) {
    const list: Watched[] = [
      ...t.budgets.map((budget) => ({ budget, keyId: undefined })),
      ...t.keys.flatMap((k) => k.budgets.map((budget) => ({ budget, keyId: k.id }))),
    ];
    if (list.length > 0) watched.set(t.name, list);
  }
  return (team, increments, totals) => {
    const list = watched.get(team);
    // [] totals: the store deferred the write (an outage); nothing is known about the totals.
    if (!list || totals.length !== increments.length) return;
    const t = now();
    for (const w of list) {
      const period = periodOf(w.budget.period, t);
      const key = keys.teamSpend(team, period);
      for (const m of budgetMeasures(w.budget, w.keyId)) {
        const i = increments.findIndex((inc) => inc.key === key && inc.field === m.spentField);
        if (i < 0) continue;
        const after = totals[i]!;
        const before = after - increments[i]!.by;
        for (const pct of w.budget.thresholds) {
          const mark = (m.limit * pct) / 100;
          if (before >= mark || after < mark) continue;
          const usd = m.metric === 'usd';
          alerter.send({
            type: 'budget.threshold',
            team,
            ...(w.keyId === undefined ? {} : { keyId: w.keyId }),
            period: period.slice(2),
            metric: m.metric,
            threshold_percent: pct,
            limit: usd ? microsToUsd(m.limit) : m.limit,
            used: usd ? microsToUsd(after) : after,
          });
        }
      }
    }
  };
}
