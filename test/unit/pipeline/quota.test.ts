import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GatewayError } from '../../../src/errors.js';
import { createQuotaStage } from '../../../src/pipeline/stages/quota.js';
import type { Deployment, Outcome, PipelineContext } from '../../../src/pipeline/types.js';
import { createKeys } from '../../../src/stores/keys.js';
import { MemoryStore } from '../../../src/stores/memory-store.js';
import { createLogSink } from '../../helpers/log-sink.js';

const dep = (quota?: Deployment['quota']): Deployment => ({
  id: 'acct-1/gpt-4o',
  provider: 'acct-1',
  model: 'gpt-4o',
  ...(quota ? { quota } : {}),
});

const ctx = (d: Deployment, maxTokens = 10): PipelineContext =>
  ({
    reqId: 'r',
    endpoint: 'chat',
    model: 'gpt-4o',
    body: { max_tokens: maxTokens },
    rawBody: Buffer.alloc(30),
    candidates: [d],
    logFields: {},
  }) as unknown as PipelineContext;

const ok = (total: number): Outcome => ({
  kind: 'json',
  status: 200,
  headers: {},
  body: {},
  usage: { prompt_tokens: total, total_tokens: total },
});

describe('deployment quota stage', () => {
  const setup = () => {
    const store = new MemoryStore();
    const keys = createKeys(`tg:test:${Math.random()}:`);
    return {
      store,
      keys,
      stage: createQuotaStage(
        { store, keys, log: createLogSink().log },
        { bytesPerToken: 3, expectedCompletionTokens: 100 },
      ),
    };
  };

  it('lets a deployment without a quota through untouched', async () => {
    const { stage } = setup();
    const out = await stage(ctx(dep()), async () => ok(5));
    assert.equal(out.kind, 'json');
  });

  it('holds a deployment to its RPM, across every team, without naming it to the client', async () => {
    const { stage } = setup();
    const d = dep({ rpm: 2, tpm: undefined });
    await stage(ctx(d), async () => ok(5));
    await stage(ctx(d), async () => ok(5));
    await assert.rejects(
      stage(ctx(d), () => assert.fail('the upstream must not be called')),
      (e: unknown) => {
        assert.ok(e instanceof GatewayError);
        assert.equal(e.status, 429);
        assert.equal(e.type, 'requests');
        assert.ok(Number(e.headers['retry-after-ms']) > 29_000);
        assert.ok(!e.message.includes('acct-1'));
        return true;
      },
    );
  });

  it('reserves tokens on the deployment and reconciles them with the usage', async () => {
    const { stage, store, keys } = setup();
    const d = dep({ rpm: undefined, tpm: 600 });
    await stage(ctx(d, 100), async () => ok(20));
    const bucket = { key: keys.deploymentBucket(d.id, 'tpm'), capacity: 600, refillPerSecond: 0.000001 };
    const after = await store.take([{ bucket, cost: 0 }]);
    // Reserved 10 + 100, used 20: 580 left (give or take the refill of a few ms at 10/s).
    assert.ok(Math.abs(after.buckets[0]!.remaining - 580) < 1, String(after.buckets[0]!.remaining));
  });
});
