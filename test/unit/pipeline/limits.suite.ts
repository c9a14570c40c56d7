// The limits stage's behaviour on a Store: RPM/TPM buckets, reservations and their reconcile,
// concurrency slots and the FIFO wait. limits.test.ts runs it on MemoryStore and
// test/stores/redis-cluster.test.ts on a RedisStore over a Redis Cluster, so the stage is
// known to work unchanged where its buckets and slot set must share one hash slot.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { TeamLimitsConfig } from '../../../src/config/schema.js';
import { GatewayError } from '../../../src/errors.js';
import { createLimitsStage } from '../../../src/pipeline/stages/limits.js';
import type { Chunk, Outcome, PipelineContext, StreamOutcome, Usage } from '../../../src/pipeline/types.js';
import { createKeys } from '../../../src/stores/keys.js';
import type { Store } from '../../../src/stores/store.js';
import { createLogSink } from '../../helpers/log-sink.js';
import { Canceller } from '../../../src/pipeline/abort.js';

const LIMITS = {
  bytesPerToken: 3,
  expectedCompletionTokens: 100,
  admitAhead: { tickets: 0, maxAgeMs: 2_000, headroom: 0.5 },
};

function teamLimits(l: Partial<TeamLimitsConfig>): TeamLimitsConfig {
  return {
    rpm: undefined,
    tpm: undefined,
    concurrency: undefined,
    maxWaitMs: 0,
    perKey: undefined,
    models: {},
    ...l,
  };
}

let n = 0;
function ctx(
  over: { body?: Record<string, unknown>; keyId?: string; model?: string; signal?: Canceller } = {},
) {
  const body = over.body ?? { model: 'm', messages: [{ role: 'user', content: 'hi' }], max_tokens: 10 };
  const rawBody = Buffer.from(JSON.stringify(body));
  return {
    reqId: `r${++n}`,
    endpoint: 'chat',
    team: { name: 'search', models: new Set(), allModels: true },
    keyId: over.keyId ?? 'k1',
    model: over.model ?? 'm',
    body,
    rawBody,
    stream: false,
    clientWantsUsage: false,
    headers: {},
    logFields: {},
    signal: over.signal ?? new Canceller(),
    log: createLogSink().log,
    candidates: [],
    deployment: undefined,
    attempts: 0,
  } as unknown as PipelineContext;
}

const usage = (total: number): Usage => ({
  prompt_tokens: total - 5,
  completion_tokens: 5,
  total_tokens: total,
});
const json = (u?: Usage): Outcome => ({ kind: 'json', status: 200, headers: {}, body: {}, usage: u });

function stageOn(store: Store, l: Partial<TeamLimitsConfig>) {
  const keys = createKeys(`tg:test:${Math.random()}:`);
  const s = createLimitsStage(
    { store, keys, log: createLogSink().log },
    { teams: [{ name: 'search', limits: teamLimits(l) }], limits: LIMITS, slotLeaseMs: 60_000 },
  );
  return { s, store, keys };
}

const rejects429 = async (
  p: Promise<unknown>,
  check: (e: GatewayError) => void = () => {},
): Promise<void> => {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof GatewayError, String(e));
    assert.equal(e.status, 429);
    check(e);
    return true;
  });
};

/**
 * Registers the suite. `storeFor` gives the store of one test (a fresh one, or one shared by
 * all: every test uses keys under a prefix of its own).
 */
export function runLimitsStageSuite(storeName: string, storeFor: () => Store): void {
  const stage = (l: Partial<TeamLimitsConfig>) => stageOn(storeFor(), l);

  describe(`limits stage on ${storeName}`, () => {
    it('passes a team without limits straight through, adding no headers', async () => {
      const { s } = stage({});
      const limitsLess = createLimitsStage(
        { store: storeFor(), keys: createKeys(), log: createLogSink().log },
        { teams: [{ name: 'other', limits: undefined }], limits: LIMITS, slotLeaseMs: 1000 },
      );
      const out = await limitsLess(ctx(), async () => json(usage(10)));
      assert.deepEqual(out.headers, {});
      void s;
    });

    it('admits up to the RPM, then answers 429 type requests with OpenAI headers and an exact Retry-After', async () => {
      const { s } = stage({ rpm: 3 });
      for (let i = 0; i < 3; i++) {
        const out = await s(ctx(), async () => json(usage(10)));
        assert.equal(out.headers['x-ratelimit-limit-requests'], '3');
        assert.equal(out.headers['x-ratelimit-remaining-requests'], String(2 - i));
      }
      await rejects429(
        s(ctx(), () => assert.fail('next must not run')),
        (e) => {
          assert.equal(e.type, 'requests');
          assert.equal(e.code, 'rate_limit_exceeded');
          // 1 request at 3/min refills in 20 s.
          const ms = Number(e.headers['retry-after-ms']);
          assert.ok(ms > 19_000 && ms <= 20_000, String(ms));
          assert.equal(e.headers['retry-after'], '20');
          assert.equal(e.headers['x-ratelimit-remaining-requests'], '0');
          assert.match(e.headers['x-ratelimit-reset-requests']!, /^(59|60)(\.\d+)?s$|^1m0s$/);
          assert.match(
            e.message,
            /Rate limit reached for team 'search' on requests per min \(RPM\): Limit 3/,
          );
        },
      );
    });

    it('reserves the token estimate and refunds what the real usage did not need', async () => {
      const { s, store, keys } = stage({ tpm: 1_200 });
      const c = ctx();
      const reserved = Math.ceil(c.rawBody.length / 3) + 10;
      let seenRemaining = '';
      const out = await s(c, async () => json(usage(30)));
      seenRemaining = out.headers['x-ratelimit-remaining-tokens']!;
      assert.equal(seenRemaining, String(1_200 - reserved));
      const after = await store.take([
        {
          bucket: { key: keys.teamBucket('search', 'tpm'), capacity: 1_200, refillPerSecond: 0.000001 },
          cost: 0,
        },
      ]);
      assert.ok(
        Math.abs(after.buckets[0]!.remaining - (1_200 - 30)) < 2,
        String(after.buckets[0]!.remaining),
      );
    });

    it('charges an overage beyond the reservation, so the next request waits for it', async () => {
      const { s } = stage({ tpm: 1_000 });
      await s(ctx(), async () => json(usage(990)));
      await rejects429(
        s(ctx(), () => assert.fail('next must not run')),
        (e) => assert.equal(e.type, 'tokens'),
      );
    });

    it('rejects at once, with x-should-retry false, a request that can never fit', async () => {
      const { s } = stage({ tpm: 50 });
      await rejects429(
        s(ctx({ body: { model: 'm', messages: [{ role: 'user', content: 'x' }], max_tokens: 500 } }), () =>
          assert.fail('next must not run'),
        ),
        (e) => {
          assert.equal(e.headers['x-should-retry'], 'false');
          assert.match(e.message, /can never be admitted/);
        },
      );
    });

    it('keeps per-key and per-model buckets apart from each other', async () => {
      const { s } = stage({
        perKey: { rpm: 1, tpm: undefined },
        models: { big: { rpm: 1, tpm: undefined } },
      });
      await s(ctx({ keyId: 'a' }), async () => json(usage(5)));
      await s(ctx({ keyId: 'b' }), async () => json(usage(5)));
      await rejects429(s(ctx({ keyId: 'a' }), async () => json()));
      await s(ctx({ keyId: 'c', model: 'big' }), async () => json(usage(5)));
      await rejects429(
        s(ctx({ keyId: 'd', model: 'big' }), async () => json()),
        (e) => assert.match(e.message, /team 'search' on model big/),
      );
    });

    it('gives the tokens back when the request fails downstream, but keeps the request counted', async () => {
      const { s } = stage({ rpm: 2, tpm: 1_000 });
      await assert.rejects(
        s(ctx(), async () => {
          throw new GatewayError({ status: 502, type: 'server_error', code: 'x', message: 'boom' });
        }),
        (e: unknown) => e instanceof GatewayError && e.headers['x-ratelimit-remaining-requests'] === '1',
      );
      const out = await s(ctx(), async () => json(usage(10)));
      assert.equal(out.headers['x-ratelimit-remaining-requests'], '0');
      assert.ok(Number(out.headers['x-ratelimit-remaining-tokens']) > 900);
    });

    it('caps in-flight requests per team and frees the slot when a request ends', async () => {
      const { s } = stage({ concurrency: 1 });
      let release!: () => void;
      const first = s(ctx(), () => new Promise<Outcome>((r) => (release = () => r(json(usage(5))))));
      await new Promise((r) => setTimeout(r, 10));
      await rejects429(
        s(ctx(), async () => json()),
        (e) => assert.match(e.message, /Concurrency limit/),
      );
      release();
      await first;
      await new Promise((r) => setTimeout(r, 10));
      await s(ctx(), async () => json(usage(5)));
    });

    it('queues a request over the limit (FIFO) when maxWaitMs allows, then admits it', async () => {
      // 600 rpm = a token every 100 ms; the bucket is drained first.
      const { s, store, keys } = stage({ rpm: 600, maxWaitMs: 2_000 });
      await store.take([
        { bucket: { key: keys.teamBucket('search', 'rpm'), capacity: 600, refillPerSecond: 10 }, cost: 600 },
      ]);
      const order: number[] = [];
      const t0 = Date.now();
      await Promise.all(
        [0, 1, 2].map((i) =>
          s(ctx(), async () => {
            order.push(i);
            return json(usage(1));
          }),
        ),
      );
      const waited = Date.now() - t0;
      assert.deepEqual(order, [0, 1, 2]);
      // Three tokens at 100 ms each: about 300 ms.
      assert.ok(waited >= 250 && waited < 1_500, `waited ${waited} ms`);
    });

    it('answers 429 when even waiting maxWaitMs would not be enough', async () => {
      const { s } = stage({ rpm: 1, maxWaitMs: 500 });
      await s(ctx(), async () => json(usage(1)));
      const t0 = Date.now();
      await rejects429(s(ctx(), async () => json()));
      assert.ok(Date.now() - t0 < 200, 'rejected without waiting');
    });

    it('settles an aborted stream at the prompt estimate plus the chunks delivered', async () => {
      const { s, store, keys } = stage({ tpm: 2_000 });
      const c = ctx({ body: { model: 'm', messages: [{ role: 'user', content: 'hi' }], max_tokens: 1000 } });
      async function* chunks(): AsyncGenerator<Chunk> {
        for (let i = 0; i < 10; i++) yield { data: `{"i":${i}}` };
      }
      const streamOutcome: StreamOutcome = {
        kind: 'stream',
        status: 200,
        headers: {},
        chunks: chunks(),
        usage: Promise.resolve(undefined),
      };
      const out = (await s(c, async () => streamOutcome)) as StreamOutcome;
      let got = 0;
      for await (const _ of out.chunks) {
        if (++got === 4) break;
      }
      await new Promise((r) => setTimeout(r, 10));
      const prompt = Math.ceil(c.rawBody.length / 3);
      const after = await store.take([
        {
          bucket: { key: keys.teamBucket('search', 'tpm'), capacity: 2_000, refillPerSecond: 0.000001 },
          cost: 0,
        },
      ]);
      assert.ok(
        Math.abs(after.buckets[0]!.remaining - (2_000 - prompt - 4)) < 2,
        String(after.buckets[0]!.remaining),
      );
    });
  });
}
