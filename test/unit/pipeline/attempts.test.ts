import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { errors, GatewayError } from '../../../src/errors.js';
import { Cooldowns } from '../../../src/pipeline/routing/cooldown.js';
import { DeploymentStats } from '../../../src/pipeline/routing/stats.js';
import { createAttemptsStage, fullJitter } from '../../../src/pipeline/stages/attempts.js';
import type { Deployment, Outcome, PipelineContext } from '../../../src/pipeline/types.js';
import { createKeys } from '../../../src/stores/keys.js';
import { MemoryStore } from '../../../src/stores/memory-store.js';
import { createLogSink } from '../../helpers/log-sink.js';
import { Canceller } from '../../../src/pipeline/abort.js';

const ROUTING = {
  rules: [],
  retry: { maxAttempts: 5, baseDelayMs: 100, maxDelayMs: 1000, maxRetryAfterMs: 5000 },
  cooldown: { failures: 10, windowMs: 60_000, cooldownMs: 1000 },
  deadlineMs: 10_000,
};
const LIMITS = {
  bytesPerToken: 3,
  expectedCompletionTokens: 10,
  admitAhead: { tickets: 0, maxAgeMs: 2_000, headroom: 0.5 },
};
const dep = (id: string): Deployment => ({ id, provider: id, model: 'm' });

function setup() {
  const store = new MemoryStore();
  const keys = createKeys(`tg:test:${Math.random()}:`);
  const log = createLogSink().log;
  const sleeps: number[] = [];
  const cooldowns = new Cooldowns(store, keys, ROUTING.cooldown, log);
  const stage = createAttemptsStage(
    {
      store,
      keys,
      log,
      cooldowns,
      stats: new DeploymentStats(),
      random: () => 0.5,
      sleep: async (ms) => void sleeps.push(ms),
    },
    ROUTING,
    LIMITS,
  );
  return { stage, sleeps, cooldowns };
}

const ctx = (candidates: Deployment[]): PipelineContext =>
  ({
    reqId: 'r',
    endpoint: 'chat',
    model: 'm',
    body: {},
    rawBody: Buffer.from('{}'),
    candidates,
    deployment: undefined,
    attempts: 0,
    logFields: {},
    signal: new Canceller(),
  }) as unknown as PipelineContext;

const ok: Outcome = { kind: 'json', status: 200, headers: {}, body: {}, usage: undefined };

describe('attempts stage', () => {
  it('backs off with full jitter, capped', () => {
    assert.equal(
      fullJitter(100, 1000, 0, () => 0.999),
      99,
    );
    assert.equal(
      fullJitter(100, 1000, 3, () => 0.5),
      400,
    );
    assert.equal(
      fullJitter(100, 1000, 10, () => 0.999),
      999,
    );
    assert.equal(
      fullJitter(100, 1000, 2, () => 0),
      0,
    );
  });

  it('retries a retryable error with backoff, then falls back in candidate order', async () => {
    const { stage, sleeps, cooldowns } = setup();
    const seen: string[] = [];
    const c = ctx([dep('a'), dep('b')]);
    const out = await stage(c, async (x) => {
      seen.push(x.deployment!.id);
      if (x.deployment!.id === 'a') throw errors.upstreamUnavailable('a', 'reset');
      return ok;
    });
    assert.equal(out, ok);
    assert.deepEqual(seen, ['a', 'a', 'b']);
    assert.deepEqual(sleeps, [50]);
    assert.equal(c.attempts, 3);
    cooldowns.close();
  });

  it('does not retry the gateway provider key being refused, nor a 400', async () => {
    for (const e of [errors.upstreamAuthFailed('a', 401), errors.invalidRequest('bad', 'x')]) {
      const { stage, cooldowns } = setup();
      let calls = 0;
      await assert.rejects(
        stage(ctx([dep('a'), dep('b')]), async () => {
          calls++;
          throw e;
        }),
        (got: unknown) => got === e,
      );
      assert.equal(calls, 1);
      cooldowns.close();
    }
  });

  it('stops at maxAttempts and reports 502 upstream_unavailable when several deployments failed', async () => {
    const { stage, cooldowns } = setup();
    const c = ctx([dep('a'), dep('b'), dep('c')]);
    await assert.rejects(
      stage(c, async () => {
        throw errors.upstreamTimeout('x', 'connect');
      }),
      (e: unknown) =>
        e instanceof GatewayError && e.status === 502 && e.headers['x-tollgate-attempts'] === '5',
    );
    assert.equal(c.attempts, 5);
    cooldowns.close();
  });
});
