// What one request adds to its team's counters, and how those counters read back. Counters are
// integer fields of one hash per team and period (keys.teamSpend): `cost` (micro-dollars),
// `saved`, `requests` and token counts, for the team as a whole, and `<metric>|k|<key id>`,
// `<metric>|m|<model>` and `<metric>|f|<feature>` per key, requested model and feature. Days
// hold every dimension (the admin API groups by day); weeks and months hold what budgets read
// (team and key cost, tokens, requests); hours hold the team's cost (the anomaly check).
import type { BudgetConfig } from '../config/schema.js';
import type { Keys } from '../stores/keys.js';
import type { CounterIncrement } from '../stores/store.js';
import { periodNames, type PeriodNames } from './periods.js';

export const METRICS = [
  'cost',
  'saved',
  'requests',
  'tokens',
  'prompt_tokens',
  'completion_tokens',
  'cached_tokens',
  'reasoning_tokens',
] as const;
export type Metric = (typeof METRICS)[number];

/** The budget fields: what is spent, and what requests in flight reserved. */
export const BUDGET_METRICS = ['cost', 'tokens', 'requests'] as const;

export type Dimension = 'k' | 'm' | 'f';

export interface SpendRecord {
  team: string;
  keyId: string;
  /** The model as requested. */
  model: string;
  feature: string | undefined;
  /** Integer micro-dollars; 0 when the price is unknown (the log line says null). */
  costMicros: number;
  savedMicros: number;
  promptTokens: number;
  completionTokens: number;
  cachedTokens: number;
  reasoningTokens: number;
}

export function field(metric: string, dim?: Dimension, name?: string): string {
  return dim === undefined ? metric : `${metric}|${dim}|${name}`;
}

/** The reservation field beside a budget field: `cost` -> `cost:r`, `cost|k|id` -> `cost:r|k|id`. */
export function reservedField(spentField: string): string {
  const bar = spentField.indexOf('|');
  return bar < 0 ? `${spentField}:r` : `${spentField.slice(0, bar)}:r${spentField.slice(bar)}`;
}

/** What one budget limits: the counter field it reads and its limit (micro-dollars or tokens). */
export interface BudgetMeasure {
  metric: 'usd' | 'tokens';
  spentField: string;
  limit: number;
}

/** The measures of a team's budget (keyId undefined) or a key's: USD, tokens, or both. */
export function budgetMeasures(budget: BudgetConfig, keyId: string | undefined): BudgetMeasure[] {
  const dim = keyId === undefined ? undefined : ('k' as const);
  const out: BudgetMeasure[] = [];
  if (budget.usd !== undefined)
    out.push({
      metric: 'usd',
      spentField: field('cost', dim, keyId),
      limit: Math.round(budget.usd * 1_000_000),
    });
  if (budget.tokens !== undefined)
    out.push({ metric: 'tokens', spentField: field('tokens', dim, keyId), limit: budget.tokens });
  return out;
}

/** The request's amount per metric, in METRICS order. */
function values(r: SpendRecord): number[] {
  return [
    r.costMicros,
    r.savedMicros,
    1,
    r.promptTokens + r.completionTokens,
    r.promptTokens,
    r.completionTokens,
    r.cachedTokens,
    r.reasoningTokens,
  ];
}

/** BUDGET_METRICS' places in METRICS. */
const BUDGET_INDEXES = BUDGET_METRICS.map((m) => METRICS.indexOf(m));

// Field names and keys are the same strings request after request: they are built once and
// kept (building ~36 of them per request was ~2% of its CPU at saturation). Bounded: a cache
// that outgrows its cap (a flood of distinct feature names) starts over.
const NAMES_CAP = 10_000;
const fieldNames: Record<Dimension, Map<string, readonly string[]>> = {
  k: new Map(),
  m: new Map(),
  f: new Map(),
};

/** The field of every metric, in METRICS order, for one dimension value (or the team's own). */
function fieldsOf(dim: Dimension | undefined, name: string | undefined): readonly string[] {
  if (dim === undefined) return METRICS;
  const names = fieldNames[dim];
  let fields = names.get(name!);
  if (!fields) {
    if (names.size >= NAMES_CAP) names.clear();
    fields = METRICS.map((metric) => field(metric, dim, name));
    names.set(name!, fields);
  }
  return fields;
}

interface TeamPeriodKeys {
  /** periodNames of this hour, by identity. */
  names: PeriodNames;
  day: string;
  week: string;
  month: string;
  hour: string;
}
/** Per Keys (a gateway's key prefix: two gateways in one process must not share), per team. */
const periodKeysOf = new WeakMap<Keys, Map<string, TeamPeriodKeys>>();

function teamPeriodKeys(keys: Keys, team: string, nowMs: number): TeamPeriodKeys {
  const names = periodNames(nowMs);
  let periodKeys = periodKeysOf.get(keys);
  if (!periodKeys) periodKeysOf.set(keys, (periodKeys = new Map()));
  let k = periodKeys.get(team);
  if (k?.names !== names) {
    if (periodKeys.size >= NAMES_CAP) periodKeys.clear();
    k = {
      names,
      day: keys.teamSpend(team, names.day),
      week: keys.teamSpend(team, names.week),
      month: keys.teamSpend(team, names.month),
      hour: keys.teamSpend(team, names.hour),
    };
    periodKeys.set(team, k);
  }
  return k;
}

export function spendIncrements(
  keys: Keys,
  r: SpendRecord,
  nowMs: number,
  hourly: boolean,
): CounterIncrement[] {
  const v = values(r);
  const out: CounterIncrement[] = [];
  const k = teamPeriodKeys(keys, r.team, nowMs);
  const all = (key: string, fields: readonly string[]) => {
    for (let i = 0; i < fields.length; i++) if (v[i] !== 0) out.push({ key, field: fields[i]!, by: v[i]! });
  };
  const budgeted = (key: string, fields: readonly string[]) => {
    for (const i of BUDGET_INDEXES) if (v[i] !== 0) out.push({ key, field: fields[i]!, by: v[i]! });
  };
  const team = fieldsOf(undefined, undefined);
  const byKey = fieldsOf('k', r.keyId);
  all(k.day, team);
  all(k.day, byKey);
  all(k.day, fieldsOf('m', r.model));
  if (r.feature !== undefined) all(k.day, fieldsOf('f', r.feature));
  for (const key of [k.week, k.month]) {
    budgeted(key, team);
    budgeted(key, byKey);
  }
  if (hourly && v[0] !== 0) out.push({ key: k.hour, field: 'cost', by: v[0]! });
  return out;
}

export type Totals = Record<Metric, number>;

export interface SpendBreakdown {
  total: Totals;
  keys: Record<string, Totals>;
  models: Record<string, Totals>;
  features: Record<string, Totals>;
}

const zero = (): Totals => Object.fromEntries(METRICS.map((m) => [m, 0])) as Totals;

/** Reads one period hash's fields back into totals per dimension (reservations left out). */
export function breakdown(hash: Record<string, number>): SpendBreakdown {
  const out: SpendBreakdown = { total: zero(), keys: {}, models: {}, features: {} };
  const groups: Record<Dimension, Record<string, Totals>> = { k: out.keys, m: out.models, f: out.features };
  for (const [f, n] of Object.entries(hash)) {
    const parts = f.split('|');
    const metric = parts[0] as Metric;
    if (!(METRICS as readonly string[]).includes(metric)) continue;
    if (parts.length === 1) out.total[metric] += n;
    else if (parts.length >= 3) {
      const group = groups[parts[1] as Dimension];
      if (!group) continue;
      const name = parts.slice(2).join('|');
      (group[name] ??= zero())[metric] += n;
    }
  }
  return out;
}

/**
 * Micro-dollars as a USD number for log lines and reports. Integer / 1e6 is the double nearest
 * the decimal, and JSON prints the shortest decimal that reads back to it: 1234 µ$ logs as
 * 0.001234 exactly (for amounts below a billion dollars). Aggregate the integers, not these.
 */
export function microsToUsd(micros: number): number {
  return Math.round(micros) / 1_000_000;
}
