// A request's cost in integer micro-dollars (1 USD = 1,000,000 µ$: totals add up without float
// drift), exact and rounded half up once per request, from its OpenAI-shaped usage and its
// deployment's price; createPricing holds every deployment's price, resolved at start-up. An
// unknown price gives null, never a guess; a cache hit costs 0 and saves what it would have cost.
import type { Config, DeploymentConfig } from '../config/schema.js';
import type { Usage } from '../pipeline/types.js';
import { resolvePrice, type PriceSource, type PriceVariant, type ResolvedPrice } from './prices.js';

/**
 * Why a cost is null: no price for the deployment, no usage reported, a rate the usage needs
 * is missing (output tokens on a model priced for input only), or usage that contradicts
 * itself (more cached tokens than prompt tokens, a negative or fractional count).
 */
export type UnknownCost = 'no-price' | 'no-usage' | 'missing-rate' | 'bad-usage';

export interface Cost {
  /** Integer micro-dollars; null when the cost is unknown (see `unknown`). */
  readonly microUsd: number | null;
  readonly source: PriceSource | undefined;
  readonly unknown: UnknownCost | undefined;
}

/**
 * Prices `usage` at the rates in force at `atMs`. Tokens are split as genai-prices splits them:
 * prompt_tokens (which include cached and cache-written tokens) minus those = uncached input at
 * the input rate; cached_tokens at the cached-input rate; cache_write_tokens at the cache-write
 * rate, their 1h (or 5m) part at its own rate when the price has one; completion_tokens
 * (reasoning included) at the output rate, the reasoning part at a reasoning rate only when
 * one exists. A part without a rate of its own is charged at its parent's (cached tokens at
 * the input rate). Tiers follow the prompt's total size: above a tier's start, every token of
 * that kind is charged at the tier's rate.
 *
 * Rounding: the exact total, in fractions of a micro-dollar, is rounded half up to a whole
 * micro-dollar once per request (never per component), so a request is off by at most 0.5 µ$
 * and sums of per-request costs are exact integers.
 */
export function costOf(
  price: ResolvedPrice | null | undefined,
  usage: Usage | undefined,
  atMs: number = Date.now(),
): Cost {
  if (!price) return { microUsd: null, source: undefined, unknown: 'no-price' };
  if (!usage) return { microUsd: null, source: price.source, unknown: 'no-usage' };
  const counts = usageCounts(usage);
  if (!counts) return { microUsd: null, source: price.source, unknown: 'bad-usage' };
  const micro = exactMicroUsd(price.variantAt(atMs), counts);
  return typeof micro === 'number'
    ? { microUsd: micro, source: price.source, unknown: undefined }
    : { microUsd: null, source: price.source, unknown: micro };
}

export interface CostWithSaving {
  /** What the request cost: 0 for a cache hit; null when unknown. */
  readonly costMicroUsd: number | null;
  /** What a cache hit saved (the cost it would have had): 0 for a miss; null when unknown. */
  readonly savedMicroUsd: number | null;
  readonly source: PriceSource | undefined;
  /** Why the non-zero one of the two is null. */
  readonly unknown: UnknownCost | undefined;
}

/** Cost and savings of one request; a hit is priced with the usage it replayed. */
export function requestCost(
  price: ResolvedPrice | null | undefined,
  usage: Usage | undefined,
  options: { cacheHit?: boolean; atMs?: number } = {},
): CostWithSaving {
  const c = costOf(price, usage, options.atMs);
  return options.cacheHit
    ? { costMicroUsd: 0, savedMicroUsd: c.microUsd, source: c.source, unknown: c.unknown }
    : { costMicroUsd: c.microUsd, savedMicroUsd: 0, source: c.source, unknown: c.unknown };
}

export interface Pricing {
  /** The price of `model` served by the provider named `provider` (one deployment); null when unknown. */
  priceOf(provider: string, model: string): ResolvedPrice | null;
  /** What `usage` cost at the deployment's price, in integer micro-dollars; null when unknown. */
  costMicros(deployment: { provider: string; model: string }, usage: Usage, atMs?: number): number | null;
  /**
   * The same at the price of the model as requested (its route's first priced deployment):
   * what a cache hit saved. null when none of its deployments has a price.
   */
  modelCostMicros(model: string, usage: Usage, atMs?: number): number | null;
  /** Before a request runs: the most it can cost among the model's deployments (no cache discount); 0 unknown. */
  estimateMicros(model: string, promptTokens: number, completionTokens: number): number;
  /** Deployments without a price and conflicting overrides, for the start-up log. */
  readonly warnings: readonly string[];
}

/** Names a client can make us resolve (wildcard routes, budget estimates) are memoised up to this many. */
const MAX_LAZY = 4096;

/**
 * Resolves every deployment with a model name at start-up; a wildcard route's deployments (the
 * name is the client's) and model names resolve on first use and are memoised, so the request
 * path reads a Map and never searches the price database. Time-dependent prices need no
 * re-resolution: each price carries its whole schedule and `costOf` picks the rates in force.
 */
export function createPricing(
  config: Pick<Config, 'providers' | 'models' | 'aliases'>,
  options: { now?: () => number } = {},
): Pricing {
  const now = options.now ?? Date.now;
  const key = (provider: string, model: string): string => `${provider}\n${model}`;
  const fixed = new Map<string, ResolvedPrice | null>();
  const declared = new Map<string, { label: string; prices: DeploymentConfig['prices'] }>();
  const wildcards: { prefix: string; label: string; d: DeploymentConfig }[] = [];
  const warnings: string[] = [];
  for (const m of Object.values(config.models)) {
    m.deployments.forEach((d, i) => {
      const label = `models.${m.name}.deployments[${i}]`;
      if (d.model === undefined) {
        wildcards.push({ prefix: m.name.slice(0, -1), label, d });
        return;
      }
      const k = key(d.provider, d.model);
      const first = declared.get(k);
      if (first) {
        if (JSON.stringify(first.prices ?? null) !== JSON.stringify(d.prices ?? null)) {
          warnings.push(
            `${label}: same provider and model as ${first.label} but other prices; ${first.label}'s apply`,
          );
        }
        return;
      }
      declared.set(k, { label, prices: d.prices });
      const provider = config.providers[d.provider];
      const price = provider ? resolvePrice({ label, provider, model: d.model, prices: d.prices }) : null;
      if (!price) warnings.push(`${label}: no price for ${d.provider}/${d.model}; its requests cost null`);
      fixed.set(k, price);
    });
  }
  // As the route stage chooses: the longest prefix first.
  wildcards.sort((x, y) => y.prefix.length - x.prefix.length);
  const prefixRoutes = Object.values(config.models)
    .filter((m) => m.name.endsWith('*'))
    .sort((x, y) => y.name.length - x.name.length);
  const lazy = new Map<string, ResolvedPrice | null>();
  const models = new Map<string, (ResolvedPrice | null)[]>();
  const remember = <T>(map: Map<string, T>, k: string, v: T): T => {
    if (map.size >= MAX_LAZY) map.delete(map.keys().next().value as string);
    map.set(k, v);
    return v;
  };

  function priceOf(providerName: string, model: string): ResolvedPrice | null {
    const k = key(providerName, model);
    const known = fixed.has(k) ? fixed.get(k) : lazy.get(k);
    if (known !== undefined) return known;
    const provider = config.providers[providerName];
    const w = wildcards.find((x) => x.d.provider === providerName && model.startsWith(x.prefix));
    const label = w?.label ?? providerName;
    return remember(lazy, k, provider ? resolvePrice({ label, provider, model, prices: w?.d.prices }) : null);
  }

  /** The prices of the deployments a requested name routes to (alias, model or wildcard route). */
  function pricesOfModel(name: string): (ResolvedPrice | null)[] {
    const known = models.get(name);
    if (known) return known;
    const routes = config.aliases[name]?.models ?? [name];
    let targets = routes.flatMap((r) =>
      r.endsWith('*') ? [] : (config.models[r]?.deployments ?? []).map((d) => ({ d, model: d.model ?? r })),
    );
    if (targets.length === 0 && !config.models[name]) {
      const route = prefixRoutes.find((m) => name.startsWith(m.name.slice(0, -1)));
      targets = (route?.deployments ?? []).map((d) => ({ d, model: d.model ?? name }));
    }
    return remember(
      models,
      name,
      targets.map((t) => priceOf(t.d.provider, t.model)),
    );
  }

  return {
    warnings,
    priceOf,
    costMicros: (d, usage, atMs = now()) => costOf(priceOf(d.provider, d.model), usage, atMs).microUsd,
    modelCostMicros(model, usage, atMs = now()) {
      const price = pricesOfModel(model).find((p) => p !== null);
      return costOf(price, usage, atMs).microUsd;
    },
    estimateMicros(model, promptTokens, completionTokens) {
      // Estimates may be fractional (bytes per token); round up, it is a ceiling.
      const prompt = Math.ceil(Math.max(0, promptTokens));
      const completion = Math.ceil(Math.max(0, completionTokens));
      const usage = {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt + completion,
      };
      const atMs = now();
      return Math.max(0, ...pricesOfModel(model).map((p) => costOf(p, usage, atMs).microUsd ?? 0));
    },
  };
}

type Counts = Record<string, number>;

/** genai-prices' usage keys from OpenAI's usage (plus the Anthropic translator's cache-write details). */
function usageCounts(u: Usage): Counts | null {
  const p = u.prompt_tokens_details ?? undefined;
  const c = u.completion_tokens_details ?? undefined;
  const counts: Counts = { requests: 1 };
  return put(counts, 'input_tokens', u.prompt_tokens) &&
    put(counts, 'cache_read_tokens', p?.cached_tokens) &&
    put(counts, 'cache_write_tokens', p?.cache_write_tokens) &&
    put(counts, 'cache_write_5m_tokens', p?.cache_write_5m_tokens) &&
    put(counts, 'cache_write_1h_tokens', p?.cache_write_1h_tokens) &&
    put(counts, 'input_audio_tokens', p?.audio_tokens) &&
    put(counts, 'output_tokens', u.completion_tokens) &&
    put(counts, 'output_reasoning_tokens', c?.reasoning_tokens) &&
    put(counts, 'output_audio_tokens', c?.audio_tokens)
    ? counts
    : null;
}

function put(counts: Counts, key: string, v: unknown): boolean {
  if (v === undefined || v === null) return true;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) return false;
  counts[key] = v;
  return true;
}

function exactMicroUsd(v: PriceVariant, counts: Counts): number | 'missing-rate' | 'bad-usage' {
  const prompt = counts.input_tokens ?? 0;
  let input = false;
  let output = false;
  const own = new Array<number>(v.units.length);
  let total = 0n;
  // Most specific unit first: each unit's own share is its count minus its priced parts'.
  for (let i = 0; i < v.units.length; i++) {
    const u = v.units[i]!;
    if (u.usageKey === 'input_tokens') input = true;
    else if (u.usageKey === 'output_tokens') output = true;
    let n = counts[u.usageKey] ?? 0;
    for (const d of u.descendants) n -= own[d]!;
    if (n < 0) return 'bad-usage';
    own[i] = n;
    if (n === 0) continue;
    let rate = u.base;
    for (const t of u.tiers) if (prompt > t.start) rate = t.price;
    total += BigInt(n) * rate * u.factor;
  }
  if ((!input && prompt > 0) || (!output && (counts.output_tokens ?? 0) > 0)) return 'missing-rate';
  // Half up: add half a micro-dollar (at the rates' scale) and truncate.
  return Number((total + v.scale / 2n) / v.scale);
}
