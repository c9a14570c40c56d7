// The config file's JSON schema and the typed, defaulted Config the rest of the gateway reads.
// The schema is the single source of what a config may contain; load.ts validates against it
// and reports every problem with the path that holds it.

export interface TimeoutsConfig {
  /** TCP (+TLS) connect. */
  connectMs: number;
  /** From sending the request to the response headers (the upstream's time to first byte). */
  firstByteMs: number;
  /** Longest silence between two body chunks (a stalled stream). */
  idleMs: number;
  /** The whole upstream call, headers to last byte. */
  totalMs: number;
}

export interface ProviderConfig {
  name: string;
  /**
   * openai: OpenAI and every OpenAI-compatible server; azure: Azure OpenAI (deployment URLs,
   * api-key header); anthropic: the Messages API, translated.
   */
  type: 'openai' | 'azure' | 'anthropic';
  /** Azure OpenAI's api-version query parameter. */
  apiVersion: string | undefined;
  /** Base URL including the version path, e.g. https://api.openai.com/v1 */
  baseUrl: string;
  apiKey: string | undefined;
  headers: Record<string, string>;
  timeouts: TimeoutsConfig;
  /** Most connections in this provider's keep-alive pool; null means no limit. */
  connections: number | null;
  /**
   * Largest response body accepted from this provider (a JSON answer, or a stream in total);
   * beyond it the request fails with upstream_bad_response instead of filling the gateway's memory.
   */
  maxResponseBytes: number;
}

export interface RateLimitConfig {
  /** Requests per minute. */
  rpm: number | undefined;
  /** Tokens (prompt + completion) per minute. */
  tpm: number | undefined;
}

export interface PricesConfig {
  /** USD per million tokens. */
  inputPerMillion: number | undefined;
  cachedInputPerMillion: number | undefined;
  outputPerMillion: number | undefined;
  /** Anthropic's 5-minute cache writes (and any provider's only kind). */
  cacheWritePerMillion: number | undefined;
  /** Anthropic's 1-hour cache writes. */
  cacheWrite1hPerMillion: number | undefined;
}

export interface DeploymentConfig {
  provider: string;
  /** Model name sent upstream; undefined means "the name the client asked for" (wildcard routes). */
  model: string | undefined;
  /** The upstream's own quota for this deployment (the provider account's RPM/TPM). */
  rpm: number | undefined;
  tpm: number | undefined;
  /** Share for the weighted strategy (default 1). */
  weight: number;
  /** Prompt + output tokens the model accepts; requests that cannot fit skip this deployment. */
  contextWindow: number | undefined;
  maxOutputTokens: number | undefined;
  prices: PricesConfig | undefined;
  /** Overrides of the provider's timeouts for this deployment. */
  timeouts: Partial<TimeoutsConfig> | undefined;
}

export type StrategyName =
  'priority' | 'weighted' | 'least-in-flight' | 'lowest-latency' | 'most-quota' | 'cheapest';

export interface AliasConfig {
  name: string;
  /** Model names whose deployments are the alias's candidates. */
  models: string[];
  strategy: StrategyName;
}

export interface RouteRuleConfig {
  /** Every condition given must hold; an empty `when` always matches. */
  when: {
    teams: string[] | undefined;
    tiers: string[] | undefined;
    /** Model names as requested. */
    models: string[] | undefined;
    /** Value of the x-tollgate-route request header. */
    route: string | undefined;
    /** Other request headers (a task tag), lower-case names, exact values. */
    headers: Record<string, string> | undefined;
  };
  /** The model or alias to use instead. */
  use: string;
}

export interface RoutingConfig {
  rules: RouteRuleConfig[];
  retry: {
    /** Upstream calls per request at most, fallbacks included. */
    maxAttempts: number;
    baseDelayMs: number;
    maxDelayMs: number;
    /** An upstream Retry-After longer than this moves on to the next candidate at once. */
    maxRetryAfterMs: number;
  };
  cooldown: {
    /** This many failures of a deployment within windowMs put it in cooldown. */
    failures: number;
    windowMs: number;
    cooldownMs: number;
  };
  /** All attempts of one request together, from arrival. */
  deadlineMs: number;
}

export interface ModelConfig {
  name: string;
  deployments: DeploymentConfig[];
  strategy: StrategyName;
  /** Models tried, in order, after every deployment of this one failed. */
  fallbacks: string[];
  /** Models tried when the request does not fit this model's context window. */
  contextFallbacks: string[];
}

export type BudgetPeriodName = 'day' | 'week' | 'month';

export interface BudgetConfig {
  period: BudgetPeriodName;
  /** Hard limit in USD per period. */
  usd: number | undefined;
  /** Hard limit in tokens (prompt + completion) per period. */
  tokens: number | undefined;
  /** Percentages of the limit at which an alert fires, once each per period. */
  thresholds: number[];
}

export interface TeamKeyConfig {
  id: string;
  sha256: string;
  budgets: BudgetConfig[];
}

export interface TeamLimitsConfig extends RateLimitConfig {
  /** Most requests of the team in flight at once, across replicas. */
  concurrency: number | undefined;
  /** Over a limit, wait (FIFO per team) up to this long for capacity instead of answering 429. */
  maxWaitMs: number;
  /** Limits for each key of the team on its own. */
  perKey: RateLimitConfig | undefined;
  /** Limits for the team's use of one model. */
  models: Record<string, RateLimitConfig>;
}

export interface TeamCacheConfig {
  enabled: boolean | undefined;
  ttlSeconds: number | undefined;
}

export interface TeamConfig {
  name: string;
  keys: TeamKeyConfig[];
  /** Model names the team may use; '*' allows every configured model. */
  models: string[];
  /** A label routing rules can match (free, pro, enterprise, ...). */
  tier: string | undefined;
  limits: TeamLimitsConfig | undefined;
  cache: TeamCacheConfig;
  budgets: BudgetConfig[];
}

export interface TierConfig {
  /** Most output tokens a request of this tier may ask for (max_tokens / max_completion_tokens). */
  maxOutputTokens: number | undefined;
  /** Above the cap: lower the request's value to the cap, or refuse it (400). */
  onExceed: 'clamp' | 'reject';
}

export interface WebhookSettings {
  url: string;
  headers: Record<string, string>;
  timeoutMs: number;
  attempts: number;
  baseDelayMs: number;
}

export interface AnomalyConfig {
  /** Alert when the last hour's spend exceeds this multiple of the trailing hourly average. */
  multiple: number;
  trailingHours: number;
  /** No alert below this hourly spend (a team going from $0.01 to $0.05 is not news). */
  minHourlyUsd: number;
  checkIntervalSeconds: number;
}

export interface AccountingConfig {
  /** Append one JSON line per request to this file. */
  ledgerPath: string | undefined;
  /** How long daily, weekly and monthly spend counters are kept. */
  retentionDays: number;
  /** Where alerts (budget thresholds, anomalies) are POSTed; alerts are logged either way. */
  webhook: WebhookSettings | undefined;
  anomaly: AnomalyConfig | undefined;
  /** Label metrics with key ids (off: unbounded label cardinality). */
  metricsKeyLabels: boolean;
  /** Spend gathers this long before it is written (one store call per team per window). */
  flushMs: number;
}

export interface AdminConfig {
  /** sha256 (hex) of each admin key. TOLLGATE_ADMIN_KEY adds one. */
  keySha256: string[];
  /** How often each replica reloads runtime keys and revocations from the store. */
  keyRefreshMs: number;
}

export interface RedisConfig {
  url: string | undefined;
  sentinel:
    { name: string; sentinels: { host: string; port: number }[]; password: string | undefined } | undefined;
  cluster: { nodes: { host: string; port: number }[] } | undefined;
  keyPrefix: string;
  commandTimeoutMs: number;
  connectTimeoutMs: number;
  /** Redis down: 'open' serves with local limits and no cache; 'closed' answers 503. */
  onUnavailable: 'open' | 'closed';
}

export interface StoreConfig {
  type: 'memory' | 'redis';
  redis: RedisConfig | undefined;
  /** MemoryStore's cache bound (also the local fallback's). */
  memoryCacheMaxBytes: number;
}

export interface CacheConfig {
  enabled: boolean;
  ttlSeconds: number;
  /** Ceiling for the per-request x-tollgate-cache-ttl header. */
  maxTtlSeconds: number;
  maxEntryBytes: number;
  /** Also cache sampled requests (temperature > 0 or absent). */
  cacheSampled: boolean;
  /** Share entries across teams (off: every team has its own cache). */
  shared: boolean;
  models: Record<string, TeamCacheConfig>;
}

export interface LimitsConfig {
  /** Prompt tokens are estimated as ceil(body bytes / bytesPerToken) at admission. */
  bytesPerToken: number;
  /** Completion tokens reserved when a request sets no max_tokens / max_completion_tokens. */
  expectedCompletionTokens: number;
  /**
   * Admission ahead (Redis store only): admissions made in advance for the next requests of a
   * team, key and model, so that a request far from every limit does not wait for its admission
   * script (pipeline/limits/ahead.ts).
   */
  admitAhead: AdmitAheadConfig;
}

export interface AdmitAheadConfig {
  /** Most tickets (admissions made ahead) kept per team, key and model, per replica; 0: off. */
  tickets: number;
  /** A ticket unused for this long is given back (ms). */
  maxAgeMs: number;
  /** Tickets are kept only while every limit and budget has this share (0-1) left. */
  headroom: number;
}

export interface CorsConfig {
  /** Origins allowed to call from a browser (`https://app.example.com`), or ['*'] for any. */
  origins: string[];
  /** Allow cookies and Authorization from the browser (never with '*'). */
  credentials: boolean;
  /** How long a browser may cache a preflight answer. */
  maxAgeSeconds: number;
}

export interface AuthFailuresConfig {
  /** Failed authentications allowed per address within the window; 0 turns blocking off. */
  maxFailures: number;
  windowSeconds: number;
  /** How long an address that went past the limit is refused. */
  blockSeconds: number;
}

export interface ServerConfig {
  host: string;
  port: number;
  bodyLimitBytes: number;
  /** Longest a client may take to send a request's headers (slowloris); Node's headersTimeout. */
  headersTimeoutMs: number;
  /** Longest a client may take to send a whole request, body included; Node's requestTimeout. */
  requestTimeoutMs: number;
  shutdownTimeoutMs: number;
  /**
   * On SIGTERM, how long /readyz answers 503 while requests are still served, before the
   * listener closes and the drain (shutdownTimeoutMs) begins. For load balancers that poll /readyz.
   */
  shutdownDelayMs: number;
  trustProxy: boolean;
  /** Log request bodies (prompts). Off by default: prompts are often confidential. */
  logPrompts: boolean;
  logLevel: string;
  /** Cross-origin requests from browsers: refused (no CORS headers) unless configured. */
  cors?: CorsConfig | undefined;
  /** Blocking of addresses that fail authentication repeatedly (http/auth-failures.ts). */
  authFailures: AuthFailuresConfig;
  /**
   * Worker processes (node:cluster) sharing the port, 'auto' already resolved to the core count;
   * undefined: one process, no cluster primary. Needs a Redis store beyond 1 (main.ts checks).
   */
  workers?: number | undefined;
}

export interface Config {
  server: ServerConfig;
  store: StoreConfig;
  cache: CacheConfig;
  limits: LimitsConfig;
  providers: Record<string, ProviderConfig>;
  models: Record<string, ModelConfig>;
  aliases: Record<string, AliasConfig>;
  routing: RoutingConfig;
  teams: TeamConfig[];
  accounting: AccountingConfig;
  tiers: Record<string, TierConfig>;
  admin: AdminConfig;
  /** Where the config came from (a path or 'environment'), for logs. */
  source: string;
}

const timeouts = {
  type: 'object',
  additionalProperties: false,
  properties: {
    connectMs: { type: 'integer', minimum: 1 },
    firstByteMs: { type: 'integer', minimum: 1 },
    idleMs: { type: 'integer', minimum: 1 },
    totalMs: { type: 'integer', minimum: 1 },
  },
} as const;

const name = { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$' } as const;

const positiveInt = { type: 'integer', minimum: 1 } as const;

const rateLimit = {
  type: 'object',
  additionalProperties: false,
  properties: { rpm: positiveInt, tpm: positiveInt },
} as const;

const cachePolicy = {
  type: 'object',
  additionalProperties: false,
  properties: { enabled: { type: 'boolean' }, ttlSeconds: { type: 'integer', minimum: 0 } },
} as const;

const strategy = {
  enum: ['priority', 'weighted', 'least-in-flight', 'lowest-latency', 'most-quota', 'cheapest'],
} as const;

const names = { type: 'array', items: name } as const;

const price = { type: 'number', minimum: 0 } as const;

const budgets = {
  type: 'array',
  items: {
    type: 'object',
    additionalProperties: false,
    required: ['period'],
    properties: {
      period: { enum: ['day', 'week', 'month'] },
      usd: { type: 'number', exclusiveMinimum: 0 },
      tokens: positiveInt,
      thresholds: {
        type: 'array',
        items: { type: 'number', exclusiveMinimum: 0, maximum: 1000 },
      },
    },
  },
} as const;

const hostPort = {
  type: 'object',
  additionalProperties: false,
  required: ['host', 'port'],
  properties: {
    host: { type: 'string', minLength: 1 },
    port: { type: 'integer', minimum: 1, maximum: 65535 },
  },
} as const;

export const configFileSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    server: {
      type: 'object',
      additionalProperties: false,
      properties: {
        host: { type: 'string', minLength: 1 },
        port: { type: 'integer', minimum: 0, maximum: 65535 },
        bodyLimitBytes: { type: 'integer', minimum: 1024 },
        headersTimeoutMs: positiveInt,
        requestTimeoutMs: positiveInt,
        shutdownTimeoutMs: { type: 'integer', minimum: 0 },
        shutdownDelayMs: { type: 'integer', minimum: 0, maximum: 300_000 },
        trustProxy: { type: 'boolean' },
        logPrompts: { type: 'boolean' },
        logLevel: { enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] },
        workers: { anyOf: [{ type: 'integer', minimum: 1, maximum: 1024 }, { const: 'auto' }] },
        cors: {
          type: 'object',
          additionalProperties: false,
          required: ['origins'],
          properties: {
            origins: {
              type: 'array',
              minItems: 1,
              items: { type: 'string', pattern: '^(\\*|https?://[^/\\s]+)$' },
            },
            credentials: { type: 'boolean' },
            maxAgeSeconds: { type: 'integer', minimum: 0, maximum: 86400 },
          },
        },
        authFailures: {
          type: 'object',
          additionalProperties: false,
          properties: {
            maxFailures: { type: 'integer', minimum: 0 },
            windowSeconds: { type: 'integer', minimum: 1 },
            blockSeconds: { type: 'integer', minimum: 1 },
          },
        },
      },
    },
    timeouts,
    store: {
      type: 'object',
      additionalProperties: false,
      properties: {
        type: { enum: ['memory', 'redis'] },
        memoryCacheMaxBytes: positiveInt,
        redis: {
          type: 'object',
          additionalProperties: false,
          properties: {
            url: { type: 'string', pattern: '^(rediss?://.*)?$' },
            sentinel: {
              type: 'object',
              additionalProperties: false,
              required: ['name', 'sentinels'],
              properties: {
                name: { type: 'string', minLength: 1 },
                sentinels: { type: 'array', minItems: 1, items: hostPort },
                password: { type: 'string' },
              },
            },
            cluster: {
              type: 'object',
              additionalProperties: false,
              required: ['nodes'],
              properties: { nodes: { type: 'array', minItems: 1, items: hostPort } },
            },
            keyPrefix: { type: 'string', pattern: '^[A-Za-z0-9:_.-]{0,64}$' },
            commandTimeoutMs: positiveInt,
            connectTimeoutMs: positiveInt,
            onUnavailable: { enum: ['open', 'closed'] },
          },
        },
      },
    },
    cache: {
      type: 'object',
      additionalProperties: false,
      properties: {
        enabled: { type: 'boolean' },
        ttlSeconds: { type: 'integer', minimum: 0 },
        maxTtlSeconds: { type: 'integer', minimum: 0 },
        maxEntryBytes: positiveInt,
        cacheSampled: { type: 'boolean' },
        shared: { type: 'boolean' },
        models: { type: 'object', additionalProperties: cachePolicy },
      },
    },
    limits: {
      type: 'object',
      additionalProperties: false,
      properties: {
        bytesPerToken: { type: 'number', exclusiveMinimum: 0 },
        expectedCompletionTokens: { type: 'integer', minimum: 0 },
        admitAhead: {
          type: 'object',
          additionalProperties: false,
          properties: {
            tickets: { type: 'integer', minimum: 0, maximum: 1024 },
            maxAgeMs: { type: 'integer', minimum: 50, maximum: 60_000 },
            headroom: { type: 'number', minimum: 0, maximum: 1 },
          },
        },
      },
    },
    providers: {
      type: 'object',
      propertyNames: name,
      additionalProperties: {
        type: 'object',
        additionalProperties: false,
        required: ['type'],
        properties: {
          type: { enum: ['openai', 'azure', 'anthropic'] },
          apiVersion: { type: 'string', minLength: 1 },
          baseUrl: { type: 'string', pattern: '^https?://' },
          apiKey: { type: 'string' },
          headers: { type: 'object', additionalProperties: { type: 'string' } },
          timeouts,
          connections: { type: 'integer', minimum: 1 },
          maxResponseBytes: { type: 'integer', minimum: 1024 },
        },
      },
    },
    models: {
      type: 'object',
      // A name ending in '*' is a prefix route ('claude-*'); '*' alone catches every other name.
      propertyNames: {
        anyOf: [name, { type: 'string', pattern: '^([A-Za-z0-9][A-Za-z0-9_.:/-]{0,126})?\\*$' }],
      },
      additionalProperties: {
        type: 'object',
        additionalProperties: false,
        required: ['deployments'],
        properties: {
          deployments: {
            type: 'array',
            minItems: 1,
            items: {
              type: 'object',
              additionalProperties: false,
              required: ['provider'],
              properties: {
                provider: name,
                model: { type: 'string', minLength: 1 },
                rpm: positiveInt,
                tpm: positiveInt,
                weight: { type: 'number', minimum: 0 },
                contextWindow: positiveInt,
                maxOutputTokens: positiveInt,
                prices: {
                  type: 'object',
                  additionalProperties: false,
                  properties: {
                    inputPerMillion: price,
                    cachedInputPerMillion: price,
                    outputPerMillion: price,
                    cacheWritePerMillion: price,
                    cacheWrite1hPerMillion: price,
                  },
                },
                timeouts,
              },
            },
          },
          strategy,
          fallbacks: names,
          contextFallbacks: names,
        },
      },
    },
    aliases: {
      type: 'object',
      propertyNames: name,
      additionalProperties: {
        type: 'object',
        additionalProperties: false,
        required: ['models'],
        properties: { models: { ...names, minItems: 1 }, strategy },
      },
    },
    routing: {
      type: 'object',
      additionalProperties: false,
      properties: {
        rules: {
          type: 'array',
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['use'],
            properties: {
              when: {
                type: 'object',
                additionalProperties: false,
                properties: {
                  teams: { type: 'array', items: { type: 'string' } },
                  tiers: { type: 'array', items: { type: 'string' } },
                  models: { type: 'array', items: { type: 'string' } },
                  route: { type: 'string' },
                  headers: { type: 'object', additionalProperties: { type: 'string' } },
                },
              },
              use: name,
            },
          },
        },
        retry: {
          type: 'object',
          additionalProperties: false,
          properties: {
            maxAttempts: positiveInt,
            baseDelayMs: { type: 'integer', minimum: 0 },
            maxDelayMs: { type: 'integer', minimum: 0 },
            maxRetryAfterMs: { type: 'integer', minimum: 0 },
          },
        },
        cooldown: {
          type: 'object',
          additionalProperties: false,
          properties: {
            failures: positiveInt,
            windowMs: positiveInt,
            cooldownMs: { type: 'integer', minimum: 0 },
          },
        },
        deadlineMs: positiveInt,
      },
    },
    teams: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'keys'],
        properties: {
          name: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$' },
          keys: {
            type: 'array',
            items: {
              type: 'object',
              additionalProperties: false,
              required: ['id', 'sha256'],
              properties: {
                id: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,64}$' },
                sha256: { type: 'string', pattern: '^[0-9a-f]{64}$' },
                budgets,
              },
            },
          },
          models: { type: 'array', items: { type: 'string', minLength: 1 } },
          tier: { type: 'string', minLength: 1 },
          limits: {
            type: 'object',
            additionalProperties: false,
            properties: {
              rpm: positiveInt,
              tpm: positiveInt,
              concurrency: positiveInt,
              maxWaitMs: { type: 'integer', minimum: 0 },
              perKey: rateLimit,
              models: { type: 'object', additionalProperties: rateLimit },
            },
          },
          cache: cachePolicy,
          budgets,
        },
      },
    },
    tiers: {
      type: 'object',
      propertyNames: { pattern: '^[A-Za-z0-9_.-]{1,64}$' },
      additionalProperties: {
        type: 'object',
        additionalProperties: false,
        properties: {
          maxOutputTokens: positiveInt,
          onExceed: { enum: ['clamp', 'reject'] },
        },
      },
    },
    accounting: {
      type: 'object',
      additionalProperties: false,
      properties: {
        ledgerPath: { type: 'string', minLength: 1 },
        retentionDays: positiveInt,
        metricsKeyLabels: { type: 'boolean' },
        flushMs: { type: 'integer', minimum: 0, maximum: 10_000 },
        webhook: {
          type: 'object',
          additionalProperties: false,
          required: ['url'],
          properties: {
            url: { type: 'string', pattern: '^https?://' },
            headers: { type: 'object', additionalProperties: { type: 'string' } },
            timeoutMs: positiveInt,
            attempts: { type: 'integer', minimum: 1, maximum: 20 },
            baseDelayMs: { type: 'integer', minimum: 0 },
          },
        },
        anomaly: {
          type: 'object',
          additionalProperties: false,
          properties: {
            multiple: { type: 'number', exclusiveMinimum: 1 },
            trailingHours: { type: 'integer', minimum: 1, maximum: 720 },
            minHourlyUsd: { type: 'number', minimum: 0 },
            checkIntervalSeconds: { type: 'integer', minimum: 1 },
          },
        },
      },
    },
    admin: {
      type: 'object',
      additionalProperties: false,
      properties: {
        keySha256: { type: 'array', items: { type: 'string', pattern: '^[0-9a-f]{64}$' } },
        keyRefreshMs: { type: 'integer', minimum: 10 },
      },
    },
  },
} as const;
