// A team as the admin API shows it: its configured limits, its keys (ids only), and each budget
// of the team and of its keys with what the current period has used, what requests in flight
// have reserved, what remains, and when the period resets. The counters are those the budget
// stage checks (pipeline/stages/budget.ts): `cost`/`tokens` and their `:r` reservations, in the
// team's hash of the budget's current UTC day, ISO week or month.
import { periodEnd, periodOf } from '../accounting/periods.js';
import { budgetMeasures, microsToUsd, reservedField, type BudgetMeasure } from '../accounting/spend.js';
import type { BudgetConfig, RateLimitConfig, TeamConfig } from '../config/schema.js';
import type { Keys } from '../stores/keys.js';
import type { Store } from '../stores/store.js';
import type { KeyInfo } from './runtime-keys.js';

export interface BudgetUse {
  limit: number;
  used: number;
  reserved: number;
  /** limit - used - reserved, never below 0: what a new request can still be admitted against. */
  remaining: number;
}

export interface BudgetStatus {
  scope: 'team' | 'key';
  key_id: string | null;
  period: BudgetConfig['period'];
  /** The counter period: `d:2026-11-25`, `w:2026-W48`, `m:2026-11`. */
  period_id: string;
  resets_at: string;
  /** USD; null when the budget has no USD limit. */
  usd: BudgetUse | null;
  /** Tokens (prompt + completion); null when the budget has no token limit. */
  tokens: BudgetUse | null;
  thresholds: number[];
}

interface RateLimitView {
  rpm: number | null;
  tpm: number | null;
}

export interface LimitsView extends RateLimitView {
  concurrency: number | null;
  max_wait_ms: number;
  per_key: RateLimitView | null;
  models: Record<string, RateLimitView>;
}

export interface KeyView {
  id: string;
  source: KeyInfo['source'];
  created_at: string | null;
  revoked: boolean;
  revoked_at: string | null;
}

export interface TeamStatus {
  object: 'team';
  name: string;
  tier: string | null;
  models: string[];
  limits: LimitsView | null;
  keys: { active: number; revoked: number };
  budgets: BudgetStatus[];
}

export interface TeamStatusInput {
  name: string;
  /** undefined for the anonymous local team (no config). */
  config: TeamConfig | undefined;
  keys: KeyInfo[];
}

const iso = (ms: number | undefined): string | null => (ms === undefined ? null : new Date(ms).toISOString());

export function keyView(k: KeyInfo): KeyView {
  return {
    id: k.id,
    source: k.source,
    created_at: iso(k.createdAt),
    revoked: k.revokedAt !== undefined,
    revoked_at: iso(k.revokedAt),
  };
}

const rate = (r: RateLimitConfig): RateLimitView => ({ rpm: r.rpm ?? null, tpm: r.tpm ?? null });

function limitsView(t: TeamConfig): LimitsView | null {
  const l = t.limits;
  if (!l) return null;
  return {
    ...rate(l),
    concurrency: l.concurrency ?? null,
    max_wait_ms: l.maxWaitMs,
    per_key: l.perKey ? rate(l.perKey) : null,
    models: Object.fromEntries(Object.entries(l.models).map(([m, r]) => [m, rate(r)])),
  };
}

interface Applicable {
  team: string;
  budget: BudgetConfig;
  keyId: string | undefined;
}

function applicable(input: TeamStatusInput): Applicable[] {
  const t = input.config;
  if (!t) return [];
  const live = new Set(input.keys.filter((k) => k.revokedAt === undefined).map((k) => k.id));
  return [
    ...t.budgets.map((budget) => ({ team: t.name, budget, keyId: undefined })),
    // A revoked key's budget no longer matters.
    ...t.keys
      .filter((k) => live.has(k.id))
      .flatMap((k) => k.budgets.map((budget) => ({ team: t.name, budget, keyId: k.id }))),
  ];
}

function use(hash: Record<string, number>, m: BudgetMeasure): BudgetUse {
  const used = hash[m.spentField] ?? 0;
  const reserved = Math.max(0, hash[reservedField(m.spentField)] ?? 0);
  return { limit: m.limit, used, reserved, remaining: Math.max(0, m.limit - used - reserved) };
}

const inUsd = (u: BudgetUse): BudgetUse => ({
  limit: microsToUsd(u.limit),
  used: microsToUsd(u.used),
  reserved: microsToUsd(u.reserved),
  remaining: microsToUsd(u.remaining),
});

/** The status of each team; one store call reads every budget's current period. */
export async function readTeamStatus(
  store: Pick<Store, 'readCounters'>,
  keys: Pick<Keys, 'teamSpend'>,
  inputs: readonly TeamStatusInput[],
  nowMs: number,
): Promise<TeamStatus[]> {
  const all = inputs.map(applicable);
  const hashKeys = [
    ...new Set(all.flat().map((a) => keys.teamSpend(a.team, periodOf(a.budget.period, nowMs)))),
  ];
  const hashes = await store.readCounters(hashKeys);
  const byKey = new Map(hashKeys.map((k, i) => [k, hashes[i] ?? {}]));
  return inputs.map((input, i) => {
    const revokedCount = input.keys.filter((k) => k.revokedAt !== undefined).length;
    return {
      object: 'team',
      name: input.name,
      tier: input.config?.tier ?? null,
      models: input.config ? [...input.config.models] : ['*'],
      limits: input.config ? limitsView(input.config) : null,
      keys: { active: input.keys.length - revokedCount, revoked: revokedCount },
      budgets: all[i]!.map((a): BudgetStatus => {
        const periodId = periodOf(a.budget.period, nowMs);
        const hash = byKey.get(keys.teamSpend(a.team, periodId)) ?? {};
        const measures = budgetMeasures(a.budget, a.keyId);
        const usd = measures.find((m) => m.metric === 'usd');
        const tokens = measures.find((m) => m.metric === 'tokens');
        return {
          scope: a.keyId === undefined ? 'team' : 'key',
          key_id: a.keyId ?? null,
          period: a.budget.period,
          period_id: periodId,
          resets_at: new Date(periodEnd(a.budget.period, nowMs)).toISOString(),
          usd: usd ? inUsd(use(hash, usd)) : null,
          tokens: tokens ? use(hash, tokens) : null,
          thresholds: [...a.budget.thresholds],
        };
      }),
    };
  });
}
