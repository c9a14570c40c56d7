// Reads the YAML config (or builds one from the environment when there is no file),
// interpolates ${ENV} references, validates it against the schema and returns a frozen
// Config. Every problem is collected and reported at once, each with the path that holds it.
import { hash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { Ajv, type ErrorObject } from 'ajv';
import { parseDocument } from 'yaml';
import {
  DEFAULT_ACCOUNTING,
  DEFAULT_ANOMALY,
  DEFAULT_BASE_URLS,
  DEFAULT_BUDGET_THRESHOLDS,
  DEFAULT_CACHE,
  DEFAULT_CONFIG_PATH,
  DEFAULT_CONNECTIONS,
  DEFAULT_MAX_RESPONSE_BYTES,
  DEFAULT_KEY_REFRESH_MS,
  DEFAULT_LIMITS,
  DEFAULT_MEMORY_CACHE_BYTES,
  DEFAULT_REDIS,
  DEFAULT_ROUTING,
  DEFAULT_SERVER,
  DEFAULT_TIMEOUTS,
  DEFAULT_WEBHOOK,
} from './defaults.js';
import {
  configFileSchema,
  type AccountingConfig,
  type AliasConfig,
  type BudgetConfig,
  type TierConfig,
  type CacheConfig,
  type DeploymentConfig,
  type PricesConfig,
  type RouteRuleConfig,
  type RoutingConfig,
  type StrategyName,
  type Config,
  type AdmitAheadConfig,
  type LimitsConfig,
  type RateLimitConfig,
  type RedisConfig,
  type ServerConfig,
  type CorsConfig,
  type AuthFailuresConfig,
  type StoreConfig,
  type TeamCacheConfig,
  type TeamLimitsConfig,
  type ModelConfig,
  type ProviderConfig,
  type TeamConfig,
  type TimeoutsConfig,
} from './schema.js';

export class ConfigError extends Error {
  constructor(
    readonly source: string,
    readonly problems: string[],
  ) {
    super(`invalid config (${source}):\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

export interface LoadOptions {
  /** Explicit path (from --config); wins over TOLLGATE_CONFIG. */
  path?: string;
  env?: NodeJS.ProcessEnv;
}

type Env = NodeJS.ProcessEnv;
type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** More workers than this is a typo, not a machine (the schema says the same). */
const MAX_WORKERS = 1024;

const ajv = new Ajv({ allErrors: true, strict: true });
const validateFile = ajv.compile(configFileSchema);

export function loadConfig(options: LoadOptions = {}): Config {
  const env = options.env ?? process.env;
  const explicit = options.path ?? (env.TOLLGATE_CONFIG || undefined);
  const path = explicit ?? (existsSync(DEFAULT_CONFIG_PATH) ? DEFAULT_CONFIG_PATH : undefined);
  if (path === undefined) return finish(configFromEnvironment(env), 'environment', env);
  if (!existsSync(path)) throw new ConfigError(path, [`file not found: ${path}`]);
  return parseConfig(readFileSync(path, 'utf8'), path, env);
}

/** Parses and validates config text; exported for tests. */
export function parseConfig(text: string, source: string, env: Env = process.env): Config {
  const doc = parseDocument(text, { prettyErrors: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      source,
      doc.errors.map((e) => `YAML ${e.message.split('\n')[0] ?? ''}`),
    );
  }
  const raw = (doc.toJS() ?? {}) as Json;
  const problems: string[] = [];
  const interpolated = interpolate(raw, '', env, problems);
  if (problems.length > 0) throw new ConfigError(source, problems);
  if (!validateFile(interpolated)) {
    throw new ConfigError(source, (validateFile.errors ?? []).map(describeAjvError));
  }
  return finish(interpolated as FileShape, source, env);
}

/**
 * A worker count as `server.workers`, TOLLGATE_WORKERS or `--workers` give it: a whole number from
 * 1 to 1024, or `auto` for one per core (os.availableParallelism(), which respects CPU affinity).
 * Undefined when it is neither.
 */
export function parseWorkerCount(raw: string | number): number | undefined {
  if (raw === 'auto') return availableParallelism();
  const n = typeof raw === 'number' ? raw : /^\d+$/.test(raw) ? Number(raw) : NaN;
  return Number.isInteger(n) && n >= 1 && n <= MAX_WORKERS ? n : undefined;
}

/** `${NAME}` or `${NAME:-default}` inside any string value. A missing variable without a default is an error. */
function interpolate(value: Json, path: string, env: Env, problems: string[]): Json {
  if (typeof value === 'string') {
    const whole = /^\$\{[^}]+\}$/.test(value);
    const out = value.replace(
      /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g,
      (_m, name: string, fallback?: string) => {
        const v = env[name];
        if (v !== undefined && v !== '') return v;
        if (fallback !== undefined) return fallback;
        problems.push(
          `${path || '(root)'}: environment variable ${name} is not set (use \${${name}:-} to allow empty)`,
        );
        return '';
      },
    );
    // `port: ${PORT}` must still be a number: a value that is one reference alone is read
    // as a YAML scalar (numbers, booleans); text around a reference keeps it a string.
    return whole && /^(-?\d+(\.\d+)?|true|false)$/.test(out) ? (JSON.parse(out) as Json) : out;
  }
  if (Array.isArray(value)) return value.map((v, i) => interpolate(v, `${path}[${i}]`, env, problems));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, Json> = {};
    for (const [k, v] of Object.entries(value))
      out[k] = interpolate(v, path ? `${path}.${k}` : k, env, problems);
    return out;
  }
  return value;
}

function describeAjvError(e: ErrorObject): string {
  const path =
    e.instancePath
      .split('/')
      .slice(1)
      .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
      .reduce((acc, seg) => (/^\d+$/.test(seg) ? `${acc}[${seg}]` : acc ? `${acc}.${seg}` : seg), '') ||
    '(root)';
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'additionalProperties':
      return `${path}: unknown key '${String(p.additionalProperty)}'`;
    case 'required':
      return `${path}: missing required key '${String(p.missingProperty)}'`;
    case 'enum':
      return `${path}: must be one of ${(p.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
    case 'propertyNames':
      return `${path}: invalid name '${String(p.propertyName)}'`;
    default:
      return `${path}: ${e.message ?? 'is invalid'}`;
  }
}

interface FileShape {
  server?: Partial<Omit<Config['server'], 'workers' | 'cors' | 'authFailures'>> & {
    workers?: number | 'auto';
    cors?: Partial<CorsConfig> & { origins: string[] };
    authFailures?: Partial<AuthFailuresConfig>;
  };
  timeouts?: Partial<TimeoutsConfig>;
  providers?: Record<
    string,
    {
      type: ProviderConfig['type'];
      baseUrl?: string;
      apiKey?: string;
      headers?: Record<string, string>;
      timeouts?: Partial<TimeoutsConfig>;
      connections?: number;
      maxResponseBytes?: number;
      apiVersion?: string;
    }
  >;
  models?: Record<
    string,
    {
      deployments: (Partial<Omit<DeploymentConfig, 'provider' | 'prices'>> & {
        provider: string;
        prices?: Partial<PricesConfig>;
      })[];
      strategy?: StrategyName;
      fallbacks?: string[];
      contextFallbacks?: string[];
    }
  >;
  aliases?: Record<string, { models: string[]; strategy?: StrategyName }>;
  routing?: {
    rules?: { when?: Partial<RouteRuleConfig['when']>; use: string }[];
    retry?: Partial<RoutingConfig['retry']>;
    cooldown?: Partial<RoutingConfig['cooldown']>;
    deadlineMs?: number;
  };
  teams?: {
    name: string;
    keys: { id: string; sha256: string; budgets?: FileBudget[] }[];
    budgets?: FileBudget[];
    models?: string[];
    tier?: string;
    limits?: Partial<Omit<TeamLimitsConfig, 'perKey' | 'models'>> & {
      perKey?: Partial<RateLimitConfig>;
      models?: Record<string, Partial<RateLimitConfig>>;
    };
    cache?: Partial<TeamCacheConfig>;
  }[];
  store?: {
    type?: 'memory' | 'redis';
    memoryCacheMaxBytes?: number;
    redis?: Partial<Omit<RedisConfig, 'sentinel'>> & {
      sentinel?: { name: string; sentinels: { host: string; port: number }[]; password?: string };
    };
  };
  cache?: Partial<Omit<CacheConfig, 'models'>> & { models?: Record<string, Partial<TeamCacheConfig>> };
  limits?: Partial<Omit<LimitsConfig, 'admitAhead'>> & { admitAhead?: Partial<AdmitAheadConfig> };
  tiers?: Record<string, Partial<TierConfig>>;
  accounting?: Partial<Omit<AccountingConfig, 'webhook' | 'anomaly'>> & {
    webhook?: Partial<NonNullable<AccountingConfig['webhook']>> & { url: string };
    anomaly?: Partial<NonNullable<AccountingConfig['anomaly']>>;
  };
  admin?: { keySha256?: string[]; keyRefreshMs?: number };
}

type FileBudget = Partial<BudgetConfig> & { period: BudgetConfig['period'] };

function budgetList(list: FileBudget[] | undefined, path: string, problems: string[]): BudgetConfig[] {
  (list ?? []).forEach((b, i) => {
    if (b.usd === undefined && b.tokens === undefined)
      problems.push(`${path}[${i}]: a budget needs usd, tokens or both`);
  });
  return (list ?? []).map((b) => ({
    period: b.period,
    usd: b.usd,
    tokens: b.tokens,
    thresholds: [...(b.thresholds ?? DEFAULT_BUDGET_THRESHOLDS)].sort((x, y) => x - y),
  }));
}

function accountingConfig(file: FileShape['accounting'], env: Env): AccountingConfig {
  const w = file?.webhook;
  const url = w?.url ?? env.TOLLGATE_ALERT_WEBHOOK_URL;
  return {
    ledgerPath: file?.ledgerPath ?? (env.TOLLGATE_LEDGER || undefined),
    retentionDays: file?.retentionDays ?? DEFAULT_ACCOUNTING.retentionDays,
    metricsKeyLabels: file?.metricsKeyLabels ?? DEFAULT_ACCOUNTING.metricsKeyLabels,
    flushMs: file?.flushMs ?? DEFAULT_ACCOUNTING.flushMs,
    webhook: url
      ? {
          url,
          headers: { ...w?.headers },
          timeoutMs: w?.timeoutMs ?? DEFAULT_WEBHOOK.timeoutMs,
          attempts: w?.attempts ?? DEFAULT_WEBHOOK.attempts,
          baseDelayMs: w?.baseDelayMs ?? DEFAULT_WEBHOOK.baseDelayMs,
        }
      : undefined,
    anomaly: file?.anomaly ? { ...DEFAULT_ANOMALY, ...file.anomaly } : undefined,
  };
}

const rateLimit = (r: Partial<RateLimitConfig> | undefined): RateLimitConfig | undefined =>
  r && (r.rpm !== undefined || r.tpm !== undefined) ? { rpm: r.rpm, tpm: r.tpm } : undefined;

const cachePolicy = (c: Partial<TeamCacheConfig> | undefined): TeamCacheConfig => ({
  enabled: c?.enabled,
  ttlSeconds: c?.ttlSeconds,
});

/** The store: Redis when a Redis is named (config or REDIS_URL), else memory. */
function storeConfig(file: FileShape['store'], env: Env, problems: string[]): StoreConfig {
  const r = file?.redis;
  const url = r?.url || env.REDIS_URL || undefined;
  const named = url !== undefined || r?.sentinel !== undefined || r?.cluster !== undefined;
  const type = file?.type ?? (named ? 'redis' : 'memory');
  if (type === 'redis' && !named) {
    problems.push('store.redis: store.type is redis but no url, sentinel or cluster is given (or REDIS_URL)');
  }
  return {
    type,
    memoryCacheMaxBytes: file?.memoryCacheMaxBytes ?? DEFAULT_MEMORY_CACHE_BYTES,
    redis:
      type === 'redis'
        ? {
            url,
            sentinel: r?.sentinel
              ? { name: r.sentinel.name, sentinels: r.sentinel.sentinels, password: r.sentinel.password }
              : undefined,
            cluster: r?.cluster,
            keyPrefix: r?.keyPrefix ?? DEFAULT_REDIS.keyPrefix,
            commandTimeoutMs: r?.commandTimeoutMs ?? DEFAULT_REDIS.commandTimeoutMs,
            connectTimeoutMs: r?.connectTimeoutMs ?? DEFAULT_REDIS.connectTimeoutMs,
            onUnavailable: r?.onUnavailable ?? DEFAULT_REDIS.onUnavailable,
          }
        : undefined,
  };
}

/** Zero-config: providers from the provider keys in the environment, every model passed through. */
function configFromEnvironment(env: Env): FileShape {
  const providers: NonNullable<FileShape['providers']> = {};
  if (env.OPENAI_API_KEY) {
    providers.openai = {
      type: 'openai',
      apiKey: env.OPENAI_API_KEY,
      baseUrl: env.OPENAI_BASE_URL || DEFAULT_BASE_URLS.openai,
    };
  }
  if (env.ANTHROPIC_API_KEY) {
    providers.anthropic = { type: 'anthropic', apiKey: env.ANTHROPIC_API_KEY };
  }
  // Claude models by name to Anthropic; every other name to OpenAI (or to Anthropic alone).
  const models: NonNullable<FileShape['models']> = {};
  if (providers.anthropic && providers.openai)
    models['claude-*'] = { deployments: [{ provider: 'anthropic' }] };
  const fallback = providers.openai ? 'openai' : providers.anthropic ? 'anthropic' : undefined;
  if (fallback) models['*'] = { deployments: [{ provider: fallback }] };
  return { providers, models };
}

function finish(file: FileShape, source: string, env: Env): Config {
  const problems: string[] = [];
  const { workers: fileWorkers, ...fileServer } = file.server ?? {};
  const server: ServerConfig = {
    ...DEFAULT_SERVER,
    ...fileServer,
    authFailures: { ...DEFAULT_SERVER.authFailures, ...fileServer.authFailures },
    cors: fileServer.cors && { credentials: false, maxAgeSeconds: 600, ...fileServer.cors },
    workers: fileWorkers === undefined ? undefined : parseWorkerCount(fileWorkers),
  };
  if (server.cors?.credentials && server.cors.origins.includes('*'))
    problems.push("server.cors: credentials cannot be allowed for every origin ('*'); name the origins");
  if (env.TOLLGATE_WORKERS) {
    const workers = parseWorkerCount(env.TOLLGATE_WORKERS);
    if (workers === undefined)
      problems.push(`TOLLGATE_WORKERS: not a worker count (1 to 1024, or auto): ${env.TOLLGATE_WORKERS}`);
    else server.workers = workers;
  }
  if (env.TOLLGATE_HOST) server.host = env.TOLLGATE_HOST;
  if (env.TOLLGATE_PORT) {
    const port = Number(env.TOLLGATE_PORT);
    if (!Number.isInteger(port) || port < 0 || port > 65535)
      problems.push(`TOLLGATE_PORT: not a port: ${env.TOLLGATE_PORT}`);
    else server.port = port;
  }
  if (env.TOLLGATE_LOG_LEVEL) server.logLevel = env.TOLLGATE_LOG_LEVEL;
  if (env.TOLLGATE_SHUTDOWN_DELAY_MS) {
    const ms = Number(env.TOLLGATE_SHUTDOWN_DELAY_MS);
    if (!Number.isInteger(ms) || ms < 0 || ms > 300_000)
      problems.push(
        `TOLLGATE_SHUTDOWN_DELAY_MS: not a delay in ms (0 to 300000): ${env.TOLLGATE_SHUTDOWN_DELAY_MS}`,
      );
    else server.shutdownDelayMs = ms;
  }
  // Node refuses to start a server whose headers may take longer than the whole request.
  if (server.headersTimeoutMs > server.requestTimeoutMs)
    problems.push(
      `server.headersTimeoutMs: ${server.headersTimeoutMs} is longer than server.requestTimeoutMs (${server.requestTimeoutMs})`,
    );
  const baseTimeouts = { ...DEFAULT_TIMEOUTS, ...file.timeouts };

  const providers: Record<string, ProviderConfig> = {};
  for (const [name, p] of Object.entries(file.providers ?? {})) {
    const baseUrl = p.baseUrl ?? DEFAULT_BASE_URLS[p.type];
    if (baseUrl === undefined) problems.push(`providers.${name}.baseUrl: required for type ${p.type}`);
    providers[name] = Object.freeze({
      name,
      type: p.type,
      apiVersion: p.apiVersion,
      baseUrl: (baseUrl ?? '').replace(/\/+$/, ''),
      apiKey: p.apiKey === '' ? undefined : p.apiKey,
      headers: { ...p.headers },
      timeouts: { ...baseTimeouts, ...p.timeouts },
      connections: p.connections ?? DEFAULT_CONNECTIONS,
      maxResponseBytes: p.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES,
    });
  }

  const models: Record<string, ModelConfig> = {};
  for (const [name, m] of Object.entries(file.models ?? {})) {
    m.deployments.forEach((d, i) => {
      if (!providers[d.provider]) {
        problems.push(`models.${name}.deployments[${i}].provider: unknown provider '${d.provider}'`);
      }
    });
    models[name] = Object.freeze({
      name,
      deployments: m.deployments.map((d) => ({
        provider: d.provider,
        model: d.model ?? (name.endsWith('*') ? undefined : name),
        rpm: d.rpm,
        tpm: d.tpm,
        weight: d.weight ?? 1,
        contextWindow: d.contextWindow,
        maxOutputTokens: d.maxOutputTokens,
        prices: d.prices
          ? {
              inputPerMillion: d.prices.inputPerMillion,
              cachedInputPerMillion: d.prices.cachedInputPerMillion,
              outputPerMillion: d.prices.outputPerMillion,
              cacheWritePerMillion: d.prices.cacheWritePerMillion,
              cacheWrite1hPerMillion: d.prices.cacheWrite1hPerMillion,
            }
          : undefined,
        timeouts: d.timeouts,
      })),
      strategy: m.strategy ?? 'priority',
      fallbacks: m.fallbacks ?? [],
      contextFallbacks: m.contextFallbacks ?? [],
    });
  }
  for (const m of Object.values(models)) {
    for (const list of ['fallbacks', 'contextFallbacks'] as const) {
      m[list].forEach((f, i) => {
        if (!models[f])
          problems.push(`models.${m.name}.${list}[${i}]: model '${f}' is not declared under models`);
      });
    }
  }

  const aliases: Record<string, AliasConfig> = {};
  for (const [name, a] of Object.entries(file.aliases ?? {})) {
    if (models[name]) problems.push(`aliases.${name}: the name is already a model`);
    a.models.forEach((m, i) => {
      if (!models[m])
        problems.push(`aliases.${name}.models[${i}]: model '${m}' is not declared under models`);
    });
    aliases[name] = Object.freeze({ name, models: [...a.models], strategy: a.strategy ?? 'priority' });
  }
  const wildcards = Object.keys(models).filter((n) => n.endsWith('*'));
  const routable = (n: string): boolean =>
    Boolean(models[n] || aliases[n] || wildcards.some((w) => n.startsWith(w.slice(0, -1))));
  const routing: RoutingConfig = {
    rules: (file.routing?.rules ?? []).map((r, i) => {
      if (!routable(r.use))
        problems.push(`routing.rules[${i}].use: '${r.use}' is neither a model nor an alias`);
      return {
        when: {
          teams: r.when?.teams,
          tiers: r.when?.tiers,
          models: r.when?.models,
          route: r.when?.route,
          headers: r.when?.headers
            ? Object.fromEntries(Object.entries(r.when.headers).map(([k, v]) => [k.toLowerCase(), v]))
            : undefined,
        },
        use: r.use,
      };
    }),
    retry: { ...DEFAULT_ROUTING.retry, ...file.routing?.retry },
    cooldown: { ...DEFAULT_ROUTING.cooldown, ...file.routing?.cooldown },
    deadlineMs: file.routing?.deadlineMs ?? DEFAULT_ROUTING.deadlineMs,
  };

  const teams: TeamConfig[] = [];
  const seenHashes = new Map<string, string>();
  const seenTeams = new Set<string>();
  (file.teams ?? []).forEach((t, ti) => {
    if (seenTeams.has(t.name)) problems.push(`teams[${ti}].name: duplicate team '${t.name}'`);
    seenTeams.add(t.name);
    t.keys.forEach((k, ki) => {
      const other = seenHashes.get(k.sha256);
      if (other)
        problems.push(`teams[${ti}].keys[${ki}].sha256: the same key is already used by team '${other}'`);
      seenHashes.set(k.sha256, t.name);
    });
    const allowed = t.models ?? ['*'];
    allowed.forEach((m, mi) => {
      if (m !== '*' && !routable(m)) {
        problems.push(`teams[${ti}].models[${mi}]: model '${m}' is not declared under models`);
      }
    });
    for (const m of Object.keys(t.limits?.models ?? {})) {
      if (!routable(m))
        problems.push(`teams[${ti}].limits.models.${m}: model '${m}' is not declared under models`);
    }
    const l = t.limits;
    const limits: TeamLimitsConfig | undefined = l
      ? {
          rpm: l.rpm,
          tpm: l.tpm,
          concurrency: l.concurrency,
          maxWaitMs: l.maxWaitMs ?? 0,
          perKey: rateLimit(l.perKey),
          models: Object.fromEntries(
            Object.entries(l.models ?? {}).flatMap(([m, r]) => {
              const rl = rateLimit(r);
              return rl ? [[m, rl]] : [];
            }),
          ),
        }
      : undefined;
    teams.push(
      Object.freeze({
        name: t.name,
        keys: t.keys.map((k, ki) => ({
          id: k.id,
          sha256: k.sha256,
          budgets: budgetList(k.budgets, `teams[${ti}].keys[${ki}].budgets`, problems),
        })),
        models: [...allowed],
        tier: t.tier,
        limits,
        cache: cachePolicy(t.cache),
        budgets: budgetList(t.budgets, `teams[${ti}].budgets`, problems),
      }),
    );
  });
  const tiers: Record<string, TierConfig> = Object.fromEntries(
    Object.entries(file.tiers ?? {}).map(([name, tc]) => [
      name,
      { maxOutputTokens: tc.maxOutputTokens, onExceed: tc.onExceed ?? 'clamp' },
    ]),
  );
  const adminHashes = [...(file.admin?.keySha256 ?? [])];
  if (env.TOLLGATE_ADMIN_KEY) adminHashes.push(hash('sha256', env.TOLLGATE_ADMIN_KEY, 'hex'));

  const store = storeConfig(file.store, env, problems);
  const cache: CacheConfig = {
    ...DEFAULT_CACHE,
    ...file.cache,
    models: Object.fromEntries(Object.entries(file.cache?.models ?? {}).map(([m, c]) => [m, cachePolicy(c)])),
  };
  const limitsConfig: LimitsConfig = {
    ...DEFAULT_LIMITS,
    ...file.limits,
    admitAhead: { ...DEFAULT_LIMITS.admitAhead, ...file.limits?.admitAhead },
  };

  if (problems.length > 0) throw new ConfigError(source, problems);
  return Object.freeze({
    server: Object.freeze(server),
    store,
    cache,
    limits: limitsConfig,
    providers,
    models,
    aliases,
    routing,
    teams,
    accounting: accountingConfig(file.accounting, env),
    tiers,
    admin: { keySha256: adminHashes, keyRefreshMs: file.admin?.keyRefreshMs ?? DEFAULT_KEY_REFRESH_MS },
    source,
  });
}
