// The UTC periods spend is aggregated and budgeted by. Names sort in time order and are what
// the store keys carry: d:2026-11-25, w:2026-W48 (ISO week, Monday first), m:2026-11, h:2026-11-25T13.
// The gateway's clock decides the period (replicas' clocks agree to well under a second; a
// request that settles across midnight counts in the day it settled).

export type BudgetPeriod = 'day' | 'week' | 'month';

export const PERIOD_PREFIX: Record<BudgetPeriod | 'hour', string> = {
  hour: 'h',
  day: 'd',
  week: 'w',
  month: 'm',
};

/** The names of the periods holding one instant. */
export interface PeriodNames {
  hour: string;
  day: string;
  week: string;
  month: string;
}

const HOUR_MS = 3_600_000;
let memo: { hour: number; names: PeriodNames } | undefined;

/**
 * The hour, day, ISO week and month holding `ms`. Every UTC period starts on an hour, so the
 * names are computed once per hour, not once per request (formatting them cost 1-2% of a
 * request's CPU at saturation).
 */
export function periodNames(ms: number): PeriodNames {
  const hour = Math.floor(ms / HOUR_MS);
  if (memo?.hour !== hour) {
    memo = { hour, names: { hour: hourOf(ms), day: dayOf(ms), week: weekOf(ms), month: monthOf(ms) } };
  }
  return memo.names;
}

export function dayOf(ms: number): string {
  return `d:${new Date(ms).toISOString().slice(0, 10)}`;
}

export function monthOf(ms: number): string {
  return `m:${new Date(ms).toISOString().slice(0, 7)}`;
}

export function hourOf(ms: number): string {
  return `h:${new Date(ms).toISOString().slice(0, 13)}`;
}

/** ISO 8601 week: weeks start on Monday; week 1 holds the year's first Thursday. */
export function weekOf(ms: number): string {
  const d = new Date(ms);
  const day = (d.getUTCDay() + 6) % 7; // Monday 0 ... Sunday 6
  const thursday = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() - day + 3);
  const year = new Date(thursday).getUTCFullYear();
  const week = Math.floor((thursday - Date.UTC(year, 0, 1)) / 86_400_000 / 7) + 1;
  return `w:${year}-W${String(week).padStart(2, '0')}`;
}

export function periodOf(period: BudgetPeriod, ms: number): string {
  switch (period) {
    case 'day':
      return periodNames(ms).day;
    case 'week':
      return periodNames(ms).week;
    case 'month':
      return periodNames(ms).month;
  }
}

/** When the period holding `ms` ends (epoch ms): for a budget's reset time. */
export function periodEnd(period: BudgetPeriod, ms: number): number {
  const d = new Date(ms);
  const y = d.getUTCFullYear();
  const m = d.getUTCMonth();
  const day = d.getUTCDate();
  switch (period) {
    case 'day':
      return Date.UTC(y, m, day + 1);
    case 'week':
      return Date.UTC(y, m, day + (7 - ((d.getUTCDay() + 6) % 7)));
    case 'month':
      return Date.UTC(y, m + 1, 1);
  }
}

/** The UTC days from `from` to `to` inclusive (YYYY-MM-DD), at most `max`. */
export function daysBetween(from: string, to: string, max = 366): string[] {
  const start = Date.parse(`${from}T00:00:00Z`);
  const end = Date.parse(`${to}T00:00:00Z`);
  const out: string[] = [];
  for (let t = start; t <= end && out.length < max; t += 86_400_000)
    out.push(new Date(t).toISOString().slice(0, 10));
  return out;
}
