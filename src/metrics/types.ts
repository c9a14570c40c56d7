// The shapes the request path hands to Metrics: one finished request, one request's cost, and
// the options a Metrics object is built with. metrics.ts re-exports them.

export type CacheStatus = 'HIT' | 'MISS' | 'BYPASS';
export type LimitKind = 'requests' | 'tokens' | 'concurrency' | 'budget';

/** One finished request, as its log line describes it. */
export interface RequestObservation {
  /** '' when the request never authenticated. */
  team: string;
  keyId?: string | undefined;
  /** The model as requested; undefined when the body never parsed. */
  model: string | undefined;
  /** 'chat' or 'embeddings'. */
  endpoint: string;
  status: number;
  cache: CacheStatus | undefined;
  stream: boolean;
  latencyMs: number;
  /** Time to the first chunk written to the client; streams only. */
  ttftMs: number | undefined;
  errorCode: string | undefined;
}

/** The token counts read from OpenAI-shaped usage. */
export interface UsageCounts {
  prompt_tokens: number;
  completion_tokens?: number;
  prompt_tokens_details?: { cached_tokens?: number } | null;
  completion_tokens_details?: { reasoning_tokens?: number } | null;
}

/** What one request came to (the accounting stage's RequestCost fits this shape). */
export interface CostObservation {
  team: string;
  keyId: string | undefined;
  model: string;
  deployment: { id: string } | undefined;
  usage: UsageCounts | undefined;
  /** Integer micro-dollars; 0 for a cache hit; null when the price is unknown. */
  costMicros: number | null;
  savedMicros: number;
  estimated: boolean;
  cacheHit: boolean;
}

/** Label values from config: always labelled as themselves, never counted against the cap. */
export interface KnownLabelValues {
  teams?: Iterable<string>;
  models?: Iterable<string>;
  deployments?: Iterable<string>;
  keyIds?: Iterable<string>;
}

export interface MetricsOptions {
  /** Add a key_id label to the request, token and cost counters (`accounting.metricsKeyLabels`). */
  keyLabels: boolean;
  /** Distinct values per label beyond `known` before new ones become "other" (default 200). */
  maxLabelValues?: number;
  known?: KnownLabelValues;
  /** Also expose prom-client's process and Node runtime metrics (default true). */
  processMetrics?: boolean;
  /** Spend increments waiting for Redis, read at scrape time. */
  pendingSpend?: () => number;
  /** Spend increments dropped since start because the buffer was full (cumulative). */
  droppedSpend?: () => number;
}
