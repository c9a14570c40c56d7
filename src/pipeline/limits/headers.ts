// OpenAI's rate-limit response headers (PROTOCOL.md): limit, remaining and reset for requests
// and for tokens, where reset is the time until the bucket is full again, written as a Go
// duration ("12ms", "1s", "51.189s", "6m0s").
import type { BucketSnapshot } from '../../stores/store.js';

export function formatDuration(ms: number): string {
  const total = Math.max(0, Math.ceil(ms));
  if (total < 1000) return `${total}ms`;
  const hours = Math.floor(total / 3_600_000);
  const minutes = Math.floor((total % 3_600_000) / 60_000);
  const seconds = (total % 60_000) / 1000;
  const s = `${Number(seconds.toFixed(3))}s`;
  if (hours > 0) return `${hours}h${minutes}m${s}`;
  if (minutes > 0) return `${minutes}m${s}`;
  return s;
}

export interface LimitState {
  dimension: 'requests' | 'tokens';
  limit: number;
  snapshot: BucketSnapshot;
}

const DIMENSIONS = ['requests', 'tokens'] as const;

/** The names as constants: built per request, they cost a string concatenation each. */
const HEADER_NAMES = {
  requests: {
    limit: 'x-ratelimit-limit-requests',
    remaining: 'x-ratelimit-remaining-requests',
    reset: 'x-ratelimit-reset-requests',
  },
  tokens: {
    limit: 'x-ratelimit-limit-tokens',
    remaining: 'x-ratelimit-remaining-tokens',
    reset: 'x-ratelimit-reset-tokens',
  },
} as const;

/**
 * One set of headers for the tightest bucket of each dimension (the one with the fewest tokens
 * left), so a client that paces itself by them never trips any of the other limits first.
 */
export function rateLimitHeaders(states: LimitState[]): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const dimension of DIMENSIONS) {
    let tightest: LimitState | undefined;
    for (const s of states) {
      if (s.dimension !== dimension) continue;
      if (!tightest || s.snapshot.remaining < tightest.snapshot.remaining) tightest = s;
    }
    if (!tightest) continue;
    const names = HEADER_NAMES[dimension];
    headers[names.limit] = String(tightest.limit);
    headers[names.remaining] = String(Math.max(0, Math.floor(tightest.snapshot.remaining)));
    headers[names.reset] = formatDuration(tightest.snapshot.resetMs);
  }
  return headers;
}
