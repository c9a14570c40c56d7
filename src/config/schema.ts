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

export interface DeploymentConfig {
  provider: string;
  /** Model name sent upstream; undefined means "the name the client asked for" (wildcard routes). */
  model: string | undefined;
}

export interface ModelConfig {
  name: string;
  deployments: DeploymentConfig[];
}

export interface TeamKeyConfig {
  id: string;
  sha256: string;
}

export interface TeamConfig {
  name: string;
  keys: TeamKeyConfig[];
  /** Model names the team may use; '*' allows every configured model. */
  models: string[];
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
              properties: { provider: name, model: { type: 'string', minLength: 1 } },
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
        },
      },
    },
  },
} as const;
