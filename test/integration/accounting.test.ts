// Accounting through real HTTP on the Redis store: hundreds of concurrent requests (JSON and
// streams) whose logged costs sum exactly to the spend counters; a spent budget answering the
// official SDK with 429 insufficient_quota that it does not retry; a threshold alert POSTed
// once; the metrics after that sequence; and the output cap of a tier.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import OpenAI from 'openai';
import { dayOf } from '../../src/accounting/periods.js';
import { startFakeUpstream } from '../../src/fake-upstream/server.js';
import type { FakeUpstream } from '../../src/fake-upstream/types.js';
import { createKeys } from '../../src/stores/keys.js';
import { baseConfig, makeTeam, startGateway, type StartedGateway } from '../helpers/start-gateway.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const PREFIX = `tg:test:${randomBytes(4).toString('hex')}:`;
// Prices chosen so that every request has a cost with a fraction of a micro-dollar before rounding.
const PRICES = { inputPerMillion: 0.15, outputPerMillion: 0.6 };

describe('accounting through the gateway', () => {
  let fake: FakeUpstream;
  let gw: StartedGateway;
  let hook: Server;
  let hookUrl: string;
  let redis: Redis;
  const alerts: Record<string, unknown>[] = [];
  const busy = makeTeam('busy');
  const capped = makeTeam('capped');
  capped.entry = {
    ...capped.entry,
    tier: 'free',
    budgets: [{ period: 'day', tokens: 400, thresholds: [50] }],
  } as typeof capped.entry;

  before(async () => {
    hook = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        alerts.push(JSON.parse(body) as Record<string, unknown>);
        res.end('ok');
      });
    });
    await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
    const addr = hook.address();
    hookUrl = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}/alerts`;
    fake = await startFakeUpstream({ recordRequests: false });
    const config = baseConfig(fake.url, [busy, capped], {
      store: { type: 'redis', redis: { url: REDIS_URL, keyPrefix: PREFIX } },
      models: {
        'gpt-4o-mini': { deployments: [{ provider: 'fake', prices: PRICES }] },
      },
      tiers: { free: { maxOutputTokens: 50 } },
      accounting: { webhook: { url: hookUrl, attempts: 2, baseDelayMs: 10 } },
    });
    gw = await startGateway(config);
    redis = new Redis(REDIS_URL);
  });
  after(async () => {
    await redis.quit();
    await gw.close();
    await fake.close();
    await new Promise((r) => hook.close(r));
  });

  it('sums the logged costs of 300 concurrent requests exactly into the spend counters', async () => {
    const N = 300;
    const ids = await Promise.all(
      Array.from({ length: N }, async (_, i) => {
        const stream = i % 3 === 0;
        const res = await fetch(`${gw.baseURL}/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${busy.key}`, 'content-type': 'application/json' },
          // Sampled (temperature 0.5): not cached, so every request reaches the upstream.
          body: JSON.stringify({
            model: 'gpt-4o-mini',
            temperature: 0.5,
            stream,
            messages: [{ role: 'user', content: `question ${i} ${'word '.repeat(i % 17)}` }],
          }),
        });
        assert.equal(res.status, 200);
        await res.text();
        return res.headers.get('x-request-id')!;
      }),
    );
    const lines = await Promise.all(
      ids.map((id) => gw.logs.waitFor((l) => l.msg === 'request' && l.reqId === id, 5_000)),
    );
    const micros = lines.map((l) => Math.round((l.cost_usd as number) * 1_000_000));
    assert.ok(micros.every((m) => Number.isInteger(m) && m > 0));
    const tokens = lines.reduce(
      (a, l) => a + (l.prompt_tokens as number) + (l.completion_tokens as number),
      0,
    );
    const keys = createKeys(PREFIX);
    const day = keys.teamSpend('busy', dayOf(Date.now()));
    // The counters settle just after each response: wait until all 300 are in.
    const read = async () =>
      Object.fromEntries(Object.entries(await redis.hgetall(day)).map(([k, v]) => [k, Number(v)]));
    let hash = await read();
    for (let i = 0; i < 100 && (hash.requests ?? 0) < N; i++) {
      await new Promise((r) => setTimeout(r, 20));
      hash = await read();
    }
    assert.equal(hash.requests, N);
    assert.equal(
      hash.cost,
      micros.reduce((a, b) => a + b, 0),
    );
    assert.equal(hash.tokens, tokens);
    assert.equal(hash[`cost|k|${busy.keyId}`], hash.cost);
    // The metrics saw the same requests and the same money.
    const metrics = await (await fetch(`${gw.url}/metrics`)).text();
    const requests = [...metrics.matchAll(/^tollgate_requests_total\{[^}]*team="busy"[^}]*\} (\d+)/gm)];
    assert.equal(
      requests.reduce((a, m) => a + Number(m[1]), 0),
      N,
    );
    const cost = /^tollgate_cost_usd_total\{[^}]*team="busy"[^}]*\} ([\d.e-]+)/m.exec(metrics);
    assert.equal(Number(cost?.[1]), hash.cost / 1_000_000);
  });

  it('caps output by tier, alerts once at a threshold, then stops the SDK with insufficient_quota', async () => {
    const sdk = new OpenAI({ apiKey: capped.key, baseURL: gw.baseURL, maxRetries: 3 });
    const ask = (i: number) => ({
      model: 'gpt-4o-mini',
      temperature: 0.5,
      max_tokens: 500,
      messages: [{ role: 'user' as const, content: `capped ${i}` }],
    });
    // The tier caps max_tokens at 50, and the response says so.
    const first = await sdk.chat.completions.create(ask(0)).withResponse();
    assert.equal(first.response.headers.get('x-tollgate-output-cap'), '50; clamped from 500');
    // Spend tokens until the 400-token day budget refuses.
    let refused: unknown;
    for (let i = 1; i < 50 && refused === undefined; i++) {
      try {
        await sdk.chat.completions.create(ask(i));
      } catch (err) {
        refused = err;
      }
    }
    assert.ok(refused instanceof OpenAI.RateLimitError, String(refused));
    assert.equal(refused.code, 'insufficient_quota');
    assert.equal(refused.headers?.get('x-should-retry'), 'false');
    // The SDK did not retry (maxRetries 3): exactly one refused request reached the gateway.
    const refusedLine = await gw.logs.waitFor(
      (l) => l.msg === 'request' && l.budget_exhausted === 'team:day:tokens',
    );
    assert.equal(refusedLine.status, 429);
    const refusals = gw.logs.lines.filter(
      (l) => l.msg === 'request' && l.team === 'capped' && l.status === 429,
    );
    assert.equal(refusals.length, 1);
    // The 50% threshold was crossed once: one alert, delivered once.
    for (let i = 0; i < 100 && !alerts.some((a) => a.type === 'budget.threshold'); i++)
      await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 100));
    const thresholdAlerts = alerts.filter((a) => a.type === 'budget.threshold');
    assert.equal(thresholdAlerts.length, 1);
    assert.equal(thresholdAlerts[0]!.team, 'capped');
    assert.equal(thresholdAlerts[0]!.metric, 'tokens');
    assert.equal(thresholdAlerts[0]!.threshold_percent, 50);
    const metrics = await (await fetch(`${gw.url}/metrics`)).text();
    assert.match(metrics, /^tollgate_limit_rejections_total\{team="capped",kind="budget"\} 1$/m);
  });
});
