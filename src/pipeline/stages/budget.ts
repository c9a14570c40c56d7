// Budget: hard spend and token limits per team and per key, per UTC day, week or month. Before a
// request goes on, one store call checks every budget that applies and reserves the request's
// estimated cost and tokens against each (so requests in parallel cannot all slip under a nearly
// spent budget: at most the last one admitted goes over, by no more than its own cost). The
// accounting stage settles the reservation with the real cost when the response ends. A used-up
// budget answers OpenAI's 429 `insufficient_quota` with x-should-retry: false.
// Sits after the cache: a hit costs nothing and is served even when the budget is spent.
// In the pipeline the limits stage makes this reservation, in the same store call (one round trip)
// as its rate buckets and concurrency slot, from the plan createBudgetPlanner gives it;
// createBudgetStage runs a plan on its own.
import { holderId } from '../holder-id.js';
import type { BudgetConfig, TeamConfig } from '../../config/schema.js';
import { errors, type GatewayError } from '../../errors.js';
import { budgetMeasures, microsToUsd, reservedField } from '../../accounting/spend.js';
import { periodEnd, periodOf } from '../../accounting/periods.js';
import type { Keys } from '../../stores/keys.js';
import type { BudgetCheck, BudgetRequest, ReserveResult, Store } from '../../stores/store.js';
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

/** What a request must reserve, and what to tell its client when a budget has no room. */
export interface BudgetPlan {
  request: BudgetRequest;
  /** The 429 for a refusal (and the log field naming the budget). */
  refuse(result: ReserveResult): GatewayError;
  /** Records the reservation on the request, for the accounting stage to settle. */
  admitted(): void;
}

/** Per request: the budgets that apply and what to reserve, or undefined when none applies. */
export type BudgetPlanner = (ctx: PipelineContext) => BudgetPlan | undefined;

export function createBudgetPlanner(deps: Omit<BudgetDeps, 'store'>, options: BudgetOptions): BudgetPlanner {
  const { keys } = deps;
  const now = deps.now ?? Date.now;
  const byTeam = new Map<string, { team: BudgetConfig[]; keys: Map<string, BudgetConfig[]> }>();
  for (const t of options.teams) {
    const perKey = new Map(t.keys.filter((k) => k.budgets.length > 0).map((k) => [k.id, k.budgets]));
    if (t.budgets.length > 0 || perKey.size > 0) byTeam.set(t.name, { team: t.budgets, keys: perKey });
  }

  return function plan(ctx) {
    const configured = byTeam.get(ctx.team.name);
    if (!configured) return undefined;
    const applicable: Applicable[] = [
      ...configured.team.map((budget) => ({ budget, keyId: undefined })),
      ...(configured.keys.get(ctx.keyId) ?? []).map((budget) => ({ budget, keyId: ctx.keyId })),
    ];
    if (applicable.length === 0) return undefined;
    const t = now();
    const est = deps.estimate(ctx);
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
    const lease = { key: keys.teamBudgetLeases(ctx.team.name), id: holderId(ctx), ms: options.leaseMs };
    return {
      request: { lease, checks, ttlMs: options.retentionMs },
      refuse(result) {
        const d = described[result.exhausted]!;
        ctx.logFields.budget_exhausted = `${d.a.keyId === undefined ? 'team' : 'key'}:${d.a.budget.period}:${d.metric}`;
        return errors.budgetExceeded(
          message(ctx.team.name, d.a, d.metric, d.limit, periodEnd(d.a.budget.period, t)),
        );
      },
      admitted() {
        ctx.budgetLeaseId = lease.id;
        ctx.budgetCounters = checks.map((c) => ({ key: c.key, field: c.spentField }));
      },
    };
  };
}

/** The budgets on their own: one store call per request that has any. */
export function createBudgetStage(deps: BudgetDeps, options: BudgetOptions): Stage {
  const plan = createBudgetPlanner(deps, options);
  return async function budgetStage(ctx, next) {
    const p = plan(ctx);
    if (!p) return next(ctx);
    const result = await deps.store.admit({ takes: [], budget: p.request });
    if (!result.admitted) throw p.refuse(result.budget!);
    p.admitted();
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
