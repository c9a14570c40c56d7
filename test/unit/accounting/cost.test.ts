// Per-request cost in integer micro-dollars: the token split (cached, cache writes 5m/1h,
// reasoning), tiers, overrides, unknown prices, exact half-up rounding, sums without drift, cache
// hits, and agreement with genai-prices' own calcPrice on the database's models.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { calcPrice, type Usage as DbUsage } from '@pydantic/genai-prices';
import { costOf, requestCost } from '../../../src/accounting/cost.js';
import { microsToUsd } from '../../../src/accounting/spend.js';
import {
  lookupDbPrice,
  overridePrice,
  type PriceOverride,
  type ResolvedPrice,
  type TieredRate,
} from '../../../src/accounting/prices.js';
import type { Usage } from '../../../src/pipeline/types.js';
import { toOpenAIUsage } from '../../../src/providers/anthropic/translate-response.js';

const override = (prices: PriceOverride): ResolvedPrice => overridePrice('models.m.deployments[0]', prices)!;
const db = (model: string, providerId: string): ResolvedPrice => lookupDbPrice({ model, providerId })!;
const micro = (price: ResolvedPrice | null, usage: Usage | undefined, atMs?: number): number | null =>
  costOf(price, usage, atMs).microUsd;
const usage = (prompt: number, completion: number, details: Partial<Usage> = {}): Usage => ({
  prompt_tokens: prompt,
  completion_tokens: completion,
  total_tokens: prompt + completion,
  ...details,
});

/** genai-prices' own answer, in (fractional) micro-dollars. */
const oracle = (model: string, providerId: string, u: DbUsage, at?: Date): number =>
  calcPrice(u, model, { providerId, timestamp: at })!.total_price * 1e6;
const assertNearOracle = (ours: number | null, theirs: number, what: string): void => {
  assert.ok(ours !== null, what);
  // Ours is exact and rounded; theirs is a float sum: at most half a micro-dollar apart.
  assert.ok(Math.abs(ours - theirs) <= 0.5 + 1e-9 * theirs, `${what}: ${ours} vs ${theirs}`);
};

describe('cost: the token split', () => {
  const gpt = override({ inputPerMillion: 2.5, cachedInputPerMillion: 1.25, outputPerMillion: 10 });

  it('charges uncached prompt, cached prompt and completion (reasoning included) at their rates', () => {
    const u = usage(1000, 500, {
      prompt_tokens_details: { cached_tokens: 400 },
      completion_tokens_details: { reasoning_tokens: 200 },
    });
    // 1. 600 uncached * 2.5 = 1500   2. 400 cached * 1.25 = 500   3. 500 output * 10 = 5000
    assert.equal(micro(gpt, u), 7000);
    assert.deepEqual(costOf(gpt, u), {
      microUsd: 7000,
      source: { kind: 'config', deployment: 'models.m.deployments[0]' },
      unknown: undefined,
    });
  });

  it('charges cached tokens at the input rate when there is no cached-input rate', () => {
    const flat = override({ inputPerMillion: 2, outputPerMillion: 8 });
    assert.equal(micro(flat, usage(1000, 0, { prompt_tokens_details: { cached_tokens: 900 } })), 2000);
  });

  it("charges an Anthropic deployment's cache writes at the write rate, as the translator reports them", () => {
    const claude = override({
      inputPerMillion: 3,
      cachedInputPerMillion: 0.3,
      outputPerMillion: 15,
      cacheWritePerMillion: 3.75,
    });
    const u = toOpenAIUsage({
      input_tokens: 100,
      cache_creation_input_tokens: 1000,
      cache_read_input_tokens: 2000,
      output_tokens: 50,
    });
    assert.equal(u.prompt_tokens, 3100);
    // 100 * 3 + 1000 * 3.75 + 2000 * 0.3 + 50 * 15
    assert.equal(micro(claude, u), 300 + 3750 + 600 + 750);
  });

  it('charges 1h cache writes at their own rate and 5m ones at the write rate', () => {
    const claude = override({
      inputPerMillion: 3,
      outputPerMillion: 15,
      cacheWritePerMillion: 3.75,
      cacheWrite1hPerMillion: 6,
    });
    const u = toOpenAIUsage({
      input_tokens: 10,
      cache_creation_input_tokens: 1500,
      cache_creation: { ephemeral_5m_input_tokens: 1000, ephemeral_1h_input_tokens: 500 },
      output_tokens: 0,
    });
    assert.equal(micro(claude, u), 10 * 3 + 1000 * 3.75 + 500 * 6);
    // Without the breakdown every write is a 5m one (Anthropic's default TTL).
    assert.equal(
      micro(claude, toOpenAIUsage({ input_tokens: 10, cache_creation_input_tokens: 1500, output_tokens: 0 })),
      10 * 3 + 1500 * 3.75,
    );
  });

  it("prices 5m and 1h writes from genai-prices' entry as the package does", () => {
    const haiku = db('claude-3-5-haiku-latest', 'anthropic');
    const rates = haiku.variantAt(Date.now()).rates;
    assert.ok((rates.cache_write_1h_mtok as number) > (rates.cache_write_mtok as number));
    const u = toOpenAIUsage({
      input_tokens: 7,
      cache_creation_input_tokens: 3000,
      cache_read_input_tokens: 5000,
      cache_creation: { ephemeral_5m_input_tokens: 1000, ephemeral_1h_input_tokens: 2000 },
      output_tokens: 321,
    });
    const theirs = oracle('claude-3-5-haiku-latest', 'anthropic', {
      input_tokens: 8007,
      cache_read_tokens: 5000,
      cache_write_tokens: 3000,
      cache_write_5m_tokens: 1000,
      cache_write_1h_tokens: 2000,
      output_tokens: 321,
    });
    assertNearOracle(micro(haiku, u), theirs, 'haiku');
  });
});

describe('cost: tiers, overrides and unknown prices', () => {
  it('charges every token at the tier rate once the prompt is above the threshold', () => {
    const sonnet = db('claude-sonnet-4-5', 'anthropic');
    const rates = sonnet.variantAt(Date.now()).rates;
    const input = rates.input_mtok as TieredRate;
    const output = rates.output_mtok as TieredRate;
    const tier = (r: TieredRate): number => r.tiers[0]!.price;
    assert.equal(input.tiers[0]!.start, 200_000);
    // Exactly at the threshold: still the base rate (the tier starts above it).
    assert.equal(micro(sonnet, usage(200_000, 1000)), 200_000 * input.base + 1000 * output.base);
    assert.equal(micro(sonnet, usage(200_001, 1000)), 200_001 * tier(input) + 1000 * tier(output));
    assertNearOracle(
      micro(sonnet, usage(250_000, 1000)),
      oracle('claude-sonnet-4-5', 'anthropic', { input_tokens: 250_000, output_tokens: 1000 }),
      'sonnet > 200k',
    );
  });

  it("prices a deployment at its config override, not the database's rate", () => {
    const u = usage(1_000_000, 0);
    const fromDb = micro(db('gpt-4o', 'openai'), u);
    assert.ok(fromDb !== null && fromDb !== 1_000_000);
    assert.equal(micro(override({ inputPerMillion: 1, outputPerMillion: 1 }), u), 1_000_000);
  });

  it('is null for an unknown price and says why, never a guessed number', () => {
    assert.deepEqual(costOf(null, usage(10, 10)), { microUsd: null, source: undefined, unknown: 'no-price' });
    assert.equal(lookupDbPrice({ model: 'my-llama-finetune', baseUrl: 'http://10.0.0.5:8000/v1' }), null);
    const inputOnly = override({ inputPerMillion: 0.02 });
    assert.equal(micro(inputOnly, usage(1000, 0)), 20);
    assert.equal(costOf(inputOnly, usage(1000, 5)).unknown, 'missing-rate');
    const p = override({ inputPerMillion: 1, cachedInputPerMillion: 0.5, outputPerMillion: 1 });
    assert.equal(
      costOf(p, usage(10, 0, { prompt_tokens_details: { cached_tokens: 11 } })).unknown,
      'bad-usage',
    );
    assert.equal(costOf(p, usage(10.5, 0)).unknown, 'bad-usage');
    assert.equal(costOf(p, undefined).unknown, 'no-usage');
  });
});

describe('cost: micro-dollars', () => {
  it('is exact where float arithmetic is not, rounding half up once per request', () => {
    const mini = override({ inputPerMillion: 0.15, outputPerMillion: 0.6 });
    // 18 * 0.15 + 3 * 0.6 = 4.5 µ$ exactly: half up is 5. Summed in USD floats, as calcPrice
    // sums, it is 4.499999999999999 µ$, which rounds to 4.
    assert.equal(micro(mini, usage(18, 3)), 5);
    assert.equal(Math.round(((18 * 0.15) / 1e6 + (3 * 0.6) / 1e6) * 1e6), 4);
    // Below half a micro-dollar a request costs 0; from half on, 1.
    assert.equal(micro(mini, usage(3, 0)), 0);
    assert.equal(micro(mini, usage(4, 0)), 1);
    assert.equal(micro(override({ inputPerMillion: 0.1, outputPerMillion: 0.2 }), usage(1, 1)), 0);
    assert.equal(micro(override({ inputPerMillion: 0.1, outputPerMillion: 0.2 }), usage(5, 5)), 2);
  });

  it('adds up many small costs without drift', () => {
    const p = override({ inputPerMillion: 0.1, outputPerMillion: 0.4 });
    const one = micro(p, usage(30, 10))!; // 3 + 4 = 7 µ$
    assert.equal(one, 7);
    let total = 0;
    let floatUsd = 0;
    for (let i = 0; i < 1_000_000; i++) {
      total += micro(p, usage(30, 10))!;
      floatUsd += 30 * 0.1e-6 + 10 * 0.4e-6;
    }
    assert.equal(total, 7_000_000);
    assert.equal(microsToUsd(total), 7);
    assert.notEqual(floatUsd, 7);
  });

  it('formats micro-dollars as a USD number that logs as its exact decimal', () => {
    assert.equal(microsToUsd(1234), 0.001234);
    assert.equal(JSON.stringify({ cost_usd: microsToUsd(1234) }), '{"cost_usd":0.001234}');
    assert.equal(JSON.stringify(microsToUsd(123_456_789_012)), '123456.789012');
    assert.equal(microsToUsd(0), 0);
  });

  it('makes a cache hit cost 0 and save what the request would have cost', () => {
    const p = override({ inputPerMillion: 2, outputPerMillion: 8 });
    const u = usage(100, 10);
    assert.deepEqual(requestCost(p, u, { cacheHit: true }), {
      costMicroUsd: 0,
      savedMicroUsd: 280,
      source: p.source,
      unknown: undefined,
    });
    assert.equal(requestCost(p, u).costMicroUsd, 280);
    assert.equal(requestCost(p, u).savedMicroUsd, 0);
    assert.deepEqual(requestCost(null, u, { cacheHit: true }), {
      costMicroUsd: 0,
      savedMicroUsd: null,
      source: undefined,
      unknown: 'no-price',
    });
  });
});

describe('cost: agreement with genai-prices', () => {
  it("matches the package's calcPrice on its models to within half a micro-dollar", () => {
    let seed = 42;
    const random = (n: number): number => {
      seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648;
      return seed % n;
    };
    const models: [string, string][] = [
      ['gpt-4o', 'openai'],
      ['gpt-4o-mini', 'openai'],
      ['o3', 'openai'],
      ['claude-3-5-haiku-latest', 'anthropic'],
      ['claude-sonnet-4-5', 'anthropic'],
      ['gemini-2.5-pro', 'google'],
      ['deepseek-chat', 'deepseek'],
    ];
    for (const [model, providerId] of models) {
      const price = db(model, providerId);
      for (let i = 0; i < 200; i++) {
        const prompt = random(2) ? random(5000) : 150_000 + random(150_000);
        const cached = random(prompt + 1);
        const written = random(prompt - cached + 1);
        const hour = random(written + 1);
        const completion = random(4000);
        const at = Date.parse('2025-01-01T00:00:00Z') + random(700) * 86_400_000 + random(86_400) * 1000;
        const u = usage(prompt, completion, {
          prompt_tokens_details: {
            cached_tokens: cached,
            cache_write_tokens: written,
            cache_write_5m_tokens: written - hour,
            cache_write_1h_tokens: hour,
          },
          completion_tokens_details: { reasoning_tokens: random(completion + 1) },
        });
        const theirs = oracle(
          model,
          providerId,
          {
            input_tokens: prompt,
            cache_read_tokens: cached,
            cache_write_tokens: written,
            cache_write_5m_tokens: written - hour,
            cache_write_1h_tokens: hour,
            output_tokens: completion,
          },
          new Date(at),
        );
        assertNearOracle(micro(price, u, at), theirs, `${providerId}/${model} ${JSON.stringify(u)}`);
      }
    }
  });
});
