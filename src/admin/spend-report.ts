// Spend over a range of UTC days, read from the daily counter hashes (accounting/spend.ts): per
// day, in total, and per team, key, model and feature. A day's hash keeps each dimension on its
// own (not key x model), so a report filters by at most one of key, model or feature, and then
// has no breakdown by the others. Sums stay integer micro-dollars until the USD output.
import { daysBetween } from '../accounting/periods.js';
import { breakdown, METRICS, microsToUsd, type Totals } from '../accounting/spend.js';
import { errors } from '../errors.js';
import type { Keys } from '../stores/keys.js';
import type { Store } from '../stores/store.js';

export const MAX_RANGE_DAYS = 366;
/** With no `from`, a report covers this many days ending at `to`. */
export const DEFAULT_RANGE_DAYS = 30;

const DAY_MS = 86_400_000;
const DATE = /^\d{4}-\d{2}-\d{2}$/;

export type FilterDimension = 'key' | 'model' | 'feature';

export interface SpendQuery {
  /** The teams to sum; one when the caller named a team. */
  teams: string[];
  /** The team the caller named, if any. */
  team: string | undefined;
  from: string;
  to: string;
  filter: { dimension: FilterDimension; name: string } | undefined;
}

/** Counts, and money as USD numbers (exact: micro-dollars have 6 decimals). */
export interface SpendTotals {
  requests: number;
  tokens: number;
  prompt_tokens: number;
  completion_tokens: number;
  cached_tokens: number;
  reasoning_tokens: number;
  cost_usd: number;
  saved_usd: number;
}

export interface SpendReport {
  object: 'spend';
  team: string | null;
  from: string;
  to: string;
  filter: { key?: string; model?: string; feature?: string } | null;
  /** Every day of the range, oldest first, days without traffic included. */
  days: (SpendTotals & { date: string })[];
  total: SpendTotals;
  /** Without a named team. */
  by_team?: Record<string, SpendTotals>;
  /** Without a filter. Key ids are per team: with no team named, equal ids of two teams add up. */
  by_key?: Record<string, SpendTotals>;
  by_model?: Record<string, SpendTotals>;
  by_feature?: Record<string, SpendTotals>;
}

/** `YYYY-MM-DD` of a real date, as epoch ms at 00:00 UTC; a 400 naming `param` otherwise. */
export function parseDay(value: string, param: string): number {
  const ms = DATE.test(value) ? Date.parse(`${value}T00:00:00Z`) : NaN;
  if (Number.isNaN(ms) || new Date(ms).toISOString().slice(0, 10) !== value)
    throw errors.invalidRequest(`Invalid '${param}': expected a date as YYYY-MM-DD (UTC).`, param);
  return ms;
}

const isoDay = (ms: number): string => new Date(ms).toISOString().slice(0, 10);

/** The days from..to (UTC, inclusive): `to` defaults to today, `from` to DEFAULT_RANGE_DAYS before. */
export function resolveRange(
  from: string | undefined,
  to: string | undefined,
  nowMs: number,
): { from: string; to: string; days: string[] } {
  const end = to === undefined ? Date.parse(`${isoDay(nowMs)}T00:00:00Z`) : parseDay(to, 'to');
  const start = from === undefined ? end - (DEFAULT_RANGE_DAYS - 1) * DAY_MS : parseDay(from, 'from');
  if (start > end)
    throw errors.invalidRequest(`Invalid 'from': ${isoDay(start)} is after 'to' (${isoDay(end)}).`, 'from');
  const count = Math.round((end - start) / DAY_MS) + 1;
  if (count > MAX_RANGE_DAYS)
    throw errors.invalidRequest(
      `Invalid 'from': the range ${isoDay(start)}..${isoDay(end)} spans ${count} days; at most ${MAX_RANGE_DAYS}.`,
      'from',
    );
  return {
    from: isoDay(start),
    to: isoDay(end),
    days: daysBetween(isoDay(start), isoDay(end), MAX_RANGE_DAYS),
  };
}

const zero = (): Totals => Object.fromEntries(METRICS.map((m) => [m, 0])) as Totals;

function addInto(into: Totals, t: Totals): void {
  for (const m of METRICS) into[m] += t[m];
}

export function toUsdTotals(t: Totals): SpendTotals {
  return {
    requests: t.requests,
    tokens: t.tokens,
    prompt_tokens: t.prompt_tokens,
    completion_tokens: t.completion_tokens,
    cached_tokens: t.cached_tokens,
    reasoning_tokens: t.reasoning_tokens,
    cost_usd: microsToUsd(t.cost),
    saved_usd: microsToUsd(t.saved),
  };
}

function mapValues(m: Map<string, Totals>): Record<string, SpendTotals> {
  const out: Record<string, SpendTotals> = {};
  for (const [name, t] of [...m].sort(([a], [b]) => a.localeCompare(b))) out[name] = toUsdTotals(t);
  return out;
}

const GROUP = { key: 'keys', model: 'models', feature: 'features' } as const;

/** Reads the days' hashes of every team in one store call and sums them. */
export async function readSpend(
  store: Pick<Store, 'readCounters'>,
  keys: Pick<Keys, 'teamSpend'>,
  q: SpendQuery,
  days: readonly string[],
): Promise<SpendReport> {
  const pairs = q.teams.flatMap((team) => days.map((day) => ({ team, day })));
  const hashes = await store.readCounters(pairs.map((p) => keys.teamSpend(p.team, `d:${p.day}`)));
  const perDay = new Map(days.map((d) => [d, zero()]));
  const perTeam = new Map(q.teams.map((t) => [t, zero()]));
  const groups = {
    keys: new Map<string, Totals>(),
    models: new Map<string, Totals>(),
    features: new Map<string, Totals>(),
  };
  const total = zero();
  pairs.forEach(({ team, day }, i) => {
    const b = breakdown(hashes[i] ?? {});
    const picked = q.filter ? b[GROUP[q.filter.dimension]][q.filter.name] : b.total;
    if (picked) {
      addInto(perDay.get(day)!, picked);
      addInto(perTeam.get(team)!, picked);
      addInto(total, picked);
    }
    if (q.filter) return;
    for (const g of ['keys', 'models', 'features'] as const) {
      for (const [name, t] of Object.entries(b[g])) {
        let into = groups[g].get(name);
        if (!into) groups[g].set(name, (into = zero()));
        addInto(into, t);
      }
    }
  });
  return {
    object: 'spend',
    team: q.team ?? null,
    from: q.from,
    to: q.to,
    filter: q.filter ? { [q.filter.dimension]: q.filter.name } : null,
    days: days.map((date) => ({ date, ...toUsdTotals(perDay.get(date)!) })),
    total: toUsdTotals(total),
    ...(q.team === undefined ? { by_team: mapValues(perTeam) } : {}),
    ...(q.filter
      ? {}
      : {
          by_key: mapValues(groups.keys),
          by_model: mapValues(groups.models),
          by_feature: mapValues(groups.features),
        }),
  };
}
