// Live, per-process figures the routing strategies read: requests in flight per deployment, a
// moving average of time to first token, and the share of quota left at the last admission.
// Local on purpose: these steer load, they do not enforce anything, so no store round trip.
import type { RoutingStats } from './strategies.js';

/** Weight of the newest sample in the moving average. */
const EWMA_ALPHA = 0.2;

export class DeploymentStats implements RoutingStats {
  private readonly flights = new Map<string, number>();
  private readonly ttft = new Map<string, number>();
  private readonly quota = new Map<string, number>();

  inFlight(id: string): number {
    return this.flights.get(id) ?? 0;
  }

  ttftMs(id: string): number | undefined {
    return this.ttft.get(id);
  }

  quotaLeft(id: string): number | undefined {
    return this.quota.get(id);
  }

  /** Marks a request to `id` as started; call the returned function once when it ends. */
  start(id: string): () => void {
    this.flights.set(id, this.inFlight(id) + 1);
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      const n = this.inFlight(id) - 1;
      if (n <= 0) this.flights.delete(id);
      else this.flights.set(id, n);
    };
  }

  recordTtft(id: string, ms: number): void {
    const prev = this.ttft.get(id);
    this.ttft.set(id, prev === undefined ? ms : prev + EWMA_ALPHA * (ms - prev));
  }

  recordQuota(id: string, remaining: number, capacity: number): void {
    if (capacity > 0) this.quota.set(id, Math.max(0, Math.min(1, remaining / capacity)));
  }
}
