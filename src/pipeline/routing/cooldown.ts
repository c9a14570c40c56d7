// Cooldowns: a deployment that keeps failing (N failures within a window, counted in a token
// bucket of the store) or answers 429 with a long Retry-After is skipped for a while, then
// probed again by the next request that reaches it. Shared across replicas through the store;
// each replica also keeps a local copy, refreshed in the background, so checking a candidate
// costs no round trip on the request path.
import type { Logger } from 'pino';
import type { RoutingConfig } from '../../config/schema.js';
import type { Keys } from '../../stores/keys.js';
import type { Store } from '../../stores/store.js';

const REFRESH_MS = 1_000;

export class Cooldowns {
  /** Deployment id -> end of its cooldown (epoch ms). */
  private readonly until = new Map<string, number>();
  private readonly known = new Set<string>();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly store: Store,
    private readonly keys: Keys,
    private readonly policy: RoutingConfig['cooldown'],
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.timer = setInterval(() => void this.refresh(), REFRESH_MS);
    this.timer.unref();
  }

  /** Milliseconds left of the deployment's cooldown; 0 when it may be tried. */
  remainingMs(id: string): number {
    this.known.add(id);
    const end = this.until.get(id);
    if (end === undefined) return 0;
    const left = end - this.now();
    if (left <= 0) this.until.delete(id);
    return Math.max(0, left);
  }

  /** Counts a failure; the one that exhausts the failure budget starts a cooldown. */
  recordFailure(id: string): void {
    const { failures, windowMs, cooldownMs } = this.policy;
    if (cooldownMs <= 0) return;
    const bucket = {
      key: this.keys.deploymentBucket(id, 'failures'),
      capacity: failures,
      refillPerSecond: failures / (windowMs / 1000),
    };
    this.store
      .take([{ bucket, cost: 1 }])
      .then((r) => {
        if (!r.admitted || r.buckets[0]!.remaining < 1) this.start(id, cooldownMs, `${failures} failures`);
      })
      .catch((err: unknown) => this.log.debug({ err }, 'cooldown failure count unavailable'));
  }

  /** Starts (or extends) a cooldown now, here and for every replica. */
  start(id: string, ms: number, reason: string): void {
    const end = this.now() + ms;
    if ((this.until.get(id) ?? 0) >= end) return;
    this.until.set(id, end);
    this.log.warn({ deployment: id, cooldownMs: ms, reason }, 'deployment cooling down');
    this.store
      .cacheSet(this.keys.deploymentCooldown(id), Buffer.from(String(end)), ms)
      .catch((err: unknown) => this.log.debug({ err }, 'cooldown not shared'));
  }

  /** Pulls the cooldowns other replicas set for the deployments this one has seen. */
  async refresh(): Promise<void> {
    await Promise.all(
      [...this.known].map(async (id) => {
        try {
          const v = await this.store.cacheGet(this.keys.deploymentCooldown(id));
          const end = v ? Number(v.toString()) : NaN;
          if (Number.isFinite(end) && end > (this.until.get(id) ?? 0)) this.until.set(id, end);
        } catch {
          // The store is away: local knowledge stands until it is back.
        }
      }),
    );
  }

  close(): void {
    clearInterval(this.timer);
  }
}
