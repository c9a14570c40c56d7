// Repeated failed authentication from one address is blocked for a while. Keys are 256-bit
// random, so guessing one is hopeless anyway; what this stops is the noise and cost of a
// scanner or a misconfigured client hammering the gateway with bad keys, and it makes any key
// leaked in part no easier to complete. Every 401 the gateway answers counts (team keys on /v1,
// the admin key on /admin, the metrics token). Past `maxFailures` within `windowMs` the address
// gets 429 on every authenticated route, whatever key it sends, for `blockMs`: answering a
// valid key normally while blocked would let the scanner tell a hit from a miss.
//
// Per process: each replica (or worker) counts its own, so N replicas allow N times the
// failures; behind a load balancer, the address is the balancer's unless server.trustProxy is
// on (then the client's, from X-Forwarded-For).
import { LRUCache } from 'lru-cache';

export interface AuthFailureOptions {
  /** Failures allowed per address within the window; 0 turns blocking off. */
  maxFailures: number;
  windowMs: number;
  blockMs: number;
  now?: () => number;
  /** Addresses remembered at most (least recently seen forgotten first). */
  maxAddresses?: number;
}

interface Entry {
  /** Failures in the current window, and when it started. */
  failures: number;
  windowStart: number;
  /** Blocked until (epoch ms), 0 when not blocked. */
  blockedUntil: number;
}

export class AuthFailureLimiter {
  private readonly entries: LRUCache<string, Entry>;
  private readonly now: () => number;

  constructor(private readonly options: AuthFailureOptions) {
    this.now = options.now ?? Date.now;
    this.entries = new LRUCache({ max: options.maxAddresses ?? 100_000 });
  }

  get enabled(): boolean {
    return this.options.maxFailures > 0;
  }

  /** Milliseconds `address` stays blocked; 0 when it may try. */
  blockedFor(address: string): number {
    if (!this.enabled || this.entries.size === 0) return 0;
    const e = this.entries.get(address);
    if (!e || e.blockedUntil === 0) return 0;
    const left = e.blockedUntil - this.now();
    if (left > 0) return left;
    this.entries.delete(address);
    return 0;
  }

  /** Counts one failed authentication; returns true when it blocks the address. */
  failed(address: string): boolean {
    if (!this.enabled) return false;
    const now = this.now();
    let e = this.entries.get(address);
    if (!e || now - e.windowStart >= this.options.windowMs) {
      e = { failures: 0, windowStart: now, blockedUntil: e?.blockedUntil ?? 0 };
      this.entries.set(address, e);
    }
    e.failures += 1;
    if (e.failures > this.options.maxFailures && e.blockedUntil <= now) {
      e.blockedUntil = now + this.options.blockMs;
      return true;
    }
    return false;
  }
}
