// Budget: hard spend and token limits per team and per key, per UTC day, week or month. Before a
// request goes on, one store call checks every budget that applies and reserves the request's
// estimated cost and tokens against each (so requests in parallel cannot all slip under a nearly
// spent budget: at most the last one admitted goes over, by no more than its own cost). The
// accounting stage settles the reservation with the real cost when the response ends. A used-up
// budget answers OpenAI's 429 `insufficient_quota` with x-should-retry: false.
// Sits after the cache: a hit costs nothing and is served even when the budget is spent.
import type { BudgetConfig, TeamConfig } from '../../config/schema.js';
import { errors } from '../../errors.js';
import { budgetMeasures, microsToUsd, reservedField } from '../../accounting/spend.js';
import { periodEnd, periodOf } from '../../accounting/periods.js';
import type { Keys } from '../../stores/keys.js';
import type { BudgetCheck, Store } from '../../stores/store.js';
import type { PipelineContext, Stage } from '../types.js';

export interface BudgetDeps {
  store: Store;
  keys: Keys;
  /** The request's estimated cost (integer micro-dollars; 0 when no price is known) and tokens. */
  estimate(ctx: PipelineContext): { micros: number; tokens: number };
  now?: () => number;
}

export interface BudgetOptions {
  teams: readonly TeamConfig[];
  /** A reservation not settled within this (a crashed replica) returns to its budget. */
  leaseMs: number;
  /** How long counters are kept (ms). */
  retentionMs: number;
}

interface Applicable {
  budget: BudgetConfig;
  /** undefined: the team's own budget. */
  keyId: string | undefined;
}

export function createBudgetStage(deps: BudgetDeps, options: BudgetOptions): Stage {
  const { store, keys } = deps;
  const estimate = (ctx: PipelineContext) => deps.estimate(ctx);
  const now = deps.now ?? Date.now;
  const byTeam = new Map<string, { team: BudgetConfig[]; keys: Map<string, BudgetConfig[]> }>();
  for (const t of options.teams) {
    const perKey = new Map(t.keys.filter((k) => k.budgets.length > 0).map((k) => [k.id, k.budgets]));
    if (t.budgets.length > 0 || perKey.size > 0) byTeam.set(t.name, { team: t.budgets, keys: perKey });
  }

  return async function budgetStage(ctx, next) {
    const configured = byTeam.get(ctx.team.name);
    if (!configured) return next(ctx);
    const applicable: Applicable[] = [
      ...configured.team.map((budget) => ({ budget, keyId: undefined })),
      ...(configured.keys.get(ctx.keyId) ?? []).map((budget) => ({ budget, keyId: ctx.keyId })),
    ];
    if (applicable.length === 0) return next(ctx);
    const t = now();
    const est = estimate(ctx);
    const checks: BudgetCheck[] = [];
    const described: { a: Applicable; metric: 'usd' | 'tokens'; limit: number }[] = [];
    for (const a of applicable) {
      const key = keys.teamSpend(ctx.team.name, periodOf(a.budget.period, t));
      for (const m of budgetMeasures(a.budget, a.keyId)) {
        const amount = m.metric === 'usd' ? est.micros : est.tokens;
        checks.push({
          key,
          spentField: m.spentField,
          reservedField: reservedField(m.spentField),
          limit: m.limit,
          amount,
        });
        described.push({ a, metric: m.metric, limit: m.limit });
      }
    }
    const lease = { key: keys.teamBudgetLeases(ctx.team.name), id: ctx.reqId, ms: options.leaseMs };
    const result = await store.reserve(lease, checks, options.retentionMs);
    if (!result.admitted) {
      const d = described[result.exhausted]!;
      ctx.logFields.budget_exhausted = `${d.a.keyId === undefined ? 'team' : 'key'}:${d.a.budget.period}:${d.metric}`;
      throw errors.budgetExceeded(
        message(ctx.team.name, d.a, d.metric, d.limit, periodEnd(d.a.budget.period, t)),
      );
    }
    ctx.budgetLeaseId = lease.id;
    return next(ctx);
  };
}

const PERIOD_WORD = { day: 'daily', week: 'weekly', month: 'monthly' } as const;

function message(
  team: string,
  a: Applicable,
  metric: 'usd' | 'tokens',
  limit: number,
  resetsAt: number,
): string {
  const who = a.keyId === undefined ? `Team '${team}'` : `Key '${a.keyId}' of team '${team}'`;
  const amount = metric === 'usd' ? `$${microsToUsd(limit).toFixed(2)}` : `${limit} tokens`;
  return (
    `You exceeded your current quota: ${who} has used its ${PERIOD_WORD[a.budget.period]} budget of ${amount}. ` +
    `It resets at ${new Date(resetsAt).toISOString()}; ask the gateway's operator to raise it.`
  );
}
