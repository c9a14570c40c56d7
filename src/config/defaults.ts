// Default values, in one place so the README's configuration reference can point here.
import type { ServerConfig, TimeoutsConfig } from './schema.js';

export const DEFAULT_SERVER: ServerConfig = {
  host: '127.0.0.1',
  port: 8080,
  bodyLimitBytes: 8 * 1024 * 1024,
  // Node's default is 60 s: a client trickling one header line at a time holds a connection
  // that long. Real clients send their headers in one write; 10 s leaves room for a slow link.
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 60_000,
  shutdownTimeoutMs: 30_000,
  shutdownDelayMs: 0,
  trustProxy: false,
  logPrompts: false,
  logLevel: 'info',
  authFailures: { maxFailures: 20, windowSeconds: 60, blockSeconds: 300 },
};

export const DEFAULT_TIMEOUTS: TimeoutsConfig = {
  connectMs: 5_000,
  firstByteMs: 120_000,
  idleMs: 60_000,
  totalMs: 600_000,
};

/**
 * Upstream connections per provider: unlimited. Every in-flight request (a long stream
 * included) holds one connection, so a cap would queue requests behind slow streams and look
 * like stalls; cap it only where an upstream limits connections.
 */
export const DEFAULT_CONNECTIONS: number | null = null;

/**
 * The largest upstream response body accepted: 128 MiB. Far above any chat completion (a
 * 128k-token answer is ~1 MB of JSON); a batch of 2,048 embeddings of 3,072 floats is ~40 MB
 * as base64, over 100 MB as JSON numbers.
 */
export const DEFAULT_MAX_RESPONSE_BYTES = 128 * 1024 * 1024;

/** Base URLs used when a provider entry (or the zero-config environment) names none. */
export const DEFAULT_BASE_URLS: Record<'openai' | 'azure' | 'anthropic', string | undefined> = {
  openai: 'https://api.openai.com/v1',
  // Azure's base URL is the resource's own (https://RESOURCE.openai.azure.com): no default.
  azure: undefined,
  anthropic: 'https://api.anthropic.com/v1',
};

/** A GA api-version of Azure OpenAI's data plane. */
export const DEFAULT_AZURE_API_VERSION = '2024-10-21';

export const DEFAULT_CONFIG_PATH = 'config/tollgate.yaml';

export const DEFAULT_REDIS = {
  keyPrefix: 'tg:',
  /**
   * A store call fails after this long with no reply from Redis at all (resilient-store.ts).
   * 250, not 100: on a 2-core host at saturation an answering Redis, starved of CPU, went
   * 100 ms without a reply often enough to send 2,083 requests of a bench run to 503.
   */
  commandTimeoutMs: 250,
  connectTimeoutMs: 2_000,
  onUnavailable: 'open',
} as const;

export const DEFAULT_MEMORY_CACHE_BYTES = 64 * 1024 * 1024;

export const DEFAULT_CACHE = {
  enabled: true,
  ttlSeconds: 3_600,
  maxTtlSeconds: 86_400,
  maxEntryBytes: 1024 * 1024,
  cacheSampled: false,
  shared: false,
} as const;

export const DEFAULT_LIMITS = {
  /**
   * Byte-level BPE tokens cover at least one byte each, so bytes are a hard upper bound; 3 bytes
   * per token still over-estimates English (about 4) and code, and is near CJK text (3 bytes
   * per character, about one token each). Reconciled with the real usage afterwards.
   */
  bytesPerToken: 3,
  expectedCompletionTokens: 1_024,
  /**
   * Eight tickets cover a team's requests in flight at a few thousand requests per second on one
   * replica; two seconds bounds how long an idle replica holds them; a half of every limit left
   * keeps them away from teams that could need what they hold.
   */
  admitAhead: { tickets: 8, maxAgeMs: 2_000, headroom: 0.5 },
} as const;

export const DEFAULT_ROUTING = {
  retry: {
    maxAttempts: 3,
    baseDelayMs: 250,
    maxDelayMs: 4_000,
    maxRetryAfterMs: 10_000,
  },
  cooldown: {
    failures: 3,
    windowMs: 60_000,
    cooldownMs: 30_000,
  },
  deadlineMs: 600_000,
} as const;

/** Budget alert thresholds (percent of the limit) when a budget names none. */
export const DEFAULT_BUDGET_THRESHOLDS = [50, 80, 100];

export const DEFAULT_ACCOUNTING = {
  // A little over a year: this month last year stays comparable.
  retentionDays: 400,
  metricsKeyLabels: false,
  // One store call per team per 25 ms instead of one per request; budgets see spend that late.
  flushMs: 25,
};

export const DEFAULT_WEBHOOK = { timeoutMs: 5_000, attempts: 5, baseDelayMs: 500 };

export const DEFAULT_ANOMALY = { multiple: 3, trailingHours: 24, minHourlyUsd: 1, checkIntervalSeconds: 60 };

/** How often a replica reloads runtime keys and revocations (admin.keyRefreshMs). */
export const DEFAULT_KEY_REFRESH_MS = 5_000;
