// The spend anomaly check: every checkIntervalSeconds, for each team, the spend of the last 60
// minutes (this clock hour, plus the part of the previous one still inside the window) against
// the average of the `trailingHours` whole hours before this one. Above `multiple` times that
// average (and above minHourlyUsd) the alert fires, once per team per clock hour across every
// replica: the first replica to bump the hour's `anomaly_alerts` counter to 1 sends it. A team
// with no spend in the trailing window has no baseline and raises no alert.
import type { Logger } from 'pino';
import type { AnomalyConfig } from '../config/schema.js';
import type { Keys } from '../stores/keys.js';
import type { Store } from '../stores/store.js';
import { hourOf } from './periods.js';
import { microsToUsd } from './spend.js';
import type { Alerter } from './webhook.js';

const HOUR_MS = 3_600_000;

export interface AnomalyWatchDeps {
  store: Store;
  keys: Keys;
  log: Logger;
  alerter: Alerter;
  teams: () => string[];
  now?: () => number;
}

export interface AnomalyWatch {
  /** One check of every team (the timer calls it; tests call it directly). */
  check(): Promise<void>;
  stop(): void;
}

export function startAnomalyWatch(
  deps: AnomalyWatchDeps,
  config: AnomalyConfig,
  retentionMs: number,
): AnomalyWatch {
  const now = deps.now ?? Date.now;
  let running = false;
  async function checkTeam(team: string, t: number): Promise<void> {
    const hours = Array.from({ length: config.trailingHours + 2 }, (_, i) =>
      deps.keys.teamSpend(team, hourOf(t - i * HOUR_MS)),
    );
    const hashes = await deps.store.readCounters(hours);
    const cost = (i: number): number => hashes[i]?.cost ?? 0;
    const elapsed = (t % HOUR_MS) / HOUR_MS;
    const lastHour = cost(0) + cost(1) * (1 - elapsed);
    let trailing = 0;
    for (let i = 1; i <= config.trailingHours; i++) trailing += cost(i);
    const average = trailing / config.trailingHours;
    if (average <= 0 || lastHour < config.minHourlyUsd * 1_000_000 || lastHour <= config.multiple * average)
      return;
    const [alerts] = await deps.store.settle(
      deps.keys.teamBudgetLeases(team),
      [],
      [{ key: hours[0]!, field: 'anomaly_alerts', by: 1 }],
      retentionMs,
    );
    if (alerts !== 1) return;
    deps.alerter.send({
      type: 'spend.anomaly',
      team,
      hour: hourOf(t).slice(2),
      last_hour_usd: microsToUsd(Math.round(lastHour)),
      trailing_hourly_avg_usd: microsToUsd(Math.round(average)),
      multiple: Math.round((lastHour / average) * 100) / 100,
    });
  }
  async function check(): Promise<void> {
    if (running) return;
    running = true;
    try {
      const t = now();
      for (const team of deps.teams()) {
        try {
          await checkTeam(team, t);
        } catch (err) {
          deps.log.warn({ err, team }, 'spend anomaly check failed');
        }
      }
    } finally {
      running = false;
    }
  }
  const timer = setInterval(() => void check(), config.checkIntervalSeconds * 1000).unref();
  return { check, stop: () => clearInterval(timer) };
}
