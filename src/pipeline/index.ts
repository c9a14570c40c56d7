// The request path, outermost stage first. Composed once at start-up, never per request.
// The order: accounting, cache, limits (with the budgets), route, attempts, provider. Budgets
// sit after the cache (DESIGN.md had them before): a hit costs nothing, so a spent budget does
// not stop it. They are checked in the limits stage's one store call: one Redis round trip for
// every admission check.
import type { Logger } from 'pino';
import type { CacheConfig, Config, TeamConfig } from '../config/schema.js';
import type { ProviderRegistry } from '../providers/registry.js';
import type { Keys } from '../stores/keys.js';
import type { Store } from '../stores/store.js';
import type { Alerter } from '../accounting/webhook.js';
import type { Ledger } from '../accounting/ledger.js';
import { SpendWriter } from '../accounting/spend-writer.js';
import { createThresholdCheck } from '../accounting/thresholds.js';
import {
  createAccountingStage,
  type Pricing,
  type RequestCost,
  type TokenCounting,
} from './stages/accounting.js';
import { createBudgetPlanner } from './stages/budget.js';
import { estimateTokens } from './limits/estimate.js';
import { createCacheStage, type CacheOptions } from './stages/cache.js';
import { createLimits } from './stages/limits.js';
import { ResilientStore } from '../stores/resilient-store.js';
import { createProviderStage } from './stages/provider.js';
import { createAttemptsStage, type AttemptEvents } from './stages/attempts.js';
import { Cooldowns } from './routing/cooldown.js';
import { DeploymentStats } from './routing/stats.js';
import { createRouteStage } from './stages/route.js';
import type { Next, Stage } from './types.js';

export interface PipelineDeps {
  config: Config;
  providers: ProviderRegistry;
  store: Store;
  keys: Keys;
  log: Logger;
  pricing: Pricing & {
    /** A conservative cost for a request of the model before it runs (integer micro-dollars; 0 unknown). */
    estimateMicros(model: string, promptTokens: number, completionTokens: number): number;
  };
  tokens: TokenCounting;
  alerter: Alerter;
  ledger?: Ledger | undefined;
  onCost?: (c: RequestCost) => void;
  events?: AttemptEvents;
}

export interface Pipeline {
  next: Next;
  /** Stops the pipeline's background work (cooldown refresh) and writes the spend still queued. */
  close(): Promise<void>;
  /** Admission ahead's counts, when it is on (limits/ahead.ts). */
  admissionsAhead: (() => Readonly<Record<string, number>>) | undefined;
}

export function createPipeline(deps: PipelineDeps): Pipeline {
  const { config, providers, store, keys, log, pricing } = deps;
  const stats = new DeploymentStats();
  const cooldowns = new Cooldowns(store, keys, config.routing.cooldown, log);
  const retentionMs = config.accounting.retentionDays * 86_400_000;
  // A reservation or slot not released by then belongs to a request that cannot still be running.
  const leaseMs = maxTotalTimeoutMs(config) + 60_000;
  const spend = new SpendWriter(
    { store, keys, log },
    {
      retentionMs,
      flushMs: config.accounting.flushMs,
      onSettled: createThresholdCheck(config.teams, keys, deps.alerter),
    },
  );
  // Budgets and limits: one store call, one Redis round trip, for both (see limits.ts); the cache
  // stage starts it with its own read while most reads miss.
  const limits = createLimits(
    {
      store,
      keys,
      log,
      storeUp: store instanceof ResilientStore ? () => !store.degraded : undefined,
      budget: createBudgetPlanner(
        {
          keys,
          estimate(ctx) {
            const t = estimateTokens(ctx, config.limits);
            return { micros: pricing.estimateMicros(ctx.model, t.prompt, t.completion), tokens: t.total };
          },
        },
        { teams: config.teams, leaseMs, retentionMs },
      ),
    },
    // A lost release (a crashed replica) frees its slot once the longest request could be over.
    // Admission ahead saves a request the admission's round trip: only Redis has one.
    {
      teams: config.teams,
      limits: config.limits,
      slotLeaseMs: leaseMs,
      ahead: store.kind === 'redis' ? config.limits.admitAhead : undefined,
    },
  );
  const stages: Stage[] = [
    createAccountingStage(
      { keys, spend, pricing, tokens: deps.tokens, ledger: deps.ledger, onCost: deps.onCost },
      { hourly: config.accounting.anomaly !== undefined },
    ),
    createCacheStage({ store, keys, log, admission: limits.admitter }, cacheOptions(config)),
    limits.stage,
    createRouteStage(config, stats),
    createAttemptsStage(
      { store, keys, log, cooldowns, stats, events: deps.events, tokens: deps.tokens },
      config.routing,
      config.limits,
    ),
  ];
  return {
    next: compose(stages, createProviderStage(providers)),
    admissionsAhead: limits.aheadCounts,
    close: async () => {
      cooldowns.close();
      await limits.close();
      await spend.flush();
    },
  };
}

/** Folds stages into one Next: stages[0] runs first and calls into stages[1], ... then `last`. */
export function compose(stages: Stage[], last: Next): Next {
  return stages.reduceRight<Next>((next, stage) => (ctx) => stage(ctx, next), last);
}

/**
 * The cache policy from config. The most specific setting wins: a team's, then a model's,
 * then the default; a TTL of 0 or `enabled: false` at any level turns caching off there.
 */
export function cacheOptions(config: Pick<Config, 'cache' | 'teams'>): CacheOptions {
  const cache: CacheConfig = config.cache;
  const teams = new Map<string, TeamConfig['cache']>(config.teams.map((t) => [t.name, t.cache]));
  return {
    maxEntryBytes: cache.maxEntryBytes,
    cacheSampled: cache.cacheSampled,
    maxTtlSeconds: cache.maxTtlSeconds,
    scopeFor: (team) => (cache.shared ? 'shared' : `t:${team}`),
    ttlSecondsFor(team, model) {
      if (!cache.enabled) return undefined;
      const t = teams.get(team);
      const m = cache.models[model];
      if (t?.enabled === false || m?.enabled === false) return undefined;
      const ttl = t?.ttlSeconds ?? m?.ttlSeconds ?? cache.ttlSeconds;
      return ttl > 0 ? ttl : undefined;
    },
  };
}

function maxTotalTimeoutMs(config: Pick<Config, 'providers'>): number {
  return Math.max(0, ...Object.values(config.providers).map((p) => p.timeouts.totalMs));
}
