// Where a deployment's price comes from (genai-prices by base URL, type or model name; a config
// override), time-dependent rates, the start-up price table, and `tollgate prices`' report.
// Database rates are compared with the package's own answers, not copied, so a data update
// changes numbers without breaking the tests.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { calcPrice } from '@pydantic/genai-prices';
import type { Config, DeploymentConfig, ModelConfig, ProviderConfig } from '../../../src/config/schema.js';
import { createPricing } from '../../../src/accounting/cost.js';
import { describePrices, runPricesCli } from '../../../src/accounting/prices-cli.js';
import { overridePrice, resolvePrice, type PriceOverride } from '../../../src/accounting/prices.js';

const OPENAI = 'https://api.openai.com/v1';
const version = (
  JSON.parse(readFileSync('node_modules/@pydantic/genai-prices/package.json', 'utf8')) as { version: string }
).version;

const provider = (name: string, type: ProviderConfig['type'], baseUrl: string): ProviderConfig =>
  ({ name, type, baseUrl, headers: {} }) as unknown as ProviderConfig;
const deployment = (p: string, model: string | undefined, prices?: PriceOverride): DeploymentConfig =>
  ({ provider: p, model, weight: 1, prices }) as unknown as DeploymentConfig;
const route = (name: string, deployments: DeploymentConfig[]): ModelConfig =>
  ({
    name,
    deployments,
    strategy: 'priority',
    fallbacks: [],
    contextFallbacks: [],
  }) as unknown as ModelConfig;
const configOf = (
  providers: ProviderConfig[],
  models: ModelConfig[],
  aliases: Config['aliases'] = {},
): Pick<Config, 'providers' | 'models' | 'aliases' | 'source'> => ({
  providers: Object.fromEntries(providers.map((p) => [p.name, p])),
  models: Object.fromEntries(models.map((m) => [m.name, m])),
  aliases,
  source: 'test.yaml',
});
const dbRates = (model: string, providerId: string, at?: Date): unknown =>
  JSON.parse(JSON.stringify(calcPrice({}, model, { providerId, timestamp: at })!.model_price));
const resolve = (type: ProviderConfig['type'], baseUrl: string, model: string, prices?: PriceOverride) =>
  resolvePrice({ label: 'models.m.deployments[0]', provider: { type, baseUrl }, model, prices });

describe('prices: where a deployment gets its price', () => {
  it('finds an OpenAI deployment in genai-prices by its base URL, at the rates the package itself uses', () => {
    const price = resolve('openai', OPENAI, 'gpt-4o-mini')!;
    assert.deepEqual(price.source, {
      kind: 'genai-prices',
      providerId: 'openai',
      modelId: 'gpt-4o-mini',
      matchedBy: 'base-url',
      via: undefined,
      dataVersion: `@pydantic/genai-prices ${version}`,
    });
    assert.equal(price.variants.length, 1);
    assert.deepEqual(price.variantAt(Date.now()).rates, dbRates('gpt-4o-mini', 'openai'));
  });

  it('matches OpenAI-compatible hosts by base URL, else by the model name, else not at all', () => {
    const groq = resolve('openai', 'https://api.groq.com/openai/v1', 'llama-3.3-70b-versatile')!;
    assert.equal(groq.source.kind === 'genai-prices' && groq.source.providerId, 'groq');
    assert.equal(groq.source.kind === 'genai-prices' && groq.source.matchedBy, 'base-url');
    const openrouter = resolve('openai', 'https://openrouter.ai/api/v1', 'openai/gpt-4o')!;
    assert.equal(openrouter.source.kind === 'genai-prices' && openrouter.source.providerId, 'openrouter');
    // A self-hosted server: the name is OpenAI's, so OpenAI's price; an unknown name has none.
    const local = resolve('openai', 'http://10.0.0.5:8000/v1', 'gpt-4o')!;
    assert.deepEqual(
      local.source.kind === 'genai-prices' && [local.source.providerId, local.source.matchedBy],
      ['openai', 'model-name'],
    );
    assert.equal(resolve('openai', 'http://10.0.0.5:8000/v1', 'my-llama-finetune'), null);
  });

  it("prices Azure from Azure's list, which falls back to OpenAI's for the same model name", () => {
    const azure = resolve('azure', 'https://my-resource.openai.azure.com', 'gpt-4o')!;
    assert.deepEqual(azure.source.kind === 'genai-prices' && azure.source, {
      kind: 'genai-prices',
      providerId: 'openai',
      modelId: 'gpt-4o',
      matchedBy: 'base-url',
      via: 'azure',
      dataVersion: `@pydantic/genai-prices ${version}`,
    });
    const custom = resolve('azure', 'https://llm.example.com', 'gpt-4o')!;
    assert.equal(custom.source.kind === 'genai-prices' && custom.source.matchedBy, 'provider-type');
  });

  it('prices an Anthropic deployment behind a proxy by its provider type', () => {
    const price = resolve('anthropic', 'https://llm-proxy.example.com/v1', 'claude-sonnet-4-5-20250929')!;
    assert.deepEqual(
      price.source.kind === 'genai-prices' && [price.source.providerId, price.source.matchedBy],
      ['anthropic', 'provider-type'],
    );
  });

  it("lets a config override replace the database's entry whole", () => {
    const price = resolve('openai', OPENAI, 'gpt-4o', { inputPerMillion: 1, outputPerMillion: 4 })!;
    assert.deepEqual(price.source, { kind: 'config', deployment: 'models.m.deployments[0]' });
    // No cache_read_mtok from the database: cached tokens are charged as input.
    assert.deepEqual(price.variantAt(0).rates, { input_mtok: 1, output_mtok: 4 });
  });

  it('reads an empty prices block as no override', () => {
    const empty = { inputPerMillion: undefined, outputPerMillion: undefined };
    assert.equal(overridePrice('x', empty), null);
    assert.equal(resolve('openai', OPENAI, 'gpt-4o', empty)!.source.kind, 'genai-prices');
  });

  it('picks time-dependent rates as genai-prices does: from a start date, and in a daily window', () => {
    const o3 = resolve('openai', OPENAI, 'o3')!;
    for (const at of ['2025-06-09T23:59:59Z', '2025-06-10T00:00:00Z']) {
      assert.deepEqual(o3.variantAt(Date.parse(at)).rates, dbRates('o3', 'openai', new Date(at)), at);
    }
    assert.notDeepEqual(o3.variantAt(Date.parse('2025-06-09Z')), o3.variantAt(Date.parse('2025-06-10Z')));
    // DeepSeek's peak hours, 00:30 to 16:30 UTC, every day.
    const ds = resolve('openai', 'https://api.deepseek.com/v1', 'deepseek-chat')!;
    const times = ['00:29:59', '00:30:00', '16:29:59', '16:30:00'].map((t) => `2026-01-05T${t}Z`);
    for (const at of times) {
      assert.deepEqual(
        ds.variantAt(Date.parse(at)).rates,
        dbRates('deepseek-chat', 'deepseek', new Date(at)),
        at,
      );
    }
    assert.notDeepEqual(ds.variantAt(Date.parse(times[0]!)).rates, ds.variantAt(Date.parse(times[1]!)).rates);
  });
});

describe('createPricing: the start-up price table', () => {
  const config = configOf(
    [provider('openai', 'openai', OPENAI), provider('local', 'openai', 'http://10.0.0.5:8000/v1')],
    [
      route('gpt-4o-mini', [deployment('openai', 'gpt-4o-mini')]),
      route('mine', [deployment('local', 'my-llama')]),
      route('cheap', [deployment('local', 'my-llama'), deployment('openai', 'gpt-4o-mini')]),
      route('claude-*', [deployment('local', undefined, { inputPerMillion: 1, outputPerMillion: 2 })]),
      route('*', [deployment('openai', undefined)]),
    ],
  );

  it('resolves each deployment once and answers from memory; lists the unpriced for the start-up log', () => {
    const pricing = createPricing(config);
    const a = pricing.priceOf('openai', 'gpt-4o-mini');
    assert.ok(a);
    assert.equal(pricing.priceOf('openai', 'gpt-4o-mini'), a);
    assert.equal(pricing.priceOf('local', 'my-llama'), null);
    assert.deepEqual(pricing.warnings, [
      'models.mine.deployments[0]: no price for local/my-llama; its requests cost null',
    ]);
  });

  it("resolves a wildcard route's deployments per model name, with the route's override", () => {
    const pricing = createPricing(config);
    const claude = pricing.priceOf('local', 'claude-x')!;
    assert.deepEqual(claude.source, { kind: 'config', deployment: 'models.claude-*.deployments[0]' });
    assert.equal(pricing.priceOf('local', 'claude-x'), claude);
    assert.equal(pricing.priceOf('openai', 'gpt-4o')?.source.kind, 'genai-prices');
  });

  it('warns when one provider and model carry two different overrides', () => {
    const pricing = createPricing(
      configOf(
        [provider('openai', 'openai', OPENAI)],
        [
          route('a', [deployment('openai', 'gpt-4o', { inputPerMillion: 1 })]),
          route('b', [deployment('openai', 'gpt-4o', { inputPerMillion: 2 })]),
        ],
      ),
    );
    assert.deepEqual(pricing.warnings, [
      "models.b.deployments[0]: same provider and model as models.a.deployments[0] but other prices; models.a.deployments[0]'s apply",
    ]);
  });

  it("prices a requested model at its route's first priced deployment; estimates at its dearest", () => {
    const pricing = createPricing(config);
    const usage = { prompt_tokens: 1000, completion_tokens: 100, total_tokens: 1100 };
    const mini = pricing.costMicros({ provider: 'openai', model: 'gpt-4o-mini' }, usage);
    assert.ok(mini !== null && mini > 0);
    assert.equal(pricing.modelCostMicros('cheap', usage), mini);
    assert.equal(pricing.modelCostMicros('mine', usage), null);
    assert.equal(pricing.estimateMicros('cheap', 1000, 100), mini);
    // claude-x: 1000 * 1 + 100 * 2 micro-dollars at the wildcard's override.
    assert.equal(pricing.estimateMicros('claude-x', 1000, 100), 1200);
    assert.equal(pricing.estimateMicros('claude-x', 999.2, 99.1), 1200);
    assert.equal(pricing.estimateMicros('mine', 1000, 100), 0);
  });
});

describe('tollgate prices', () => {
  const config = configOf(
    [provider('openai', 'openai', OPENAI), provider('vllm', 'openai', 'http://10.0.0.5:8000/v1')],
    [
      route('gpt-4o-mini', [deployment('openai', 'gpt-4o-mini')]),
      route('local', [deployment('vllm', 'qwen3-32b', { inputPerMillion: 0.5, outputPerMillion: 1.5 })]),
    ],
    { fast: { name: 'fast', models: ['gpt-4o-mini'], strategy: 'priority' } },
  );

  it("shows a configured model's genai-prices rates and where they came from", () => {
    const rates = dbRates('gpt-4o-mini', 'openai') as Record<string, number>;
    const out = describePrices(config, 'gpt-4o-mini');
    const lines = out.split('\n');
    assert.equal(lines[0], `models.gpt-4o-mini.deployments[0]: openai/gpt-4o-mini (type openai, ${OPENAI})`);
    assert.equal(
      lines[1],
      `  source: genai-prices: provider openai, model gpt-4o-mini, matched by the provider's base URL; ` +
        `data @pydantic/genai-prices ${version}`,
    );
    assert.equal(lines[2], '  USD per 1M tokens:');
    assert.ok(lines.includes(`    input            ${rates.input_mtok}`), out);
    assert.ok(lines.includes(`    cached input     ${rates.cache_read_mtok}`), out);
    assert.ok(lines.includes(`    output           ${rates.output_mtok}`), out);
    assert.ok(lines.includes('    cache write      - (charged as input)'), out);
    // An alias and the upstream model name find the same deployment.
    assert.equal(describePrices(config, 'fast'), out);
  });

  it("shows an override as the config's, at its deployment", () => {
    assert.equal(
      describePrices(config, 'qwen3-32b'),
      [
        'models.local.deployments[0]: vllm/qwen3-32b (type openai, http://10.0.0.5:8000/v1)',
        "  source: config override at models.local.deployments[0] (replaces genai-prices' entry whole)",
        '  USD per 1M tokens:',
        '    input            0.5',
        '    cached input     - (charged as input)',
        '    output           1.5',
        '    cache write      - (charged as input)',
        '',
      ].join('\n'),
    );
  });

  it('falls back to the database for a model no deployment serves, with its tiers', () => {
    const out = describePrices(config, 'claude-sonnet-4-5', { provider: 'anthropic' });
    assert.match(out, /^claude-sonnet-4-5: no deployment in test\.yaml serves it with provider 'anthropic'/);
    assert.match(out, /provider anthropic, model claude-sonnet-4-5, matched by the provider id asked for/);
    assert.match(out, /input {12}\d+(\.\d+)? \(above 200,000 prompt tokens: \d+(\.\d+)?\)/);
  });

  it('marks which of several time-dependent rates is in force', () => {
    const out = describePrices(config, 'deepseek-chat', {
      provider: 'deepseek',
      atMs: Date.parse('2026-01-05T12:00:00Z'),
    });
    assert.match(out, /^ {2}otherwise:$/m);
    assert.match(out, /^ {2}daily 00:30:00Z to 16:30:00Z \(in force now\):$/m);
  });

  it('says so when nothing knows the price', () => {
    assert.match(describePrices(config, 'no-such-model-anywhere'), /no price: neither a config override/);
  });

  it('exits 2 with the usage when no model is named', async () => {
    const err: string[] = [];
    const code = await runPricesCli([], { stdout: () => undefined, stderr: (t) => err.push(t), env: {} });
    assert.equal(code, 2);
    assert.match(err.join(''), /usage: tollgate prices MODEL/);
  });
});
