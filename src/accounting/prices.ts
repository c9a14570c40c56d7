// Each deployment's price, resolved once: the config's `prices` override, or else the model's
// entry in the genai-prices database (@pydantic/genai-prices, bundled data). The result is
// compiled to exact integer rates so cost.ts can price a request without searching anything.
// An unknown price stays unknown (null): no rate is ever guessed.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { calcPrice, findProvider, type ModelInfo, type ModelPrice } from '@pydantic/genai-prices';
import type { PricesConfig, ProviderConfig } from '../config/schema.js';

/** USD per unit of the price key (per 1M tokens for `*_mtok`): flat, or chosen by the prompt's size. */
export type Rate = number | TieredRate;

/** genai-prices' tiers: the whole quantity is charged at the price of the last tier whose `start` the prompt exceeds. */
export interface TieredRate {
  readonly base: number;
  readonly tiers: readonly { readonly start: number; readonly price: number }[];
}

/** When a variant applies: from a UTC date on, or during a UTC time-of-day window (off-peak rates). */
export type PriceConstraint =
  | { readonly type: 'start_date'; readonly startDate: string }
  | { readonly type: 'time_of_day'; readonly startTime: string; readonly endTime: string };

/** The config's per-deployment prices (USD per 1M tokens); cacheWrite1hPerMillion is read once the schema has it. */
export type PriceOverride = { readonly [K in keyof PricesConfig]?: number | undefined } & {
  readonly cacheWrite1hPerMillion?: number | undefined;
};

export type PriceSource =
  | { readonly kind: 'config'; readonly deployment: string }
  | {
      readonly kind: 'genai-prices';
      /** The provider whose price list holds the model. */
      readonly providerId: string;
      readonly modelId: string;
      /** How the provider was chosen. */
      readonly matchedBy: 'base-url' | 'provider-type' | 'model-name' | 'provider-id';
      /** The provider matched first, when its list fell back to another's (azure -> openai). */
      readonly via: string | undefined;
      readonly dataVersion: string;
    };

/** One unit tollgate can report, compiled: its rate as integers at the variant's scale. */
export interface CompiledUnit {
  readonly usageKey: string;
  readonly priceKey: string;
  /** Micro-dollars per unit of usage for one USD of rate: 1 for *_mtok, 1000 for *_kcount. */
  readonly factor: bigint;
  readonly base: bigint;
  readonly tiers: readonly { readonly start: number; readonly price: bigint }[];
  /** Indices (in the variant's `units`) of the priced units this one contains (cache_read in input). */
  readonly descendants: readonly number[];
}

export interface PriceVariant {
  readonly constraint: PriceConstraint | undefined;
  /** As the source states them, by genai-prices price key (input_mtok, cache_read_mtok, ...). */
  readonly rates: Readonly<Record<string, Rate>>;
  /** Priced units, most specific first, so each unit's own share is known before its parent's. */
  readonly units: readonly CompiledUnit[];
  /** Rates are integers of 10^-scale micro-dollars per unit of usage (for the factor). */
  readonly scale: bigint;
  /** Price keys of usage tollgate does not report (web searches, images): never charged. */
  readonly uncharged: readonly string[];
}

export interface ResolvedPrice {
  readonly source: PriceSource;
  /** In the source's order; `variantAt` picks the one in force. */
  readonly variants: readonly PriceVariant[];
  variantAt(atMs: number): PriceVariant;
}

/**
 * The units of genai-prices' registry (prices/units.yml) that an OpenAI usage object can fill,
 * with the same dimensions: a unit contains every unit whose dimensions extend its own, and a
 * contained unit without a price of its own is charged at its container's rate (cached tokens
 * at the input rate when a model has no cache price), exactly as the package's calcPrice does.
 */
const IN = { family: 'tokens', direction: 'input' };
const OUT = { family: 'tokens', direction: 'output' };
const UNITS: readonly { usageKey: string; priceKey: string; per: number; dims: Record<string, string> }[] = [
  { usageKey: 'input_tokens', priceKey: 'input_mtok', per: 1e6, dims: IN },
  {
    usageKey: 'cache_read_tokens',
    priceKey: 'cache_read_mtok',
    per: 1e6,
    dims: { ...IN, token_type: 'cache_read' },
  },
  {
    usageKey: 'cache_write_tokens',
    priceKey: 'cache_write_mtok',
    per: 1e6,
    dims: { ...IN, token_type: 'cache_write' },
  },
  ...(['5m', '1h'] as const).map((ttl) => ({
    usageKey: `cache_write_${ttl}_tokens`,
    priceKey: `cache_write_${ttl}_mtok`,
    per: 1e6,
    dims: { ...IN, token_type: 'cache_write', cache_ttl: ttl },
  })),
  {
    usageKey: 'input_audio_tokens',
    priceKey: 'input_audio_mtok',
    per: 1e6,
    dims: { ...IN, modality: 'audio' },
  },
  { usageKey: 'output_tokens', priceKey: 'output_mtok', per: 1e6, dims: OUT },
  {
    usageKey: 'output_reasoning_tokens',
    priceKey: 'output_reasoning_mtok',
    per: 1e6,
    dims: { ...OUT, token_type: 'reasoning' },
  },
  {
    usageKey: 'output_audio_tokens',
    priceKey: 'output_audio_mtok',
    per: 1e6,
    dims: { ...OUT, modality: 'audio' },
  },
  { usageKey: 'requests', priceKey: 'requests_kcount', per: 1e3, dims: { family: 'requests' } },
];

const OVERRIDE_KEYS: readonly [keyof PriceOverride, string][] = [
  ['inputPerMillion', 'input_mtok'],
  ['cachedInputPerMillion', 'cache_read_mtok'],
  ['outputPerMillion', 'output_mtok'],
  ['cacheWritePerMillion', 'cache_write_mtok'],
  ['cacheWrite1hPerMillion', 'cache_write_1h_mtok'],
];

let dataVersion: string | undefined;

/** The genai-prices package version: its price data is bundled, so the version dates the data. */
export function priceDataVersion(): string {
  if (dataVersion === undefined) {
    // The package's exports map hides package.json; read it next to the resolved entry point.
    const entry = createRequire(import.meta.url).resolve('@pydantic/genai-prices');
    const pkg = JSON.parse(readFileSync(join(dirname(entry), '..', 'package.json'), 'utf8')) as {
      version: string;
    };
    dataVersion = `@pydantic/genai-prices ${pkg.version}`;
  }
  return dataVersion;
}

export interface DbQuery {
  model: string;
  /** A genai-prices provider id (openai, anthropic, groq, ...): used as is. */
  providerId?: string | undefined;
  /** Otherwise: the upstream's base URL, then its type, then the model name pick the provider. */
  baseUrl?: string | undefined;
  providerType?: ProviderConfig['type'] | undefined;
}

/**
 * Finds the model in genai-prices. The provider: an explicit id; else the one whose API URL
 * pattern matches the base URL (api.openai.com, api.groq.com, openrouter.ai, *.openai.azure.com,
 * ...); else for type azure or anthropic that provider (Azure's list falls back to OpenAI's);
 * else the provider whose model pattern matches the name (gpt-* is OpenAI's): an
 * OpenAI-compatible server at an unknown URL is priced like the model's maker, or not at all.
 */
export function lookupDbPrice(query: DbQuery): ResolvedPrice | null {
  const found = findDbProvider(query);
  if (!found) return null;
  let result: ReturnType<typeof calcPrice>;
  try {
    // Empty usage: calcPrice only matches the model (its date-normalising and fallback rules).
    result = calcPrice({}, query.model, { providerId: found.id });
  } catch {
    return null;
  }
  if (!result) return null;
  const holder = result.provider.models.includes(result.model)
    ? result.provider.id
    : (result.provider.fallback_model_providers ?? []).find((id) =>
        findProvider({ providerId: id })?.models.includes(result.model),
      );
  const providerId = holder ?? result.provider.id;
  return compile(
    {
      kind: 'genai-prices',
      providerId,
      modelId: result.model.id,
      matchedBy: found.matchedBy,
      via: providerId === result.provider.id ? undefined : result.provider.id,
      dataVersion: priceDataVersion(),
    },
    dbVariants(result.model),
  );
}

function findDbProvider(
  q: DbQuery,
): { id: string; matchedBy: Extract<PriceSource, { kind: 'genai-prices' }>['matchedBy'] } | undefined {
  if (q.providerId !== undefined) {
    const p = findProvider({ providerId: q.providerId });
    return p && { id: p.id, matchedBy: 'provider-id' };
  }
  const byUrl = q.baseUrl ? findProvider({ providerApiUrl: q.baseUrl }) : undefined;
  if (byUrl) return { id: byUrl.id, matchedBy: 'base-url' };
  if (q.providerType === 'anthropic' || q.providerType === 'azure') {
    return { id: q.providerType, matchedBy: 'provider-type' };
  }
  const byName = findProvider({ modelId: q.model });
  return byName && { id: byName.id, matchedBy: 'model-name' };
}

function dbVariants(model: ModelInfo): { constraint: PriceConstraint | undefined; rates: ModelPrice }[] {
  if (!Array.isArray(model.prices)) return [{ constraint: undefined, rates: model.prices }];
  return model.prices.map((p) => {
    const c = p.constraint as Record<string, string> | undefined;
    let constraint: PriceConstraint | undefined;
    if (c?.start_date !== undefined) constraint = { type: 'start_date', startDate: c.start_date };
    else if (c?.start_time !== undefined && c.end_time !== undefined) {
      constraint = { type: 'time_of_day', startTime: c.start_time, endTime: c.end_time };
    }
    return { constraint, rates: p.prices };
  });
}

/** The config override replaces the database entry whole: one source per deployment. */
export function overridePrice(label: string, prices: PriceOverride): ResolvedPrice | null {
  const rates: Record<string, number> = {};
  for (const [field, key] of OVERRIDE_KEYS) {
    const v = prices[field];
    if (v !== undefined) rates[key] = v;
  }
  if (Object.keys(rates).length === 0) return null;
  return compile({ kind: 'config', deployment: label }, [{ constraint: undefined, rates }]);
}

export interface PriceTarget {
  /** Where the deployment is declared (models.NAME.deployments[i]). */
  label: string;
  provider: Pick<ProviderConfig, 'type' | 'baseUrl'>;
  model: string;
  prices: PriceOverride | undefined;
}

/** A deployment's price: its override when it has one, else the database's. */
export function resolvePrice(t: PriceTarget): ResolvedPrice | null {
  return (
    (t.prices && overridePrice(t.label, t.prices)) ??
    lookupDbPrice({ model: t.model, baseUrl: t.provider.baseUrl, providerType: t.provider.type })
  );
}

function compile(
  source: PriceSource,
  variants: { constraint: PriceConstraint | undefined; rates: ModelPrice }[],
): ResolvedPrice {
  const compiled = variants.map((v) => compileVariant(v.constraint, v.rates));
  const windows = compiled.map((v) => window(v.constraint));
  return {
    source,
    variants: compiled,
    // genai-prices' rule: the last variant whose constraint holds, else the first.
    variantAt(atMs) {
      if (compiled.length === 1) return compiled[0]!;
      const secondOfDay = (((atMs / 1000) % 86_400) + 86_400) % 86_400;
      for (let i = compiled.length - 1; i >= 0; i--) {
        const w = windows[i]!;
        if (w === undefined) return compiled[i]!;
        if ('fromMs' in w ? atMs >= w.fromMs : inWindow(secondOfDay, w.start, w.end)) return compiled[i]!;
      }
      return compiled[0]!;
    },
  };
}

function inWindow(s: number, start: number, end: number): boolean {
  return end < start ? s >= start || s < end : s >= start && s < end;
}

function window(
  c: PriceConstraint | undefined,
): { fromMs: number } | { start: number; end: number } | undefined {
  if (c === undefined) return undefined;
  if (c.type === 'start_date') return { fromMs: Date.parse(`${c.startDate}T00:00:00Z`) };
  return { start: secondOfDayUtc(c.startTime), end: secondOfDayUtc(c.endTime) };
}

/** `HH:MM:SS[.fff](Z|±HH:MM)` -> seconds after midnight UTC. */
function secondOfDayUtc(time: string): number {
  const m = /^(\d{2}):(\d{2}):(\d{2}(?:\.\d+)?)(Z|([+-])(\d{2}):(\d{2}))$/.exec(time);
  if (!m) throw new Error(`genai-prices: invalid time of day '${time}'`);
  const local = Number(m[1]) * 3600 + Number(m[2]) * 60 + Number(m[3]);
  const offset = m[4] === 'Z' ? 0 : (m[5] === '-' ? -1 : 1) * (Number(m[6]) * 3600 + Number(m[7]) * 60);
  return (local - offset + 86_400) % 86_400;
}

function compileVariant(constraint: PriceConstraint | undefined, source: ModelPrice): PriceVariant {
  const rates: Record<string, Rate> = {};
  for (const [k, v] of Object.entries(source)) {
    if (v === undefined) continue;
    rates[k] =
      typeof v === 'number'
        ? v
        : { base: v.base, tiers: v.tiers.map((t) => ({ start: t.start, price: t.price })) };
  }
  const priced = UNITS.filter((u) => rates[u.priceKey] !== undefined).sort(
    (a, b) => Object.keys(b.dims).length - Object.keys(a.dims).length || a.usageKey.localeCompare(b.usageKey),
  );
  const decimals = Object.values(rates).flatMap((r) =>
    typeof r === 'number' ? [r] : [r.base, ...r.tiers.map((t) => t.price)],
  );
  const exp = Math.max(0, ...decimals.map((n) => toDecimal(n).exp));
  const scaled = (n: number): bigint => {
    const d = toDecimal(n);
    return d.digits * 10n ** BigInt(exp - d.exp);
  };
  const units = priced.map((u): CompiledUnit => {
    const r = rates[u.priceKey]!;
    const tiers = typeof r === 'number' ? [] : [...r.tiers].sort((a, b) => a.start - b.start);
    return {
      usageKey: u.usageKey,
      priceKey: u.priceKey,
      factor: BigInt(1e6 / u.per),
      base: scaled(typeof r === 'number' ? r : r.base),
      tiers: tiers.map((t) => ({ start: t.start, price: scaled(t.price) })),
      descendants: priced.flatMap((p, i) =>
        p !== u && Object.entries(u.dims).every(([d, v]) => p.dims[d] === v) ? [i] : [],
      ),
    };
  });
  const known = new Set(UNITS.map((u) => u.priceKey));
  return {
    constraint,
    rates: Object.freeze(rates),
    units,
    scale: 10n ** BigInt(exp),
    uncharged: Object.keys(rates).filter((k) => !known.has(k)),
  };
}

/**
 * A non-negative number as the decimal it was written as (JavaScript prints the shortest
 * decimal that reads back to the same double: 0.075 is "0.075"), so 0.075 is 75 * 10^-3
 * exactly, not the binary fraction nearest to it.
 */
function toDecimal(n: number): { digits: bigint; exp: number } {
  if (!Number.isFinite(n) || n < 0) throw new Error(`not a price: ${n}`);
  const [mantissa = '0', e = '0'] = String(n).split('e');
  const [int = '0', frac = ''] = mantissa.split('.');
  const exp = frac.length - Number(e);
  const digits = BigInt(int + frac);
  return exp >= 0 ? { digits, exp } : { digits: digits * 10n ** BigInt(-exp), exp: 0 };
}
