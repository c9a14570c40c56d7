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
  type: 'openai';
  /** Base URL including the version path, e.g. https://api.openai.com/v1 */
  baseUrl: string;
  apiKey: string | undefined;
  headers: Record<string, string>;
  timeouts: TimeoutsConfig;
  /** Most connections in this provider's keep-alive pool; null means no limit. */
  connections: number | null;
}

export interface RateLimitConfig {
  /** Requests per minute. */
  rpm: number | undefined;
  /** Tokens (prompt + completion) per minute. */
  tpm: number | undefined;
}

export interface DeploymentConfig {
  provider: string;
  /** Model name sent upstream; undefined means "the name the client asked for" (wildcard routes). */
  model: string | undefined;
  /** The upstream's own quota for this deployment (the provider account's RPM/TPM). */
  rpm: number | undefined;
  tpm: number | undefined;
}

export interface ModelConfig {
  name: string;
  deployments: DeploymentConfig[];
}

export interface TeamKeyConfig {
  id: string;
  sha256: string;
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
  limits: TeamLimitsConfig | undefined;
  cache: TeamCacheConfig;
}

export interface RedisConfig {
  url: string | undefined;
  sentinel: { name: string; sentinels: { host: string; port: number }[]; password: string | undefined } | undefined;
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
}

export interface ServerConfig {
  host: string;
  port: number;
  bodyLimitBytes: number;
  shutdownTimeoutMs: number;
  trustProxy: boolean;
  /** Log request bodies (prompts). Off by default: prompts are often confidential. */
  logPrompts: boolean;
  logLevel: string;
}

export interface Config {
  server: ServerConfig;
  store: StoreConfig;
  cache: CacheConfig;
  limits: LimitsConfig;
  providers: Record<string, ProviderConfig>;
  models: Record<string, ModelConfig>;
  teams: TeamConfig[];
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

const hostPort = {
  type: 'object',
  additionalProperties: false,
  required: ['host', 'port'],
  properties: { host: { type: 'string', minLength: 1 }, port: { type: 'integer', minimum: 1, maximum: 65535 } },
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
        shutdownTimeoutMs: { type: 'integer', minimum: 0 },
        trustProxy: { type: 'boolean' },
        logPrompts: { type: 'boolean' },
        logLevel: { enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] },
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
          type: { enum: ['openai'] },
          baseUrl: { type: 'string', pattern: '^https?://' },
          apiKey: { type: 'string' },
          headers: { type: 'object', additionalProperties: { type: 'string' } },
          timeouts,
          connections: { type: 'integer', minimum: 1 },
        },
      },
    },
    models: {
      type: 'object',
      propertyNames: { anyOf: [name, { const: '*' }] },
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
              properties: { provider: name, model: { type: 'string', minLength: 1 }, rpm: positiveInt, tpm: positiveInt },
            },
          },
        },
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
              },
            },
          },
          models: { type: 'array', items: { type: 'string', minLength: 1 } },
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
        },
      },
    },
  },
} as const;
