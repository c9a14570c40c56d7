// Alerts (budget thresholds, spend anomalies) go to one configured webhook as a JSON POST.
// Delivery is retried with backoff; it never blocks or fails a request: a request only queues
// the alert. What could not be delivered after every attempt is logged at error level, so the
// log is the record of last resort.
import type { Logger } from 'pino';
import { request } from 'undici';
import { setTimeout as sleep } from 'node:timers/promises';

export interface WebhookConfig {
  url: string;
  headers: Record<string, string>;
  timeoutMs: number;
  /** Attempts per alert, the first included. */
  attempts: number;
  /** Backoff before attempt n+1: baseDelayMs * 2^(n-1). */
  baseDelayMs: number;
}

export type Alert =
  | {
      type: 'budget.threshold';
      team: string;
      keyId?: string;
      period: string;
      metric: 'usd' | 'tokens';
      threshold_percent: number;
      limit: number;
      used: number;
    }
  | {
      type: 'spend.anomaly';
      team: string;
      hour: string;
      last_hour_usd: number;
      trailing_hourly_avg_usd: number;
      multiple: number;
    };

export interface Alerter {
  send(alert: Alert): void;
  /** Resolves when every queued alert is delivered or given up on (shutdown, tests). */
  drain(): Promise<void>;
}

export function createAlerter(config: WebhookConfig | undefined, log: Logger): Alerter {
  const inFlight = new Set<Promise<void>>();
  async function deliver(alert: Alert): Promise<void> {
    const body = JSON.stringify({ ...alert, at: new Date().toISOString(), source: 'tollgate' });
    let lastError = '';
    for (let attempt = 1; config && attempt <= config.attempts; attempt++) {
      try {
        const res = await request(config.url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...config.headers },
          body,
          headersTimeout: config.timeoutMs,
          bodyTimeout: config.timeoutMs,
        });
        await res.body.dump();
        if (res.statusCode < 300) return;
        lastError = `status ${res.statusCode}`;
        // A 4xx other than 408/429 will not change on a retry.
        if (res.statusCode < 500 && res.statusCode !== 408 && res.statusCode !== 429) break;
      } catch (err) {
        lastError = err instanceof Error ? err.message : String(err);
      }
      if (attempt < config.attempts) await sleep(config.baseDelayMs * 2 ** (attempt - 1));
    }
    log.error({ alert, error: lastError }, 'alert webhook failed; the alert is only in this log line');
  }
  return {
    send(alert) {
      log.warn({ alert }, 'alert');
      if (!config) return;
      const p = deliver(alert).finally(() => inFlight.delete(p));
      inFlight.add(p);
    },
    async drain() {
      while (inFlight.size > 0) await Promise.all([...inFlight]);
    },
  };
}
