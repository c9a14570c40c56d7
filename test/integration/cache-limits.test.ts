// The cache and the limits through real HTTP, on the Redis store: what a team sees with the
// official SDK (hits in both forms, 429s with OpenAI's headers) and what the upstream sees.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, beforeEach, describe, it } from 'node:test';
import OpenAI from 'openai';
import { startFakeUpstream } from '../../src/fake-upstream/server.js';
import type { FakeUpstream } from '../../src/fake-upstream/types.js';
import { baseConfig, makeTeam, startGateway, type StartedGateway } from '../helpers/start-gateway.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

for (const storeKind of ['redis', 'memory'] as const) {
  describe(`cache and limits on the ${storeKind} store`, () => {
    let fake: FakeUpstream;
    let gw: StartedGateway;
    const cached = makeTeam('cached');
    const other = makeTeam('other');
    const limited = makeTeam('limited');
    limited.entry = { ...limited.entry, limits: { rpm: 3, tpm: 100_000 } } as typeof limited.entry;
    const sdk = (team = cached): OpenAI =>
      new OpenAI({ apiKey: team.key, baseURL: gw.baseURL, maxRetries: 0 });
    const ask = (content: string) => ({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user' as const, content }],
      temperature: 0,
    });

    before(async () => {
      fake = await startFakeUpstream();
      const store =
        storeKind === 'redis'
          ? {
              type: 'redis',
              redis: { url: REDIS_URL, keyPrefix: `tg:test:${randomBytes(4).toString('hex')}:` },
            }
          : { type: 'memory' };
      gw = await startGateway(baseConfig(fake.url, [cached, other, limited], { store }));
    });
    after(async () => {
      await gw.close();
      await fake.close();
    });
    beforeEach(() => fake.reset());

    it('answers a repeated request from the cache, in JSON and as a replayed stream', async () => {
      const body = ask(`cache me ${storeKind}`);
      const first = await sdk().chat.completions.create(body).withResponse();
      assert.equal(first.response.headers.get('x-tollgate-cache'), 'MISS');
      await new Promise((r) => setTimeout(r, 50));
      const second = await sdk().chat.completions.create(body).withResponse();
      assert.equal(second.response.headers.get('x-tollgate-cache'), 'HIT');
      assert.deepEqual(second.data, first.data);
      const stream = await sdk().chat.completions.create({
        ...body,
        stream: true,
        stream_options: { include_usage: true },
      });
      let text = '';
      let usage: OpenAI.CompletionUsage | null | undefined;
      for await (const chunk of stream) {
        text += chunk.choices[0]?.delta.content ?? '';
        usage = chunk.usage ?? usage;
      }
      assert.equal(text, first.data.choices[0]?.message.content);
      assert.deepEqual(usage, first.data.usage);
      assert.equal(fake.requests.length, 1, 'the upstream was called once');
      const hitLine = await gw.logs.waitFor((l) => l.msg === 'request' && l.cache === 'HIT');
      assert.equal(hitLine.cache_saved_tokens, first.data.usage?.total_tokens);
    });

    it('keeps teams apart: the same request from another team is a miss', async () => {
      const body = ask(`isolated ${storeKind}`);
      await sdk().chat.completions.create(body);
      await new Promise((r) => setTimeout(r, 50));
      const res = await sdk(other).chat.completions.create(body).withResponse();
      assert.equal(res.response.headers.get('x-tollgate-cache'), 'MISS');
      assert.equal(fake.requests.length, 2);
    });

    it('bypasses the cache for sampled requests and for Cache-Control: no-store', async () => {
      const sampled = await sdk()
        .chat.completions.create({ ...ask('sampled'), temperature: 0.7 })
        .withResponse();
      assert.equal(sampled.response.headers.get('x-tollgate-cache'), 'BYPASS');
      const noStore = await sdk()
        .chat.completions.create(ask(`no-store ${storeKind}`), { headers: { 'cache-control': 'no-store' } })
        .withResponse();
      assert.equal(noStore.response.headers.get('x-tollgate-cache'), 'BYPASS');
      await new Promise((r) => setTimeout(r, 50));
      const again = await sdk()
        .chat.completions.create(ask(`no-store ${storeKind}`))
        .withResponse();
      assert.equal(again.response.headers.get('x-tollgate-cache'), 'MISS');
    });

    it("rate-limits a team over its RPM with OpenAI's 429 and headers on every response", async () => {
      const client = sdk(limited);
      for (let i = 0; i < 3; i++) {
        const res = await client.chat.completions
          .create({ ...ask(`limited ${i}`), temperature: 1 })
          .withResponse();
        assert.equal(res.response.headers.get('x-ratelimit-limit-requests'), '3');
        assert.equal(res.response.headers.get('x-ratelimit-remaining-requests'), String(2 - i));
        assert.equal(res.response.headers.get('x-ratelimit-limit-tokens'), '100000');
        assert.match(res.response.headers.get('x-ratelimit-reset-tokens') ?? '', /^\d+(\.\d+)?(ms|s)$/);
      }
      await assert.rejects(
        client.chat.completions.create({ ...ask('one too many'), temperature: 1 }),
        (err: unknown) => {
          assert.ok(err instanceof OpenAI.RateLimitError);
          assert.equal(err.code, 'rate_limit_exceeded');
          assert.equal(err.type, 'requests');
          const ms = Number(err.headers?.get('retry-after-ms'));
          assert.ok(ms > 15_000 && ms <= 20_000, String(ms));
          assert.equal(err.headers?.get('retry-after'), String(Math.ceil(ms / 1000)));
          return true;
        },
      );
      assert.equal(fake.requests.length, 3);
    });
  });
}
