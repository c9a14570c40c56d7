// `tollgate prices MODEL [--provider NAME] [--config PATH]`: the rates tollgate charges for a
// model and where they come from (a config override, or genai-prices' entry and data version),
// for every configured deployment serving the model, or straight from genai-prices when none does.
import { parseArgs } from 'node:util';
import dotenv from 'dotenv';
import type { Config, ProviderConfig } from '../config/schema.js';
import {
  lookupDbPrice,
  resolvePrice,
  type PriceOverride,
  type PriceSource,
  type PriceVariant,
  type Rate,
  type ResolvedPrice,
} from './prices.js';

const USAGE = 'usage: tollgate prices MODEL [--provider NAME] [--config PATH]\n';

export interface PricesCliIo {
  stdout(text: string): void;
  stderr(text: string): void;
  /** The environment for the config; when absent, .env is loaded into process.env as `serve` does. */
  env?: NodeJS.ProcessEnv;
  now?: () => number;
}

const processIo: PricesCliIo = {
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
};

/** Runs the subcommand; resolves to the exit code (2: bad arguments, 1: bad config). */
export async function runPricesCli(args: string[], io: PricesCliIo = processIo): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: { provider: { type: 'string', short: 'p' }, config: { type: 'string', short: 'c' } },
    });
  } catch (err) {
    io.stderr(`tollgate prices: ${err instanceof Error ? err.message : String(err)}\n${USAGE}`);
    return 2;
  }
  const [model, ...extra] = parsed.positionals;
  if (model === undefined || extra.length > 0) {
    io.stderr(`tollgate prices: name one model\n${USAGE}`);
    return 2;
  }
  let env = io.env;
  if (env === undefined) {
    dotenv.config({ quiet: true });
    env = process.env;
  }
  // Loaded here, not at the top: the loader compiles the config schema on import, which
  // describePrices (and its tests) do not need.
  const { ConfigError, loadConfig } = await import('../config/load.js');
  let config: Config;
  try {
    config = loadConfig({ path: parsed.values.config, env });
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    io.stderr(`tollgate: ${err.message}\n`);
    return 1;
  }
  io.stdout(describePrices(config, model, { provider: parsed.values.provider, atMs: io.now?.() }));
  return 0;
}

interface Match {
  label: string;
  providerName: string;
  provider: ProviderConfig;
  model: string;
  prices: PriceOverride | undefined;
}

/**
 * The report for `model`: one block per deployment that serves it (by route name, alias, or
 * upstream model name; a wildcard route when nothing names it), narrowed by `provider` (a
 * provider name or type from the config); with no such deployment, genai-prices' own entry
 * (`provider` is then a genai-prices provider id; without it, the model name picks one).
 */
export function describePrices(
  config: Pick<Config, 'providers' | 'models' | 'aliases' | 'source'>,
  model: string,
  options: { provider?: string | undefined; atMs?: number | undefined } = {},
): string {
  const atMs = options.atMs ?? Date.now();
  const wanted = options.provider;
  const matches = matchingDeployments(config, model).filter(
    (m) => wanted === undefined || m.providerName === wanted || m.provider.type === wanted,
  );
  if (matches.length === 0) {
    const price = lookupDbPrice({ model, providerId: wanted });
    const scope = wanted === undefined ? '' : ` with provider '${wanted}'`;
    return (
      `${model}: no deployment in ${config.source} serves it${scope}; genai-prices' entry:\n` +
      describePrice(price, atMs)
    );
  }
  return matches
    .map((m) => {
      const head = `${m.label}: ${m.providerName}/${m.model} (type ${m.provider.type}, ${m.provider.baseUrl})\n`;
      const price = resolvePrice({ label: m.label, provider: m.provider, model: m.model, prices: m.prices });
      return head + describePrice(price, atMs);
    })
    .join('\n');
}

function matchingDeployments(
  config: Pick<Config, 'providers' | 'models' | 'aliases'>,
  model: string,
): Match[] {
  const out: Match[] = [];
  const seen = new Set<string>();
  const add = (route: string, i: number, upstream: string): void => {
    const label = `models.${route}.deployments[${i}]`;
    const d = config.models[route]?.deployments[i];
    const provider = d && config.providers[d.provider];
    if (!d || !provider || seen.has(label)) return;
    seen.add(label);
    out.push({ label, providerName: d.provider, provider, model: upstream, prices: d.prices });
  };
  const routes = config.aliases[model]?.models ?? [model];
  for (const r of routes) {
    const m = config.models[r];
    if (m && !r.endsWith('*')) m.deployments.forEach((d, i) => add(r, i, d.model ?? r));
  }
  for (const m of Object.values(config.models)) {
    m.deployments.forEach((d, i) => {
      if (d.model === model) add(m.name, i, model);
    });
  }
  if (out.length > 0 || config.models[model]) return out;
  // As the route stage does: the longest prefix route whose prefix the name starts with.
  const wildcard = Object.values(config.models)
    .filter((m) => m.name.endsWith('*') && model.startsWith(m.name.slice(0, -1)))
    .sort((a, b) => b.name.length - a.name.length)[0];
  wildcard?.deployments.forEach((d, i) => add(wildcard.name, i, d.model ?? model));
  return out;
}

const MATCHED_BY: Record<Extract<PriceSource, { kind: 'genai-prices' }>['matchedBy'], string> = {
  'base-url': "the provider's base URL",
  'provider-type': "the provider's type",
  'model-name': 'the model name',
  'provider-id': 'the provider id asked for',
};

function describePrice(price: ResolvedPrice | null, atMs: number): string {
  if (!price) {
    return '  no price: neither a config override nor genai-prices knows it; its requests cost null (counted as unpriced)\n';
  }
  const s = price.source;
  const source =
    s.kind === 'config'
      ? `config override at ${s.deployment} (replaces genai-prices' entry whole)`
      : `genai-prices: provider ${s.providerId}${s.via ? ` (via ${s.via})` : ''}, model ${s.modelId}, ` +
        `matched by ${MATCHED_BY[s.matchedBy]}; data ${s.dataVersion}`;
  const current = price.variantAt(atMs);
  const several = price.variants.length > 1;
  const blocks = price.variants.map((v) => {
    const when = several ? `  ${describeWhen(v)}${v === current ? ' (in force now)' : ''}:\n` : '';
    return when + describeRates(v, several ? '    ' : '  ');
  });
  return `  source: ${source}\n${blocks.join('')}`;
}

function describeWhen(v: PriceVariant): string {
  const c = v.constraint;
  if (c === undefined) return 'otherwise';
  return c.type === 'start_date' ? `from ${c.startDate} (UTC)` : `daily ${c.startTime} to ${c.endTime}`;
}

const ROWS: readonly [key: string, label: string, missing: string | undefined][] = [
  ['input_mtok', 'input', 'none: prompt tokens make the cost unknown'],
  ['cache_read_mtok', 'cached input', 'charged as input'],
  ['output_mtok', 'output', 'none: completion tokens make the cost unknown'],
  ['cache_write_mtok', 'cache write', 'charged as input'],
  ['cache_write_5m_mtok', 'cache write 5m', undefined],
  ['cache_write_1h_mtok', 'cache write 1h', undefined],
  ['output_reasoning_mtok', 'reasoning output', undefined],
  ['input_audio_mtok', 'audio input', undefined],
  ['output_audio_mtok', 'audio output', undefined],
];

function describeRates(v: PriceVariant, indent: string): string {
  let out = `${indent}USD per 1M tokens:\n`;
  for (const [key, label, missing] of ROWS) {
    const r = v.rates[key];
    if (r !== undefined) out += `${indent}  ${label.padEnd(17)}${formatRate(r)}\n`;
    else if (missing !== undefined) out += `${indent}  ${label.padEnd(17)}- (${missing})\n`;
  }
  const perRequest = v.rates.requests_kcount;
  if (perRequest !== undefined) out += `${indent}USD per 1,000 requests: ${formatRate(perRequest)}\n`;
  if (v.uncharged.length > 0) {
    const list = v.uncharged.map((k) => `${k} ${formatRate(v.rates[k]!)}`).join(', ');
    out += `${indent}also in the entry, not charged (usage tollgate does not report): ${list}\n`;
  }
  return out;
}

function formatRate(r: Rate): string {
  if (typeof r === 'number') return String(r);
  const tiers = r.tiers.map((t) => `above ${t.start.toLocaleString('en-US')} prompt tokens: ${t.price}`);
  return `${r.base} (${tiers.join('; ')})`;
}
